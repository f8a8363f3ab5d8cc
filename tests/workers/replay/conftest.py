"""Fixtures of the replay tests: a trades topic filled with synthetic trades of known times,
settings with this test's database, a real Celery worker process, and run ids whose Redis keys
are deleted afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import redis_keys
from core.models import Trade
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.workers.helpers import SYMBOLS, Processes, produce_trades, spread_trades

# 120,000 trades of six symbols, 81 ms apart from 2024-08-08 22:00 UTC: 2 h 42 min that cross
# midnight. Trade i is at START_MS + i * STEP_MS.
N_TRADES = 120_000


@pytest.fixture
def replay_settings(stage_settings: Settings, migrated_db: str) -> Settings:
    return stage_settings.replace(database_url=migrated_db, symbols=SYMBOLS)


@pytest.fixture
def topic_trades(replay_settings: Settings) -> list[Trade]:
    """The trades, in the settings' trades topic (message timestamp = trade time)."""
    trades = spread_trades(N_TRADES)
    assert produce_trades(replay_settings, trades) == len(trades)
    return trades


@pytest.fixture
def procs(replay_settings: Settings, namespace: str, tmp_path: Path) -> Iterator[Processes]:
    with Processes(replay_settings, namespace, tmp_path) as p:
        yield p


@pytest.fixture
def worker(procs: Processes) -> Processes:
    """A real Celery worker (two processes) on this test's queues, jobs included."""
    procs.worker("worker")
    return procs


@pytest.fixture
def run_ids(namespace: str, redis_url: str) -> Iterator[Callable[[str], str]]:
    """Run ids of this test (`<namespace>-<name>`); their namespaces are deleted after it."""
    made: list[str] = []

    def make(name: str) -> str:
        made.append(f"{namespace}-{name}")
        return made[-1]

    yield make
    delete_keys(redis_url, [redis_keys.namespace_pattern(run_id) for run_id in made])
