"""Fixtures of the worker tests: settings with this test's own topics, Redis namespace and
Celery queues, and a trades topic filled with the recorded Binance trades."""

from __future__ import annotations

import threading

import pytest

from core.kafka import ensure_topics
from core.settings import Settings
from producers.run import produce
from producers.sources.recording import RecordingSource
from tests.conftest import HFT
from tests.core.test_candles import ALL

FILES = [HFT / "spot" / f"{s}_2024080{d}.gz" for s in ("btcusdt", "ethusdt") for d in (8, 9)]


@pytest.fixture
def stage_settings(settings: Settings, redis_url: str, namespace: str) -> Settings:
    s = settings.replace(redis_url=redis_url, celery_queue_prefix=namespace,
                         stream_group=f"{namespace}-stream", timeframes=ALL)
    ensure_topics(s.kafka_bootstrap, [s.topic_candles], 3)
    return s


@pytest.fixture
def filled(stage_settings: Settings) -> int:
    """The recordings' trades in the test's trades topic; returns how many."""
    return produce(stage_settings, RecordingSource(FILES), threading.Event()).trades
