"""`alphaplus_api_errors_total{status}`: counted in the API's exception handlers (a real
`alphaplus api` process), and nothing counted for requests that succeed."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.server import ApiProcess


def errors(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics/", timeout=10).text
    return {s.labels["status"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "alphaplus_api_errors_total"}


def test_error_responses_are_counted_by_status(live_api: ApiProcess) -> None:
    url = live_api.url
    before = errors(url)
    assert httpx.get(f"{url}/api/health").status_code == 200
    assert httpx.get(f"{url}/api/real-time/BTCUSDT/1m").status_code in (200, 404)
    ok_then = errors(url)
    assert httpx.get(f"{url}/api/no-such-route").status_code == 404
    assert httpx.get(f"{url}/api/no-such-route").status_code == 404
    assert httpx.get(f"{url}/api/market/data", params={"symbol": "BTCUSDT",
                                                       "limit": "many"}).status_code == 422
    assert httpx.post(f"{url}/api/cache/clear").status_code == 401  # no token
    after = errors(url)
    grew = {status: after.get(status, 0) - ok_then.get(status, 0) for status in after}
    assert grew == {**{s: 0.0 for s in after}, "404": 2.0, "422": 1.0, "401": 1.0}
    # The successful requests above counted nothing (the real-time 404, if it was one, aside).
    assert {s: v for s, v in ok_then.items() if s != "404"} == {
        s: v for s, v in before.items() if s != "404"}
