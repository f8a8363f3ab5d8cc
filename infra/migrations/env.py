"""Alembic's environment: run the migrations against the URL `alembic_config()` carries.

Online only: the migrations look at the server (is the timescaledb extension there?) to decide
what to build, which an offline SQL script cannot do.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from core.db.connect import engine

# Any constant works; it only has to be the same in every process running migrations.
MIGRATION_LOCK_KEY = 0x41_6C_70_68_61  # "Alpha"


def run_migrations_online() -> None:
    config = context.config
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database URL: use infra.migrations.alembic_config(url)")
    eng = engine(url, pooled=False)
    try:
        with eng.connect() as connection, connection.begin():
            # Services starting together may all migrate at once; the lock makes them take
            # turns, and the later ones find the schema at head and do nothing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
            context.configure(connection=connection, target_metadata=None)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        eng.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported: the schema depends on "
                       "the server's extensions")
run_migrations_online()
