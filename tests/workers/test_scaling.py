"""Scaling the stream stage: two `alphaplus stream` processes in one consumer group share the
partitions of the trades topic; when one is killed with SIGKILL the other takes its partitions
over from their checkpoints, and PostgreSQL still ends up with every trade and candle once."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db.connect import connect
from core.settings import Settings
from tests.workers.helpers import (
    N_TRADES,
    SYMBOLS,
    Processes,
    assert_stored_exactly_once,
    checkpoint_offsets,
    db_counts,
    expected_candles,
    produce_trades,
    spread_trades,
    topic_trades,
    wait_for,
)

pytestmark = pytest.mark.slow

PARTITIONS = {0, 1, 2}


def test_two_stream_processes_share_the_partitions_and_one_takes_over_from_a_killed_one(
    stage_settings: Settings, migrated_db: str, namespace: str, tmp_path: Path
) -> None:
    settings = stage_settings.replace(database_url=migrated_db, symbols=SYMBOLS)
    trades = spread_trades()
    half = N_TRADES // 2
    db = connect(settings.database_url)
    try:
        with Processes(settings, namespace, tmp_path) as procs:
            procs.worker("worker")
            procs.stream("a")
            procs.stream("b")
            wait_for(lambda: bool(procs.assigned("a")) and bool(procs.assigned("b"))
                     and procs.assigned("a") | procs.assigned("b") == PARTITIONS,
                     "both stream processes to hold partitions", procs)
            b_partitions = procs.assigned("b")
            assert not procs.assigned("a") & b_partitions

            # The second half is produced only after b is dead, so a must take b's partitions
            # over (after the 6 s session timeout) to get through them.
            assert produce_trades(settings, trades[:half]) == half
            wait_for(lambda: all(checkpoint_offsets(settings, namespace)[p] > 0
                                 for p in PARTITIONS),
                     "both processes to checkpoint their partitions", procs, every=0.01)
            procs.kill("b")
            assert produce_trades(settings, trades[half:]) == N_TRADES - half

            topic = topic_trades(settings)
            assert topic.count == N_TRADES
            # The symbols really are spread: every partition has trades of its own.
            assert set(topic.per_partition) == PARTITIONS
            want = expected_candles(topic, settings.timeframes)
            n_candles = sum(len(c) for c in want.values())
            wait_for(lambda: db_counts(db, namespace) == (N_TRADES, n_candles, n_candles),
                     "every trade, candle and indicator row", procs, every=0.25)
            assert checkpoint_offsets(settings, namespace) == dict(topic.per_partition)
            assert procs.assigned("a") == PARTITIONS
            assert procs.stop("a") == 0
            assert procs.stop("worker") == 0
        assert_stored_exactly_once(db, namespace, topic, want)
    finally:
        db.close()
