"""The API keeps answering when Redis goes away and recovers by itself when it returns
(a real `alphaplus api` process on a redis-server of the test's own, stopped and restarted)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from core.settings import Settings
from infra.stack.redis import EmbeddedRedis
from tests.api.seed import as_dict, seed
from tests.api.server import ApiProcess


def wait_until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_redis_down_serves_from_memory_and_the_database_then_reconnects(
        api_settings: Settings, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    settings = api_settings.replace(redis_url=server.url, api_cache_ttl_s=0.2)
    ns = settings.api_namespace
    s = seed(server.url, settings.database_url, ns)
    api = ApiProcess(settings, tmp_path / "api.log").start()
    try:
        def get(path: str, **query: object) -> httpx.Response:
            return httpx.get(f"{api.url}{path}", params=query, timeout=5)  # type: ignore[arg-type]

        live = get("/api/real-time/BTCUSDT/1m").json()
        assert live["candle"] == as_dict(s.forming)

        port = server.port
        server.stop()
        # Every read endpoint keeps answering, none with a 5xx, none slowly.
        for _ in range(3):
            for path, query in (("/api/market/data", {"symbol": "BTCUSDT"}),
                                ("/api/real-time/BTCUSDT/1m", {}),
                                ("/api/signals", {"symbol": "BTCUSDT"}),
                                ("/api/cache/stats", {}), ("/api/pipeline/stats", {})):
                started = time.monotonic()
                response = get(path, **query)
                assert response.status_code == 200, (path, response.text)
                assert time.monotonic() - started < 2.0, path
            time.sleep(0.3)  # past the memory TTL: the database answers now
        data = get("/api/market/data", symbol="BTCUSDT").json()["candles"]
        assert data == [as_dict(c) for c in s.closed]  # history from PostgreSQL, no live one
        # Without Redis the live candle is the latest stored one.
        assert get("/api/real-time/BTCUSDT/1m").json()["candle"] == as_dict(s.closed[-1])
        assert get("/api/cache/stats").json()["cache_stats"]["redis_enabled"] is False
        health = get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"

        server = EmbeddedRedis(tmp_path / "redis", port=port).start()
        seed(server.url, settings.database_url, ns)  # the workers fill the new server again
        wait_until(lambda: get("/api/cache/stats").json()["cache_stats"]["redis_enabled"])
        wait_until(lambda: get("/api/health").json()["status"] == "ok")
        assert get("/api/real-time/BTCUSDT/1m").json()["candle"] == as_dict(s.forming)
    finally:
        api.stop()
        server.stop()
