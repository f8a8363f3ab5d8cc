"""Fixtures of the backtest tests that use PostgreSQL: a connection to the module's migrated
scratch database, and a run of random-walk candles stored in it as the pipeline stores them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.connect import connect
from tests.workers.backtest.synthetic import store_run, walk

RUN_CANDLES = 900


@pytest.fixture
def db(migrated_db: str) -> Iterator[PGConnection]:
    conn = connect(migrated_db)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def run_candles() -> list[Candle]:
    return walk(RUN_CANDLES, seed=11)


@pytest.fixture
def stored_run(db: PGConnection, run_candles: list[Candle]) -> str:
    """A run id of this test's own, holding BTCUSDT 1m candles, indicators and signals."""
    run_id = f"bt-test-{uuid.uuid4().hex[:8]}"
    assert store_run(db, run_id, run_candles) > 10
    return run_id
