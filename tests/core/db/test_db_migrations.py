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
    assert current_revision(empty_db) == head_revision() == "0003"
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


def test_timescaledb_off_makes_plain_tables_on_any_server(empty_db: str) -> None:
    upgrade(empty_db, timescaledb="off")
    conn = connect(empty_db)
    try:
        assert storage_mode(conn) == "postgresql"
    finally:
        conn.close()


def test_timescaledb_on_builds_hypertables_policies_and_the_aggregate(
        empty_db: str, timescaledb_missing: str | None) -> None:
    if timescaledb_missing is not None:
        pytest.skip(f"TimescaleDB mode: {timescaledb_missing}")
    upgrade(empty_db, timescaledb="on")
    conn = connect(empty_db)
    try:
        assert storage_mode(conn) == "timescaledb"
        hypertables = {r[0] for r in query(
            conn, "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert hypertables == {"trades", "candles", "indicators", "signals", "patterns"}
        jobs = {(r[0], r[1]) for r in query(
            conn, "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
                  "WHERE hypertable_name IS NOT NULL")}
        # No chunk-dropping retention policy: it deleted imported history (migration 0003).
        assert ("policy_retention", "trades") not in jobs
        assert {("policy_compression", t) for t in ("trades", "candles", "indicators")} <= jobs
        assert query(conn, "SELECT view_name FROM timescaledb_information.continuous_aggregates"
                     ) == [("candles_1h_from_1m",)]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def unloaded_timescaledb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of the system's PostgreSQL with the timescaledb extension installed but not in
    shared_preload_libraries: what a package install leaves until the server is configured."""
    from infra.stack.postgres import EmbeddedPostgres

    bin_dir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if bin_dir is None or not list(Path("/usr/share/postgresql").glob(
            "*/extension/timescaledb.control")):
        pytest.skip("no system PostgreSQL with the timescaledb extension installed")
    pgdata = tmp_path_factory.mktemp("unloaded") / "data"
    server = EmbeddedPostgres(pgdata, log_path=pgdata.parent / "postgres.log",
                              dbname="postgres", bin_dir=bin_dir).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_installed_but_not_preloaded_in_auto_mode_says_what_to_do_and_goes_plain(
        unloaded_timescaledb: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = with_database(unloaded_timescaledb, f"auto_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("ALPHAPLUS_TIMESCALEDB", "auto")
    assert main(["migrate", "--url", url]) == 0
    captured = capsys.readouterr()
    assert "storage mode: postgresql (the timescaledb extension is installed but not " \
           "preloaded: add shared_preload_libraries = 'timescaledb'" in captured.out
    # The log line (stderr): one warning, nothing else.
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert "WARNING" in captured.err and "ALPHAPLUS_TIMESCALEDB=off" in captured.err
    assert tables(url) == set(TABLES)


def test_installed_but_not_preloaded_in_on_mode_stops_with_exit_code_2_and_builds_nothing(
        unloaded_timescaledb: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = with_database(unloaded_timescaledb, f"on_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("ALPHAPLUS_TIMESCALEDB", "on")
    assert main(["migrate", "--url", url]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err == ["alphaplus migrate: ALPHAPLUS_TIMESCALEDB=on, but the timescaledb extension "
                   "is installed but not preloaded: add shared_preload_libraries = "
                   "'timescaledb' to postgresql.conf and restart PostgreSQL, or set "
                   "ALPHAPLUS_TIMESCALEDB=off for plain PostgreSQL tables"], captured
    assert "Traceback" not in captured.out + captured.err
    assert tables(url) == set()
    assert current_revision(url) is None


def test_a_user_who_may_not_create_the_extension_gets_plain_tables_in_auto(
        empty_db: str, timescaledb_missing: str | None, pg_server: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if timescaledb_missing is not None:
        pytest.skip(f"TimescaleDB mode: {timescaledb_missing}")
    role = f"alphaplus_test_{uuid.uuid4().hex[:8]}"
    admin = connect(empty_db)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN")
            cur.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        upgrade(empty_db.replace("://postgres@", f"://{role}@"), timescaledb="auto")
        assert any("could not be created here" in r.getMessage() for r in caplog.records)
        assert tables(empty_db) == set(TABLES)
        assert storage_mode(admin) == "postgresql"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")
        admin.close()
