"""`alphaplus migrate`: bring the database schema to the newest migration and say which storage
mode (timescaledb or postgresql) it runs in."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from core.db.connect import connect
from core.db.mode import storage_mode, timescaledb_available
from core.exceptions import ServiceUnavailable
from core.settings import Settings
from infra.migrations import current_revision, head_revision, upgrade
from infra.stack.postgres import database_name, prepare_database
from infra.stack.resolve import redact


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "migrate", help="create or upgrade the database schema (Alembic migrations to head)"
    )
    parser.add_argument("--url", help="database URL (default: ALPHAPLUS_DATABASE_URL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url: str = args.url or Settings.from_env().database_url
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
    upgrade(url)
    after = current_revision(url)
    conn = connect(url, application_name="alphaplus migrate")
    try:
        mode = storage_mode(conn)
        available = timescaledb_available(conn)
    finally:
        conn.close()
    change = "already at head" if before == after else f"upgraded from {before or 'empty'}"
    print(f"schema at {after} (head {head_revision()}), {change}: {shown}")
    if mode == "timescaledb":
        note = "hypertables, compression, retention, continuous aggregate"
    elif available:
        note = ("the timescaledb extension is listed but was not used: it must be in "
                "shared_preload_libraries and creatable by this user")
    else:
        note = "the timescaledb extension is not available on this server: plain tables"
    print(f"storage mode: {mode} ({note})")
    return 0
