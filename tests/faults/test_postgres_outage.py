"""PostgreSQL stopped for 30 s under load. The pipeline's database is a PostgreSQL of the test's
own (migrated), stopped with a fast shutdown and started again on the same port and data folder
while trades flow in.

The stream stage does not need the database and keeps building candles; the Celery tasks fail
to connect and retry with backoff, holding their work. After the database returns every row
lands exactly once: the trades, the candles equal to the offline ones, one indicator row each.
Meanwhile the API answers the routes that have a Redis fallback from Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from core.db.connect import connect
from core.settings import Settings
from infra.migrations import upgrade
from infra.stack.postgres import EmbeddedPostgres
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
N_TRADES = 76_000  # 38 s of load: before, during and after the outage
# Routes with a Redis fallback (the Redis window and the workers' latest values) and a route
# that needs the database.
FALLBACK_PATHS = ("/api/market/data?symbol=BTCUSDT&timeframe=1m&limit=50",
                  "/api/real-time/ETHUSDT/1m")
DB_PATHS = ("/api/signals?symbol=BTCUSDT",)


def test_postgres_stopped_for_30_s_under_load_loses_no_row(
    fault_settings: Settings, namespace: str, tmp_path: Path
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", log_path=tmp_path / "postgres.log").start()
    upgrade(server.url)
    # The worker's retries alone carry the work over the outage: the outbox keeps its default
    # 2 minutes, longer than the outage, so it sends nothing again.
    settings = fault_settings.replace(database_url=server.url, task_redeliver_s=120)
    feed = TradeFeed(settings, spread_trades(N_TRADES), RATE)
    api = ApiProcess(settings, tmp_path / "api.log")
    poller: ApiPoller | None = None
    db = connect(server.url)
    try:
        with Processes(settings, namespace, tmp_path) as procs:
            procs.worker("worker")
            procs.stream("stream")
            api.start()
            poller = ApiPoller(api.url, FALLBACK_PATHS + DB_PATHS).start()
            feed.start()

            def processed() -> int:
                return sum(checkpoint_offsets(settings, namespace).values())

            wait_for(lambda: db_counts(db, namespace)[1] > 0 and processed() >= N_TRADES // 8,
                     "candles stored and an eighth of the trades", procs)
            stored_before = db_counts(db, namespace)
            db.close()
            down = time.monotonic()
            server.stop()
            at_stop = processed()
            wait_for(lambda: time.monotonic() - down >= OUTAGE_S, "the outage", procs,
                     timeout=OUTAGE_S + 10, every=0.5)
            # The stream stage went on without the database.
            during_outage = processed() - at_stop
            assert during_outage > RATE * OUTAGE_S / 2
            server.start()
            up = time.monotonic()
            db = connect(server.url)
            assert not feed.done, "the feed ended during the outage: no load after it"

            trades, want, fed = wait_until_stored(feed, settings, db, namespace, procs, N_TRADES)
            produced, n_candles = trades.count, sum(len(c) for c in want.values())
            converged = time.monotonic() - up
            after_feed = time.monotonic() - fed
            poller.close()
            # Every route answers from the database again.
            for path in FALLBACK_PATHS + DB_PATHS:
                response = httpx.get(f"{api.url}{path}", timeout=10)
                assert response.status_code == 200, (path, response.text)
            worker_log = procs.log("worker")
            procs.stop("stream")
            procs.stop("worker", timeout=60)
        assert_stored_exactly_once(db, namespace, trades, want)
        compared = assert_redis_windows(settings.redis_url, namespace, want,
                                        settings.redis_window)
        retries = worker_log.count("Retry in")
        assert retries > 0, "no task retried: the outage was not met"

        during = poller.between(down, up)
        fallback = [a for a in during if a.path in FALLBACK_PATHS]
        needs_db = [a for a in during if a.path in DB_PATHS]
        assert fallback and needs_db
        assert set(ApiPoller.statuses(fallback)) == {200}, ApiPoller.statuses(fallback)
        # Without the database these answer 503 (a documented outcome), never a 500.
        assert set(ApiPoller.statuses(needs_db)) <= {200, 503}, ApiPoller.statuses(needs_db)
        print(f"\nPostgreSQL outage: {OUTAGE_S:.0f} s; the stream stage processed "
              f"{during_outage} trades during it; {retries} task retries; rows (trades, "
              f"candles, indicators) {stored_before} when stopped; converged {converged:.1f} s "
              f"after the database returned, {after_feed:.1f} s after the last trade was "
              f"produced; {produced} trades and {n_candles} candles in "
              f"PostgreSQL, {compared} in the Redis windows, equal to the offline ones; API "
              f"during the outage: Redis-backed routes {dict(ApiPoller.statuses(fallback))}, "
              f"signals {dict(ApiPoller.statuses(needs_db))}")
    finally:
        if poller is not None:
            poller.close()
        feed.stop.set()
        api.stop()
        db.close()
        server.stop()
