"""Which storage mode a database runs in: "timescaledb" (hypertables, compression, retention,
continuous aggregates) or "postgresql" (the same tables with ordinary indexes).

The mode is read from what the migration actually built, not from what the server could offer:
a server may list the extension without preloading it, or gain it after the tables were made.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from core.exceptions import StorageModeUnavailable
from core.settings import Wanted

Mode = Literal["timescaledb", "postgresql"]

log = logging.getLogger(__name__)

# Plain SQL, so a caller on another driver (asyncpg in the API, say) can run it too.
EXTENSION_AVAILABLE_SQL = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
# Reading the preload list needs a superuser or pg_read_all_settings: asked first, so a refusal
# cannot abort a caller's transaction.
PRELOAD_SQL = ("SELECT CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') "
               "THEN current_setting('shared_preload_libraries') END")
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


def timescaledb_preloaded(conn: Connection | DBAPIConnection) -> bool | None:
    """Whether the server preloads timescaledb; None when this user may not read that."""
    libraries = _first(conn, PRELOAD_SQL)
    if libraries is None:
        return None
    return "timescaledb" in (name.strip().strip('"') for name in str(libraries).split(","))


def timescaledb_problem(conn: Connection | DBAPIConnection) -> str | None:
    """Why this server cannot run TimescaleDB mode, with what to do; None when it can.

    The preload is checked before anything tries the extension: creating it without the preload
    ends the session with a FATAL error, which takes the migration's transaction down with it.
    """
    if not timescaledb_available(conn):
        return ("the timescaledb extension is not installed on this PostgreSQL server: install "
                "it (docs/STORAGE.md), or set ALPHAPLUS_TIMESCALEDB=off for plain tables")
    if timescaledb_preloaded(conn) is False:
        return ("the timescaledb extension is installed but not preloaded: add "
                "shared_preload_libraries = 'timescaledb' to postgresql.conf and restart "
                "PostgreSQL, or set ALPHAPLUS_TIMESCALEDB=off for plain PostgreSQL tables")
    return None


def prepare_timescaledb(conn: Connection, wanted: Wanted) -> bool:
    """Create the extension where ALPHAPLUS_TIMESCALEDB=`wanted` asks for TimescaleDB mode and
    the server can; False means plain tables.

    With `auto`, a server that cannot gets one warning line saying why and what to do; with `on`
    StorageModeUnavailable is raised, before the migration has built anything.
    """
    if wanted == "off":
        return False
    problem = timescaledb_problem(conn)
    if problem is None:
        try:
            # A savepoint: a refusal (creating it needs a superuser) must leave the
            # transaction usable for the plain schema.
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0]
            problem = (f"the timescaledb extension could not be created here ({reason}): have "
                       "a superuser run CREATE EXTENSION timescaledb in this database, or set "
                       "ALPHAPLUS_TIMESCALEDB=off for plain PostgreSQL tables")
    if problem is None:
        return True
    if wanted == "on":
        raise StorageModeUnavailable(f"ALPHAPLUS_TIMESCALEDB=on, but {problem}")
    log.warning("making plain PostgreSQL tables: %s", problem)
    return False


def storage_mode(conn: Connection | DBAPIConnection) -> Mode:
    """"timescaledb" when the migrated tables are hypertables, else "postgresql".

    Read-only, two small catalog queries: cheap enough for a health endpoint.
    """
    if timescaledb_version(conn) is None:
        return "postgresql"
    return "timescaledb" if _first(conn, TRADES_IS_HYPERTABLE_SQL) is not None else "postgresql"
