"""Backtest reports over REST, saved the way `alphaplus backtest` saves them."""

from __future__ import annotations

import httpx

from core.db.connect import connect
from core.settings import Settings
from tests.api.seed import candle
from tests.api.server import ApiProcess
from workers.backtest import from_candles, make, run
from workers.backtest.store import save


def test_a_saved_backtest_is_served_whole(live_api: ApiProcess, api_settings: Settings) -> None:
    closes = [100 + (i % 17) - (i % 5) * 0.5 for i in range(300)]
    candles = [candle("BTCUSDT", "1m", 1_700_000_040_000 + i * 60_000, c)
               for i, c in enumerate(closes)]
    report = run(from_candles(candles, run_id=api_settings.api_namespace), make("ema_cross"))
    conn = connect(api_settings.database_url)
    try:
        save(conn, report)
        conn.commit()
    finally:
        conn.close()
    got = httpx.get(f"{live_api.url}/api/backtests/{report.id}").json()
    assert got["id"] == report.id and got["strategy"] == "ema_cross"
    assert got["run_id"] == api_settings.api_namespace
    assert got["metrics"]["trades"] == len(report.trades) == len(got["trades"])
    assert got["start_time"] == candles[0].open_time
    listed = httpx.get(f"{live_api.url}/api/backtests",
                       params={"run_id": api_settings.api_namespace}).json()["backtests"]
    assert [b["id"] for b in listed] == [report.id] and "trades" not in listed[0]
    missing = httpx.get(f"{live_api.url}/api/backtests/nope")
    assert missing.status_code == 404 and "/api/backtests" in missing.json()["detail"]


def test_ids_are_checked_before_any_query(live_api: ApiProcess) -> None:
    # A NUL byte (schemathesis found it) is refused by PostgreSQL itself: it must be a 400.
    for path, query in (("/api/backtests", {"run_id": "a\x00b"}),
                        ("/api/backtests/a%00b", {}), ("/api/replays/a%00b", {})):
        response = httpx.get(f"{live_api.url}{path}", params=query)
        assert response.status_code == 400, (path, response.text)
        assert "letters, digits" in response.json()["detail"]
