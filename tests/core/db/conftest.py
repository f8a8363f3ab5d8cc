"""Database test fixtures: a connection to the module's scratch database (tests/conftest.py),
its tables emptied first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg2.extensions import connection as PGConnection

from core.db.connect import connect

TABLES = ("trades", "candles", "indicators", "signals", "patterns", "backtests")


@pytest.fixture
def conn(migrated_db: str) -> Iterator[PGConnection]:
    """A connection to the module's database, its tables emptied first."""
    c = connect(migrated_db)
    try:
        with c, c.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(TABLES)}")
        yield c
    finally:
        c.close()

