"""Redis stopped for 30 s under load. The pipeline's Redis (its state, the candle windows and the
Celery broker) is a redis-server of the test's own with an append-only file, as in production;
it is stopped and started again on the same port and folder while trades flow in.

While it is away the API answers every read request from memory and PostgreSQL, never with a
5xx; the stream process waits and the Celery worker reconnects, both staying up. After it
returns, everything converges: PostgreSQL and the Redis windows hold exactly the offline
candles of the trades produced.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.db.connect import connect
from core.settings import Settings
from infra.stack.redis import EmbeddedRedis
from tests.api.server import ApiProcess
from tests.faults.load import ApiPoller, TradeFeed, assert_redis_windows, wait_until_stored
from tests.workers.helpers import (
    Processes,
    assert_stored_exactly_once,
    checkpoint_offsets,
    db_counts,
    spread_trades,
    wait_for,
)

pytestmark = pytest.mark.slow

OUTAGE_S = 30.0
RATE = 2_000  # trades per second
N_TRADES = 80_000  # 40 s of load: before, during and after the outage
READ_PATHS = ("/api/market/data?symbol=BTCUSDT&timeframe=1m&limit=50",
              "/api/market/data?symbol=SOLUSDT&timeframe=5m&include=indicators",
              "/api/real-time/ETHUSDT/1m", "/api/signals?symbol=BTCUSDT",
              "/api/patterns?symbol=XRPUSDT", "/api/cache/stats", "/api/pipeline/stats",
              "/api/health")


def test_redis_stopped_for_30_s_under_load_then_everything_converges(
    fault_settings: Settings, namespace: str, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", log_path=tmp_path / "redis.log",
                           appendonly=True).start()
    # Tasks lost with the connection (taken by the worker, or whose retry could not be sent)
    # are sent again by the outbox 15 s after they were first sent; 5 s would also send again
    # the many tasks that merely wait in the queue behind the backlog the outage left.
    settings = fault_settings.replace(redis_url=server.url, task_redeliver_s=15)
    feed = TradeFeed(settings, spread_trades(N_TRADES), RATE)
    api = ApiProcess(settings, tmp_path / "api.log")
    db = connect(settings.database_url)
    poller: ApiPoller | None = None
    try:
        with Processes(settings, namespace, tmp_path) as procs:
            procs.worker("worker")
            procs.stream("stream")
            api.start()
            poller = ApiPoller(api.url, READ_PATHS).start()
            feed.start()

            def processed() -> int:
                return sum(checkpoint_offsets(settings, namespace).values())

            wait_for(lambda: db_counts(db, namespace)[1] > 0 and processed() >= N_TRADES // 8,
                     "candles stored and an eighth of the trades", procs)
            stored_before = db_counts(db, namespace)
            down = time.monotonic()
            server.stop()
            # The processes ride it out: Processes.check_running fails the wait if one exits.
            wait_for(lambda: time.monotonic() - down >= OUTAGE_S, "the outage", procs,
                     timeout=OUTAGE_S + 10, every=0.5)
            stored_during = db_counts(db, namespace)
            server.start()
            up = time.monotonic()
            assert not feed.done, "the feed ended during the outage: no load after it"

            trades, want, fed = wait_until_stored(feed, settings, db, namespace, procs, N_TRADES)
            produced, n_candles = trades.count, sum(len(c) for c in want.values())
            converged = time.monotonic() - up
            after_feed = time.monotonic() - fed
            assert processed() == produced
            poller.close()
            stream_log, worker_log = procs.log("stream"), procs.log("worker")
            procs.stop("stream")
            procs.stop("worker", timeout=60)
        assert_stored_exactly_once(db, namespace, trades, want)
        compared = assert_redis_windows(settings.redis_url, namespace, want,
                                        settings.redis_window)

        # The stream stage waited for Redis and went back to its checkpoints; the worker lost
        # its broker connection and got it back.
        assert "redis is back; resuming from the checkpoints" in stream_log
        assert "Connection to broker lost" in worker_log

        # Every read answered, none with a 5xx, while Redis was away and after.
        statuses = ApiPoller.statuses(poller.answers)
        assert set(statuses) == {200}, (statuses, [a for a in poller.answers if a.status != 200])
        during = poller.between(down, up)
        assert len(during) >= 100, "the API was hardly asked during the outage"
        slowest = max(a.seconds for a in during)
        print(f"\nRedis outage: {OUTAGE_S:.0f} s; {len(during)} API reads during it, statuses "
              f"{dict(ApiPoller.statuses(during))}, slowest {slowest:.2f} s; database rows "
              f"(trades, candles, indicators) {stored_before} when stopped, {stored_during} "
              f"30 s later; converged {converged:.1f} s after Redis returned, {after_feed:.1f} s "
              f"after the last trade was produced; {produced} "
              f"trades, {n_candles} candles in PostgreSQL and {compared} in the Redis windows "
              f"equal to the offline ones")
    finally:
        if poller is not None:
            poller.close()
        feed.stop.set()
        api.stop()
        db.close()
        server.stop()
