"""SIGKILL under load: while trades flow in at a steady rate, the stream process, then a Celery
worker (its main process and its pool children), then the API process are killed and restarted.
Afterwards PostgreSQL holds every trade and candle exactly once and the Redis candle windows
equal the offline candles; the API answered every request before and after its own death.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.db.connect import connect
from core.settings import Settings
from tests.api.server import ApiProcess
from tests.faults.load import ApiPoller, TradeFeed, assert_redis_windows, wait_until_stored
from tests.workers.helpers import (
    Processes,
    assert_stored_exactly_once,
    checkpoint_offsets,
    db_counts,
    killable_worker_transport,
    spread_trades,
    wait_for,
)

pytestmark = pytest.mark.slow

RATE = 2_000  # trades per second
N_TRADES = 64_000  # 32 s of load
READ_PATHS = ("/api/market/data?symbol=BTCUSDT&timeframe=1m&limit=50",
              "/api/real-time/ETHUSDT/1m", "/api/signals?symbol=BTCUSDT",
              "/api/pipeline/stats", "/api/health")


def test_sigkill_of_stream_worker_and_api_under_load_loses_and_doubles_nothing(
    fault_settings: Settings, namespace: str, tmp_path: Path
) -> None:
    settings = fault_settings
    transport = killable_worker_transport(namespace)
    feed = TradeFeed(settings, spread_trades(N_TRADES), RATE)
    api = ApiProcess(settings, tmp_path / "api.log")
    db = connect(settings.database_url)
    poller: ApiPoller | None = None
    try:
        with Processes(settings, namespace, tmp_path) as procs:
            procs.worker("worker", transport)
            procs.stream("stream")
            api.start()
            poller = ApiPoller(api.url, READ_PATHS).start()
            feed.start()

            def processed() -> int:
                return sum(checkpoint_offsets(settings, namespace).values())

            # The stream process: killed once it is well into the feed.
            wait_for(lambda: processed() >= N_TRADES // 6, "a sixth of the trades", procs)
            procs.kill("stream")
            procs.stream("stream-restarted")

            # A Celery worker, with its pool: killed wherever it is.
            wait_for(lambda: db_counts(db, namespace)[0] >= N_TRADES // 3, "a third stored",
                     procs)
            procs.kill("worker")
            procs.worker("worker-restarted", transport)

            # The API.
            wait_for(lambda: feed.sent >= N_TRADES // 2, "half of the feed", procs)
            assert api.proc is not None
            api_killed = time.monotonic()
            api.kill()
            api.start(timeout=60)
            api_back = time.monotonic()

            assert not feed.done, "the feed ended before the last kill: the load was not on"
            trades, want, fed = wait_until_stored(feed, settings, db, namespace, procs, N_TRADES)
            produced, n_candles = trades.count, sum(len(c) for c in want.values())
            converged = time.monotonic() - fed
            assert processed() == produced
            poller.close()
            procs.stop("stream-restarted")
            procs.stop("worker-restarted", timeout=60)
        assert_stored_exactly_once(db, namespace, trades, want)
        compared = assert_redis_windows(settings.redis_url, namespace, want,
                                        settings.redis_window)

        # The API answered every read request except while it was dead, never with a 5xx.
        outside = poller.outside(api_killed, api_back)
        during = poller.between(api_killed, api_back)
        statuses = ApiPoller.statuses(outside)
        assert set(statuses) == {200}, statuses
        after = [a for a in outside if a.at >= api_back]
        assert after, "no request reached the restarted API"
        print(f"\nSIGKILL under load: {produced} trades, {n_candles} candles in PostgreSQL and "
              f"{compared} in the Redis windows equal to the offline ones; converged "
              f"{converged:.1f} s after the last trade; API restarted in "
              f"{api_back - api_killed:.1f} s ({len(during)} requests failed while it was dead, "
              f"{len(outside)} answered 200, {len(after)} after the restart)")
    finally:
        if poller is not None:
            poller.close()
        feed.stop.set()
        api.stop()
        db.close()
