"""The database schema's Alembic migrations, run without an alembic.ini.

The configuration is built here in code, so `alphaplus migrate`, the workers and the tests run
the same migrations from any working directory, against any URL, with no alembic.ini to keep in
step. For other Alembic commands (history, a new revision) use `alembic_config()` with
`alembic.command`, e.g. `command.revision(alembic_config(url), "add x")`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.db.connect import engine
from core.settings import Wanted

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str, timescaledb: Wanted = "auto") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # Passed as an attribute, not a main option: the ini parser would read a "%" in a password
    # as interpolation.
    cfg.attributes["url"] = url
    # ALPHAPLUS_TIMESCALEDB: the migrations that can build TimescaleDB objects read it.
    cfg.attributes["timescaledb"] = timescaledb
    return cfg


def upgrade(url: str, revision: str = "head", timescaledb: Wanted = "auto") -> None:
    """Migrate to `revision`; `timescaledb` is ALPHAPLUS_TIMESCALEDB (core.db.mode.Wanted)."""
    command.upgrade(alembic_config(url, timescaledb), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision the database is at; None before the first migration."""
    eng = engine(url, pooled=False)
    try:
        with eng.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        eng.dispose()
