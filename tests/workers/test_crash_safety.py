"""Crash safety with real processes: a stream process (one test) and a Celery worker (the
other) are killed with SIGKILL in the middle of 200,000 trades and restarted; afterwards
PostgreSQL holds every trade and every candle exactly once, equal to an offline computation
from the topic, and one indicator row per candle.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from core import redis_keys
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
    killable_worker_transport,
    produce_trades,
    spread_trades,
    topic_trades,
    wait_for,
)
from workers.celery_app import make_app
from workers.stream.stage import StreamStage

pytestmark = pytest.mark.slow


@pytest.fixture
def crash_settings(stage_settings: Settings, migrated_db: str) -> Settings:
    # Overdue outbox tasks are sent again after 5 s instead of 2 minutes.
    return stage_settings.replace(database_url=migrated_db, symbols=SYMBOLS, task_redeliver_s=5)


def test_a_stream_process_killed_mid_run_loses_and_doubles_nothing(
    crash_settings: Settings, namespace: str, tmp_path: Path
) -> None:
    produced = produce_trades(crash_settings, spread_trades())
    assert produced == N_TRADES
    trades = topic_trades(crash_settings)
    assert trades.count == produced
    want = expected_candles(trades, crash_settings.timeframes)
    n_candles = sum(len(c) for c in want.values())
    db = connect(crash_settings.database_url)
    try:
        with Processes(crash_settings, namespace, tmp_path) as procs:
            procs.worker("worker")
            procs.stream("stream")

            def processed() -> int:
                return sum(checkpoint_offsets(crash_settings, namespace).values())

            # Kill once a quarter is checkpointed: the process is then inside a later batch,
            # which it may have handed on in part without storing its checkpoint, so the
            # restarted process hands those trades and candles on again.
            wait_for(lambda: processed() >= produced // 4, "a quarter of the trades", procs,
                     every=0.01)
            procs.kill("stream")
            at_kill = processed()
            assert at_kill < produced, "the stream finished before it was killed"

            procs.stream("stream-restarted")
            wait_for(lambda: db_counts(db, namespace) == (produced, n_candles, n_candles),
                     "every trade, candle and indicator row", procs, every=0.25)
            assert processed() == produced
            assert procs.stop("stream-restarted") == 0
            assert procs.stop("worker") == 0
        assert_stored_exactly_once(db, namespace, trades, want)
    finally:
        db.close()


def test_a_celery_worker_killed_mid_run_loses_and_doubles_nothing(
    crash_settings: Settings, namespace: str, tmp_path: Path
) -> None:
    produced = produce_trades(crash_settings, spread_trades())
    trades = topic_trades(crash_settings)
    assert trades.count == produced == N_TRADES
    want = expected_candles(trades, crash_settings.timeframes)
    n_candles = sum(len(c) for c in want.values())
    transport = killable_worker_transport(namespace)
    # The stream stage runs in the test's process here, so the test can read its statistics.
    stop = threading.Event()
    stage = StreamStage(crash_settings, make_app(crash_settings), ns=namespace)
    thread = threading.Thread(target=stage.run, args=(stop,), name="stream stage")
    db = connect(crash_settings.database_url)
    try:
        with Processes(crash_settings, namespace, tmp_path) as procs:
            procs.worker("worker", transport)
            thread.start()
            procs.threads.append(thread)
            wait_for(lambda: stage.stats.trades >= produced * 3 // 10,
                     "the stage to hand on 30% of the trades", procs, every=0.01)
            # Killed wherever it is: kombu's Redis transport pops a task (BRPOP) before it
            # records it as unacknowledged (celery/kombu#305), so a task can vanish with the
            # worker; the stream stage's outbox sends such a task again.
            procs.kill("worker")
            at_kill = db_counts(db, namespace)
            assert at_kill[0] < produced, "the worker finished before it was killed"
            unfinished = procs.tasks("worker", "received") - procs.tasks("worker", "succeeded")

            procs.worker("worker-restarted", transport)
            wait_for(lambda: db_counts(db, namespace) == (produced, n_candles, n_candles),
                     "every trade, candle and indicator row", procs, every=0.25)
            # Each task the killed worker had not finished ran again (late acknowledgement).
            # Checked on its own because the stored rows would not show a lost indicator
            # task: a later task of the same symbol and timeframe redoes its work from the
            # Redis window.
            assert unfinished <= procs.tasks("worker-restarted", "succeeded")
            # And every task sent was finished by someone: the outbox empties.
            outbox = redis.Redis.from_url(crash_settings.redis_url)
            try:
                wait_for(lambda: outbox.hlen(redis_keys.task_outbox(namespace)) == 0,
                         "the task outbox to empty", procs, every=0.25)
            finally:
                outbox.close()
            # Not asserted clean: a warm shutdown right after the outbox re-sent tasks was
            # once seen to take longer than the stop timeout; the data checks below are what
            # this test is about.
            procs.stop("worker-restarted", timeout=60)
        assert_stored_exactly_once(db, namespace, trades, want)
    finally:
        db.close()
        if thread.ident is None:
            stage.close()  # run() closes it otherwise
        else:
            stop.set()
            thread.join(30)
    assert not thread.is_alive(), "the stage did not stop"
    assert stage.stats.trades == produced
