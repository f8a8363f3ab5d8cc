"""Health, stats and admin endpoints against a real `alphaplus api` process."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis

from core import redis_keys
from core.settings import Settings, Wanted
from tests.api.seed import seed
from tests.api.server import ApiProcess


def test_health_reports_each_dependency_and_the_mode(live_api: ApiProcess,
                                                     storage: Wanted) -> None:
    response = httpx.get(f"{live_api.url}/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database_mode"] == ("timescaledb" if storage == "on" else "postgresql")
    deps = body["dependencies"]
    assert deps["database"]["ok"] and deps["database"]["latency_ms"] >= 0
    assert deps["redis"]["ok"] and deps["redis"]["latency_ms"] >= 0


def test_health_is_503_when_the_database_is_down(api_settings: Settings, tmp_path: Path) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/nothing"
    api = ApiProcess(api_settings.replace(database_url=dead), tmp_path / "api.log").start()
    try:
        response = httpx.get(f"{api.url}/api/health", timeout=10)
        assert response.status_code == 503
        assert response.json()["dependencies"]["database"]["ok"] is False
        # Reads still answer from what the workers keep in Redis.
        assert httpx.get(f"{api.url}/api/real-time/BTCUSDT/1m").status_code == 200
    finally:
        api.stop()


def test_no_redis_password_in_health_or_logs(api_settings: Settings, tmp_path: Path) -> None:
    """Redis down with a password in its URL: /api/health names the problem, not the secret
    (it is served without a token), and neither does the API's log."""
    from infra.stack.ports import free_port

    secret = "hunter2-redis-secret"
    dead = f"redis://:{secret}@127.0.0.1:{free_port()}/0"
    log = tmp_path / "api.log"
    api = ApiProcess(api_settings.replace(redis_url=dead), log).start()
    try:
        response = httpx.get(f"{api.url}/api/health", timeout=10)
        overview = httpx.get(f"{api.url}/api/system/overview", timeout=10)
    finally:
        api.stop()
    body = response.text + overview.text
    assert response.json()["dependencies"]["redis"]["ok"] is False
    assert "redis://:***@127.0.0.1" in body
    assert secret not in body
    assert secret not in log.read_text()


def test_cache_stats_have_the_contract_fields(live_api: ApiProcess,
                                              api_settings: Settings) -> None:
    seed(api_settings.redis_url, api_settings.database_url, api_settings.api_namespace)
    for _ in range(3):
        httpx.get(f"{live_api.url}/api/market/data", params={"symbol": "BTCUSDT"})
    stats = httpx.get(f"{live_api.url}/api/cache/stats").json()["cache_stats"]
    assert set(stats) >= {"memory_hits", "redis_hits", "misses", "hit_rate",
                          "avg_response_time_ms", "memory_cache_size", "redis_enabled"}
    assert stats["misses"] >= 1 and stats["memory_hits"] >= 1
    assert 0 < stats["hit_rate"] < 1
    assert stats["redis_enabled"] is True


def test_pipeline_stats_read_the_stream_counters(live_api: ApiProcess,
                                                 api_settings: Settings) -> None:
    client = redis.Redis.from_url(api_settings.redis_url)
    try:
        client.hset(redis_keys.stream_stats(api_settings.api_namespace),
                    mapping={"trades": 1200, "batches": 4, "busy_ms": 10.0, "rejected": 3})
    finally:
        client.close()
    stats = httpx.get(f"{live_api.url}/api/pipeline/stats").json()["pipeline_stats"]
    assert stats["total_processed"] == 1200
    assert stats["avg_processing_time_ms"] == 2.5
    assert stats["errors_count"] == 3
    assert stats["symbols_count"] == 2 and stats["timeframes_count"] == 6
    assert set(stats) >= {"total_processed", "cache_hit_rate", "avg_processing_time_ms",
                          "errors_count", "symbols_count", "timeframes_count"}


def test_websocket_stats_and_overview(live_api: ApiProcess) -> None:
    ws = httpx.get(f"{live_api.url}/api/websocket/stats").json()["websocket_stats"]
    assert set(ws) >= {"active_connections", "total_messages_sent", "avg_latency_ms",
                       "errors_count", "queue_sizes"}
    assert set(ws["queue_sizes"]) >= {"market_data", "signals", "patterns"}
    overview = httpx.get(f"{live_api.url}/api/system/overview", timeout=20).json()
    assert set(overview) >= {"health", "cache_stats", "pipeline_stats", "websocket_stats",
                             "kafka", "celery"}
    assert overview["celery"]["queues"] == {"indicators": 0, "persist": 0, "jobs": 0}
    assert isinstance(overview["celery"]["workers"], int)  # any worker on this Redis answers
    assert "error" in overview["kafka"]["consumer_lag"]  # no broker configured for this test


def test_cache_clear_needs_the_token(live_api: ApiProcess) -> None:
    url = f"{live_api.url}/api/cache/clear"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.post(url, headers={"Authorization": "Bearer test-token"},
                    json={"symbol": "BTCUSDT"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["symbol"] == "BTCUSDT"
    bad = httpx.post(url, headers={"Authorization": "Bearer test-token"},
                     json={"symbol": "NOPE"})
    assert bad.status_code == 400 and "BTCUSDT" in bad.json()["detail"]


def test_admin_is_refused_without_a_configured_token(api_settings: Settings,
                                                     tmp_path: Path) -> None:
    api = ApiProcess(api_settings.replace(api_token=""), tmp_path / "api.log").start()
    try:
        response = httpx.post(f"{api.url}/api/cache/clear",
                              headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403
        assert "ALPHAPLUS_API_TOKEN" in response.json()["detail"]
    finally:
        api.stop()


def test_metrics_and_openapi(live_api: ApiProcess) -> None:
    metrics = httpx.get(f"{live_api.url}/metrics/", follow_redirects=True)
    assert metrics.status_code == 200 and "alphaplus_api_cache" in metrics.text
    schema = httpx.get(f"{live_api.url}/openapi.json").json()
    for path in ("/api/health", "/api/cache/stats", "/api/cache/clear", "/api/market/data",
                 "/api/signals", "/api/real-time/{symbol}/{timeframe}", "/api/pipeline/stats",
                 "/api/websocket/stats", "/api/system/overview"):
        assert path in schema["paths"], path
    assert httpx.get(f"{live_api.url}/docs").status_code == 200
