"""REST market data against a real `alphaplus api` process, Redis and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from api import params
from core.settings import Settings
from tests.api.conftest import SYMBOLS
from tests.api.seed import as_dict, candle, publish_live, seed
from tests.api.server import ApiProcess


def get(api: ApiProcess, path: str, **query: object) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", params=query, timeout=10)  # type: ignore[arg-type]


def test_symbols_lists_the_configuration(live_api: ApiProcess) -> None:
    body = get(live_api, "/api/symbols").json()
    assert body == {"symbols": list(SYMBOLS),
                    "timeframes": list(live_api.settings.timeframes)}


def test_market_data_is_oldest_first_with_the_forming_candle_last(
        live_api: ApiProcess, api_settings: Settings) -> None:
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    body = get(live_api, "/api/market/data", symbol="btcusdt", timeframe="1m").json()
    assert body["symbol"] == "BTCUSDT" and body["timeframe"] == "1m"
    assert body["candles"] == [as_dict(c) for c in [*s.closed, s.forming]]
    assert body["candles"][-1]["closed"] is False

    limited = get(live_api, "/api/market/data", symbol="BTCUSDT", limit=5).json()["candles"]
    assert [c["open_time"] for c in limited] == [c.open_time for c in
                                                 [*s.closed, s.forming][-5:]]


def test_market_data_time_range_in_ms_and_iso(live_api: ApiProcess,
                                             api_settings: Settings) -> None:
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    start, end = s.closed[3].open_time, s.closed[9].open_time
    by_ms = get(live_api, "/api/market/data", symbol="BTCUSDT", start=start, end=end).json()
    assert [c["open_time"] for c in by_ms["candles"]] == [c.open_time for c in s.closed[3:10]]
    iso = {k: datetime.fromtimestamp(v / 1000, UTC).isoformat().replace("+00:00", "Z")
           for k, v in (("start", start), ("end", end))}
    by_iso = get(live_api, "/api/market/data", symbol="BTCUSDT", **iso).json()
    assert by_iso == by_ms


def test_market_data_with_indicators(live_api: ApiProcess, api_settings: Settings) -> None:
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    candles = get(live_api, "/api/market/data", symbol="BTCUSDT",
                  include="indicators").json()["candles"]
    assert [c["indicators"] for c in candles[:-1]] == [dict(i["values"]) for i in s.indicators]
    assert candles[0]["indicators"]["rsi_14"] is None  # warm-up: null, never a made-up value
    assert candles[-1]["closed"] is False and candles[-1]["indicators"] is None


@pytest.mark.parametrize(("query", "status", "words"), [
    ({"symbol": "DOGEUSDT"}, 400, ["DOGEUSDT", "BTCUSDT, ETHUSDT"]),
    ({"symbol": "BTCUSDT", "timeframe": "7m"}, 400, ["7m", "1m, 5m"]),
    ({"symbol": "BTCUSDT", "start": "yesterday"}, 400, ["ISO 8601"]),
    ({"symbol": "BTCUSDT", "start": 2000, "end": 1000}, 400, ["after"]),
    ({"symbol": "BTCUSDT", "start": 10**18}, 400, ["out of range"]),
    ({"symbol": "BTCUSDT", "limit": 0}, 422, ["limit"]),
    ({"symbol": "BTCUSDT", "limit": 5000}, 422, ["limit"]),
    ({"symbol": "BTCUSDT", "include": "everything"}, 400, ["indicators"]),
    ({}, 422, ["symbol"]),
])
def test_market_data_bad_input_says_what_is_allowed(
        live_api: ApiProcess, query: dict[str, object], status: int, words: list[str]) -> None:
    response = get(live_api, "/api/market/data", **query)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail


def test_real_time_has_the_live_candle_indicators_and_signals(
        live_api: ApiProcess, api_settings: Settings) -> None:
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    body = get(live_api, "/api/real-time/BTCUSDT/1m").json()
    assert body["candle"] == as_dict(s.forming)
    assert body["indicators"]["open_time"] == s.closed[-1].open_time
    assert body["indicators"]["values"] == dict(s.indicators[-1]["values"])
    assert [x["name"] for x in body["signals"]] == ["rsi_cross_70"]
    assert get(live_api, "/api/real-time/BTCUSDT/2m").status_code == 400


def test_an_update_replaces_what_the_cache_holds(live_api: ApiProcess,
                                                api_settings: Settings) -> None:
    """A reader never gets a candle older than the one already pushed: the API's listener
    drops the cached entry when the worker publishes."""
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    assert get(live_api, "/api/real-time/BTCUSDT/1m").json()["candle"]["close"] == s.forming.close
    for i in range(1, 6):
        newer = candle("BTCUSDT", "1m", s.forming.open_time, s.forming.close + i, closed=False)
        publish_live(api_settings.redis_url, api_settings.api_namespace, newer)
        deadline = time.monotonic() + 2
        while True:
            got = get(live_api, "/api/real-time/BTCUSDT/1m").json()["candle"]["close"]
            if got == newer.close or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert got == newer.close
        data = get(live_api, "/api/market/data", symbol="BTCUSDT").json()["candles"]
        assert data[-1]["close"] == newer.close


def test_signals_newest_first_and_filtered(live_api: ApiProcess,
                                          api_settings: Settings) -> None:
    s = seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    body = get(live_api, "/api/signals", symbol="BTCUSDT", timeframe="1m").json()
    assert [(x["name"], x["time"], x["direction"]) for x in body["signals"]] == [
        ("rsi_cross_70", s.closed[-1].open_time, "bearish")]
    assert body["signals"][0]["values"] == {"rsi_14": 71.0}
    later = get(live_api, "/api/signals", symbol="BTCUSDT",
                since=s.closed[-1].open_time + 1).json()
    assert later["signals"] == []
    assert get(live_api, "/api/signals", symbol="ETHUSDT").json()["signals"] == []
    assert get(live_api, "/api/signals", symbol="XRPUSDT").status_code == 400


def test_time_parameters() -> None:
    assert params.time_ms("start", "1700000000000", 0) == 1_700_000_000_000
    assert params.time_ms("start", "2023-11-14T22:13:20Z", 0) == 1_700_000_000_000
    assert params.time_ms("start", "2023-11-14T22:13:20", 0) == 1_700_000_000_000
    assert params.time_ms("start", None, 5) == 5
    with pytest.raises(params.BadRequest):
        params.time_ms("start", "-1", 0)
