"""Which storage mode a database runs in: "timescaledb" (hypertables, compression, retention,
continuous aggregates) or "postgresql" (the same tables with ordinary indexes).

The mode is read from what the migration actually built, not from what the server could offer:
a server may list the extension without preloading it, or gain it after the tables were made.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from sqlalchemy import Connection

Mode = Literal["timescaledb", "postgresql"]

# Plain SQL, so a caller on another driver (asyncpg in the API, say) can run it too.
EXTENSION_AVAILABLE_SQL = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
EXTENSION_VERSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
# Only valid once the extension is installed (the view belongs to it).
TRADES_IS_HYPERTABLE_SQL = (
    "SELECT 1 FROM timescaledb_information.hypertables "
    "WHERE hypertable_schema = current_schema() AND hypertable_name = 'trades'"
)


class _Cursor(Protocol):
    def execute(self, query: str, /) -> Any: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def close(self) -> None: ...


class DBAPIConnection(Protocol):
    """What is needed of a DB-API connection (psycopg2's, for one)."""

    def cursor(self) -> Any: ...


def _first(conn: Connection | DBAPIConnection, query: str) -> Any:
    if isinstance(conn, Connection):
        return conn.exec_driver_sql(query).scalar()
    cur: _Cursor = conn.cursor()
    try:
        cur.execute(query)
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else row[0]


def timescaledb_available(conn: Connection | DBAPIConnection) -> bool:
    """True when the server offers the extension (installed in this database or not)."""
    return _first(conn, EXTENSION_AVAILABLE_SQL) is not None


def timescaledb_version(conn: Connection | DBAPIConnection) -> str | None:
    """The extension's version in this database; None when it is not installed here."""
    version = _first(conn, EXTENSION_VERSION_SQL)
    return None if version is None else str(version)


def storage_mode(conn: Connection | DBAPIConnection) -> Mode:
    """"timescaledb" when the migrated tables are hypertables, else "postgresql".

    Read-only, two small catalog queries: cheap enough for a health endpoint.
    """
    if timescaledb_version(conn) is None:
        return "postgresql"
    return "timescaledb" if _first(conn, TRADES_IS_HYPERTABLE_SQL) is not None else "postgresql"
