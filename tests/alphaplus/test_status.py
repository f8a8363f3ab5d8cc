"""`alphaplus status` against a real `alphaplus api` process, and when no API answers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from alphaplus.commands.status import render
from core import redis_keys
from core.settings import Settings
from infra.stack.ports import free_port
from tests.api.server import ApiProcess
from tests.conftest import REPO


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alphaplus.cli", "status", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def api(settings: Settings, redis_url: str, namespace: str, migrated_db: str,
        tmp_path: Path) -> Iterator[ApiProcess]:
    s = settings.replace(redis_url=redis_url, database_url=migrated_db, api_namespace=namespace,
                         celery_queue_prefix=namespace, stream_group=f"{namespace}-stream")
    server = ApiProcess(s, tmp_path / "api.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_status_summarises_the_overview(api: ApiProcess, namespace: str) -> None:
    client = redis.Redis.from_url(api.settings.redis_url)
    try:
        client.hset(redis_keys.stream_stats(namespace),
                    mapping={"trades": 123_456, "batches": 40, "busy_ms": 100.0,
                             "candles_closed": 789, "duplicates": 2, "rejected": 3})
        client.rpush(f"{namespace}.persist", b"x", b"y")  # two tasks waiting, as the broker
    finally:
        client.close()
    done = status("--url", api.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    print(out)
    lines = out.splitlines()
    assert lines[0].startswith(f"AlphaPlus at {api.url}   namespace {namespace}   status OK")
    assert any(line.split()[:2] == ["database", "ok"] for line in lines)
    assert any(line.split()[:2] == ["redis", "ok"] for line in lines)
    kafka = next(line for line in lines if line.split()[0] == "kafka")
    assert "ok  lag" in kafka and api.settings.topic_trades in kafka, kafka
    assert "NO WORKERS  0 worker(s)" in out  # none runs in this test
    assert "persist 2" in out and "indicators 0" in out
    assert "123,456 trades" in out and "789 candles closed" in out and "3 rejected" in out
    assert "2.50 ms each" in out  # 100 ms over 40 batches
    assert "0 clients" in out
    assert len(lines) <= 24, "one screen"

    assert done.stderr == ""

    raw = status("--url", api.url, "--json")
    assert raw.returncode == 0
    assert json.loads(raw.stdout)["pipeline_stats"]["total_processed"] == 123_456


def test_status_without_an_api_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = status("--url", url)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"cannot reach the API at {url}" in done.stderr
    assert "alphaplus api" in done.stderr and "--url" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_names_what_is_down() -> None:
    overview = {
        "health": {"status": "degraded", "uptime_s": 3_725, "dependencies": {
            "database": {"ok": True, "latency_ms": 1.234, "mode": "postgresql",
                         "required": True},
            "redis": {"ok": False, "error": "connection refused", "required": False,
                      "note": "serving from memory and the database"},
            "pubsub": {"ok": False, "required": False}}},
        "cache_stats": {"memory_hits": 90, "redis_hits": 0, "misses": 10, "hit_rate": 0.9,
                        "avg_response_time_ms": 0.05, "memory_cache_size": 12,
                        "redis_enabled": False},
        "pipeline_stats": {"stream_counters_available": False},
        "websocket_stats": {"active_connections": 3, "total_messages_sent": 1_000,
                            "avg_latency_ms": 1.5, "p99_latency_ms": 4.0, "errors_count": 0},
        "kafka": {"consumer_lag": {"error": "Kafka at 127.0.0.1:9092: timed out"}},
        "celery": {"queues": None, "workers": None, "error": "Celery broker: refused"},
        "namespace": "live",
    }
    text = render(overview, "http://api:8000")
    assert "status DEGRADED   API up 1h 02m" in text
    assert "database     ok  1.23 ms  postgresql" in text
    assert "redis        down  connection refused (serving from memory and the database)" in text
    assert "kafka        DOWN  Kafka at 127.0.0.1:9092: timed out" in text
    assert "celery       DOWN  Celery broker: refused" in text
    assert "queues       ? (the broker is not answering)" in text
    assert "stream       ? (its counters are in Redis" in text
    assert "hit rate 90.0%" in text and "redis layer OFF" in text
    assert "3 clients" in text and "p99 4.00 ms" in text
