"""Replays over REST: start (token), status, cancel; the replay itself is tested in
tests/workers/replay (the same `core.replays.submit` starts it there)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from core import redis_keys
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.api.server import ApiProcess

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def run_id(api_settings: Settings) -> Iterator[str]:
    rid = f"{api_settings.api_namespace}-replay"
    yield rid
    delete_keys(api_settings.redis_url, [redis_keys.namespace_pattern(rid)])


def test_start_a_replay_and_read_its_status(live_api: ApiProcess, api_settings: Settings,
                                            run_id: str) -> None:
    body = {"from": "2024-08-09T00:00:00Z", "to": 1723165200000, "symbols": ["btcusdt"],
            "run_id": run_id}
    assert httpx.post(f"{live_api.url}/api/replays", json=body).status_code == 401
    started = httpx.post(f"{live_api.url}/api/replays", json=body, headers=AUTH)
    assert started.status_code == 202, started.text
    status = started.json()
    assert status["state"] == "queued" and status["run_id"] == run_id
    assert status["request"]["from_ms"] == 1723161600000
    assert status["request"]["symbols"] == ["BTCUSDT"]
    got = httpx.get(f"{live_api.url}/api/replays/{run_id}").json()
    assert got["state"] == "queued" and got["task_id"] == status["task_id"]
    # The task waits in this test's own jobs queue (no worker runs here).
    client = redis.Redis.from_url(api_settings.redis_url)
    try:
        assert client.llen(f"{api_settings.celery_queue_prefix}.jobs") == 1
    finally:
        client.close()


@pytest.mark.parametrize(("body", "status", "word"), [
    ({"from": 2000, "to": 1000}, 400, "after"),
    ({"from": "yesterday", "to": 1000}, 400, "ISO 8601"),
    ({"from": 1000, "to": 2000, "symbols": ["DOGEUSDT"]}, 400, "BTCUSDT"),
    ({"from": 1000, "to": 2000, "speed": "fast"}, 422, "speed"),
    ({"from": 1000, "to": 2000, "run_id": "live"}, 422, "live"),
    ({"from": 1000, "to": 2000, "warmup": "6 hours"}, 422, "warm-up"),
    ({"to": 2000}, 422, "from"),
])
def test_bad_replay_requests_say_why(live_api: ApiProcess, body: dict[str, object],
                                     status: int, word: str) -> None:
    response = httpx.post(f"{live_api.url}/api/replays", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert word in response.json()["detail"]


def test_unknown_replays(live_api: ApiProcess) -> None:
    assert httpx.get(f"{live_api.url}/api/replays/nothing-here").status_code == 404
    cancel = httpx.post(f"{live_api.url}/api/replays/nothing-here/cancel", headers=AUTH)
    assert cancel.status_code == 404
