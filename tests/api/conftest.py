"""API test fixtures: anyio for async tests, and a real `alphaplus api` process serving the
test's own Redis namespace and scratch database. (Shared by several authors: append, don't
replace or delete.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from tests.api.server import ApiProcess

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_settings(redis_url: str, namespace: str, migrated_db: str) -> Settings:
    """Settings of an API serving `namespace`, on the test's Redis and scratch database."""
    return Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, database_url=migrated_db, symbols=SYMBOLS,
        api_namespace=namespace, celery_queue_prefix=namespace, api_token="test-token")


@pytest.fixture
def live_api(api_settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(api_settings, tmp_path / "api.log").start()
    try:
        yield server
    finally:
        server.stop()
