"""Throw-away databases for tests and benchmarks: created under a unique name on a server and
dropped afterwards, so nothing else on that server is ever touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql

from core.db.connect import libpq_url, with_database

MAINTENANCE_DB = "postgres"


@contextmanager
def scratch_database(server_url: str, prefix: str = "alphaplus_test") -> Iterator[str]:
    """The URL of a new, empty database `<prefix>_<random>` on the server of `server_url`
    (whatever database that URL names); dropped on exit, with any connection still open to it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = with_database(libpq_url(server_url), MAINTENANCE_DB)
    _admin(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop the database `name` on the server of `server_url`, if it exists."""
    admin = with_database(libpq_url(server_url), MAINTENANCE_DB)
    # FORCE (PostgreSQL 13+) ends sessions a failed test left open, which would block the drop.
    _admin(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _admin(dsn: str, statement: sql.Composed) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
