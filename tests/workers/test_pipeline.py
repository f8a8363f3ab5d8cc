"""The whole pipeline with real parts: recorded Binance trades → producer → Kafka → stream
stage → a real Celery worker process → Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

import celeryconfig
from core import redis_keys
from core.candles import Candle
from core.db.connect import connect
from core.settings import Settings
from tests.core.test_candles import ALL, assert_same
from tests.workers.test_stream_stage import expected, run_stage

TIMEOUT_S = 90


@pytest.fixture
def pipeline_settings(stage_settings: Settings, migrated_db: str) -> Settings:
    return stage_settings.replace(database_url=migrated_db)


@pytest.fixture
def worker(pipeline_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on this test's queues."""
    queues = ",".join(celeryconfig.queue_name(pipeline_settings, k) for k in celeryconfig.KINDS)
    log = tmp_path / "worker.log"
    env = {**os.environ, **pipeline_settings.as_env()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
             "--concurrency", "2", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(log.read_text()[-4000:])


def wait_for(predicate: object, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_recorded_trades_reach_postgres_and_redis_exactly_once(
    pipeline_settings: Settings, filled: int, namespace: str, redis_url: str,
    worker: subprocess.Popen[bytes],
) -> None:
    run_stage(pipeline_settings, namespace, filled)
    db = connect(pipeline_settings.database_url)
    want = {s: expected(s) for s in ("BTCUSDT", "ETHUSDT")}
    n_candles = sum(len(c) - 1 for by_tf in want.values() for c in by_tf.values())

    def counts() -> tuple[int, int, int]:
        with db.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM trades WHERE run_id = %(ns)s),"
                        " (SELECT count(*) FROM candles WHERE run_id = %(ns)s),"
                        " (SELECT count(*) FROM indicators WHERE run_id = %(ns)s)",
                        {"ns": namespace})
            row = cur.fetchone()
        db.rollback()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    try:
        wait_for(lambda: counts() == (filled, n_candles, n_candles),
                 "every trade, candle and indicator row", worker)
        with db.cursor() as cur:
            cur.execute(
                "SELECT symbol, timeframe, (extract(epoch FROM open_time) * 1000)::bigint,"
                " (extract(epoch FROM close_time) * 1000)::bigint, open, high, low, close,"
                " volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume, closed"
                " FROM candles WHERE run_id = %s ORDER BY symbol, timeframe, open_time",
                (namespace,))
            stored = [Candle(*row) for row in cur.fetchall()]
        db.rollback()
    finally:
        db.close()
    for symbol, by_tf in want.items():
        for tf in ALL:
            assert_same([c for c in stored if c.symbol == symbol and c.timeframe == tf],
                        by_tf[tf][:-1])

    client = redis.Redis.from_url(redis_url)
    try:
        latest = client.get(redis_keys.indicators(namespace, "BTCUSDT", "1m"))
    finally:
        client.close()
    assert latest is not None
    row = orjson.loads(latest)
    assert row["open_time"] == want["BTCUSDT"]["1m"][-2].open_time
    # Ten closed minutes: enough for the short indicators, not for the long ones.
    assert row["values"]["ema_9"] is not None and row["values"]["sma_200"] is None
