"""Database fixtures: every module gets its own scratch database, migrated to head and dropped
at the end, on the server ALPHAPLUS_TEST_DATABASE_URL names (default: the local PostgreSQL on
127.0.0.1:5432). When nothing answers there, an embedded PostgreSQL is started for the session,
as `alphaplus up` would."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2.extensions import connection as PGConnection

from core.db.connect import connect, with_database
from core.db.scratch import scratch_database
from infra.migrations import upgrade
from infra.stack.postgres import EmbeddedPostgres

SERVER_ENV = "ALPHAPLUS_TEST_DATABASE_URL"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TABLES = ("trades", "candles", "indicators", "signals", "patterns")


def _answers(url: str) -> bool:
    try:
        psycopg2.connect(with_database(url, "postgres"), connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(SERVER_ENV)
    url = configured or DEFAULT_SERVER
    if _answers(url):
        yield url
        return
    if configured:
        pytest.fail(f"{SERVER_ENV}={configured}: no PostgreSQL answers there")
    pgdata = tmp_path_factory.mktemp("pg") / "data"
    server = EmbeddedPostgres(pgdata, log_path=pgdata.parent / "postgres.log").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def migrated_db(pg_server: str) -> Iterator[str]:
    with scratch_database(pg_server) as url:
        upgrade(url)
        yield url


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

