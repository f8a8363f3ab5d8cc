from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from alphaplus.cli import main
from core.db.connect import connect, engine, with_database
from core.db.mode import storage_mode, timescaledb_available
from core.db.schema import metadata
from core.db.scratch import drop_database, scratch_database
from infra.migrations import current_revision, downgrade, head_revision, upgrade
from tests.core.db.conftest import TABLES
from tests.core.db.dbutil import query

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def empty_db(pg_server: str) -> Iterator[str]:
    with scratch_database(pg_server) as url:
        yield url


def tables(url: str) -> set[str]:
    conn = connect(url)
    try:
        rows = query(conn, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    finally:
        conn.close()
    return {r[0] for r in rows} - {"alembic_version"}


def test_upgrade_from_empty_builds_what_the_schema_module_describes(empty_db: str) -> None:
    assert current_revision(empty_db) is None
    upgrade(empty_db)
    assert current_revision(empty_db) == head_revision() == "0002"
    assert tables(empty_db) == set(TABLES)
    eng = engine(empty_db, pooled=False)
    try:
        with eng.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            # Columns, types, defaults, keys and indexes: core.db.schema matches the migrations.
            assert compare_metadata(context, metadata) == []
    finally:
        eng.dispose()


def test_downgrade_to_base_and_up_again(empty_db: str) -> None:
    upgrade(empty_db)
    upgrade(empty_db)  # at head already: nothing to do
    downgrade(empty_db, "base")
    assert current_revision(empty_db) is None
    assert tables(empty_db) == set()
    upgrade(empty_db)
    assert tables(empty_db) == set(TABLES)


def test_concurrent_migrations_take_turns(empty_db: str) -> None:
    # Processes, as services starting together would be (Alembic's context is process-global,
    # so threads could not show it).
    code = "import sys; from infra.migrations import upgrade; upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_db], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert current_revision(empty_db) == head_revision()


def test_plain_postgresql_mode_is_reported(empty_db: str) -> None:
    upgrade(empty_db)
    conn = connect(empty_db)
    try:
        if timescaledb_available(conn):
            pytest.skip("this server has timescaledb")
        assert storage_mode(conn) == "postgresql"
    finally:
        conn.close()
    eng = engine(empty_db, pooled=False)
    try:
        with eng.connect() as sa_conn:
            assert storage_mode(sa_conn) == "postgresql"
    finally:
        eng.dispose()


def test_migrate_command_creates_the_database_and_reports_the_mode(
        pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"alphaplus_test_{uuid.uuid4().hex[:12]}"
    url = with_database(pg_server, name)
    try:
        assert main(["migrate", "--url", url]) == 0
        first = capsys.readouterr().out
        assert f"created database {name}" in first
        assert "upgraded from empty" in first
        assert "storage mode: " in first
        assert main(["migrate", "--url", url]) == 0
        assert "already at head" in capsys.readouterr().out
        assert tables(url) == set(TABLES)
    finally:
        drop_database(pg_server, name)


def test_migrate_command_without_a_server_fails_cleanly(
        capsys: pytest.CaptureFixture[str]) -> None:
    from infra.stack.ports import free_port

    assert main(["migrate", "--url", f"postgresql://postgres@127.0.0.1:{free_port()}/x"]) == 2
    assert "no PostgreSQL server answers" in capsys.readouterr().err
