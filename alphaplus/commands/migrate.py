"""`alphaplus migrate`: bring the database schema to the newest migration and say which storage
mode (timescaledb or postgresql) it runs in."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from core.db.connect import connect, engine
from core.db.mode import Mode, storage_mode, timescaledb_problem
from core.db.retention import apply_trades_retention
from core.exceptions import ServiceUnavailable, StorageModeUnavailable
from core.secrets import redact
from core.settings import Settings
from infra.migrations import current_revision, head_revision, upgrade
from infra.stack.postgres import database_name, prepare_database


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "migrate", help="create or upgrade the database schema (Alembic migrations to head)"
    )
    parser.add_argument("--url", help="database URL (default: ALPHAPLUS_DATABASE_URL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url: str = args.url or settings.database_url
    if not getattr(args, "verbose", False):
        # Alembic logs every connection it configures; the summary below says what happened.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    shown = redact(url)
    # `up` creates the database too; doing it here as well lets `migrate` run first on a server
    # that only has the maintenance database.
    state = prepare_database(url)
    if state is None:
        raise ServiceUnavailable(
            f"no PostgreSQL server answers at {shown}: start one, or run `alphaplus up`")
    if state == "created":
        print(f"created database {database_name(url)}")
    before = current_revision(url)
    mode, retention = migrate_to_head(url, settings)
    after = current_revision(url)
    change = "already at head" if before == after else f"upgraded from {before or 'empty'}"
    print(f"schema at {after} (head {head_revision()}), {change}: {shown}")
    if mode == "timescaledb":
        note = "hypertables, compression, continuous aggregate"
    elif settings.timescaledb == "off":
        note = "ALPHAPLUS_TIMESCALEDB=off: plain tables"
    else:
        conn = connect(url, application_name="alphaplus migrate")
        try:
            note = timescaledb_problem(conn) or "the tables were made in plain mode earlier"
        finally:
            conn.close()
    print(f"storage mode: {mode} ({note})")
    print(f"retention: {retention}")
    return 0


def migrate_to_head(url: str, settings: Settings) -> tuple[Mode, str]:
    """Bring the schema to head as ALPHAPLUS_TIMESCALEDB asks, and the trades retention job to
    ALPHAPLUS_TRADES_RETENTION_DAYS; returns the storage mode and a line on retention.

    Raises StorageModeUnavailable when TIMESCALEDB is `on` and the database is not in that mode
    (the migration stops before building anything, or the tables were made plain earlier).
    """
    upgrade(url, timescaledb=settings.timescaledb)
    eng = engine(url, pooled=False)
    try:
        with eng.begin() as conn:
            mode = storage_mode(conn)
            if settings.timescaledb == "on" and mode != "timescaledb":
                raise StorageModeUnavailable(
                    "ALPHAPLUS_TIMESCALEDB=on, but the tables of this database were made in plain "
                    "PostgreSQL mode earlier: migrate a new database, or set "
                    "ALPHAPLUS_TIMESCALEDB=auto")
            retention = apply_trades_retention(conn, settings.trades_retention_days)
    finally:
        eng.dispose()
    return mode, retention
