"""Property fuzzing of every REST operation from the served OpenAPI schema (schemathesis):
no input may produce a 5xx. Runs against a real `alphaplus api` process with data in place."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation

from core import redis_keys
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.api.conftest import SYMBOLS
from tests.api.seed import seed
from tests.api.server import ApiProcess


@pytest.fixture(scope="module")
def fuzz_api(redis_url: str, migrated_db: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    ns = f"test-{uuid.uuid4().hex[:10]}"
    base = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, database_url=migrated_db, symbols=SYMBOLS, api_namespace=ns,
        celery_queue_prefix=ns, api_token="test-token")
    seed(redis_url, migrated_db, ns)
    api = ApiProcess(base, tmp_path_factory.mktemp("fuzz") / "api.log").start()
    try:
        yield api
    finally:
        api.stop()
        delete_keys(redis_url, [redis_keys.namespace_pattern(ns)])


AUTH = {"Authorization": "Bearer test-token"}


def operations(api: ApiProcess) -> list[APIOperation[Any, Any, Any, Any]]:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


def test_every_operation_is_fuzzed(fuzz_api: ApiProcess) -> None:
    labels = {op.label for op in operations(fuzz_api)}
    assert {"GET /api/market/data", "GET /api/real-time/{symbol}/{timeframe}",
            "GET /api/signals", "POST /api/cache/clear", "GET /api/health"} <= labels


# schemathesis's own pytest plugin does not run on pytest 9 here (a `_nodeid` AttributeError),
# so each operation's Hypothesis strategy is driven directly: the same generated cases.
@pytest.mark.slow
def test_no_input_gives_a_server_error(fuzz_api: ApiProcess) -> None:
    failures: list[str] = []
    calls: dict[str, int] = {}
    ops = operations(fuzz_api)
    for op in ops:

        @given(case=op.as_strategy())
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            # Starting replays would leave real jobs and run namespaces behind: that one is
            # fuzzed up to its token check (tests/api/test_replays.py covers the rest).
            auth = {} if case.operation.label == "POST /api/replays" else AUTH
            response = case.call(base_url=fuzz_api.url, timeout=20, headers=auth)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} query={case.query} "
                                f"body={case.body!r} -> {response.status_code} "
                                f"{response.text[:300]}")

        fuzz()
    assert set(calls) == {op.label for op in ops}
    assert failures == [], "\n".join(failures[:20])
