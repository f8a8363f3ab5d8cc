from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from infra.stack.postgres import EmbeddedPostgres, prepare_database
from infra.stack.process import descendants, process_alive


@pytest.fixture(scope="module")
def pgdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pg") / "data"


@pytest.fixture(scope="module")
def server(pgdata: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(pgdata, log_path=pgdata.parent / "postgres.log").start()
    try:
        yield pg
    finally:
        pg.stop()


def query(url: str, sql: str) -> object:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone() if cur.description else None
            return row[0] if row else None
    finally:
        conn.close()


def test_answers_select_1_on_its_database(server: EmbeddedPostgres) -> None:
    assert server.url.startswith("postgresql://postgres@127.0.0.1:")
    assert server.url.endswith("/alphaplus")
    assert query(server.url, "SELECT 1") == 1


def test_missing_database_is_created(server: EmbeddedPostgres) -> None:
    url = server.url.rsplit("/", 1)[0] + f"/t_{uuid.uuid4().hex[:8]}"
    assert prepare_database(url) == "created"
    assert prepare_database(url) == "exists"
    assert query(url, "SELECT 1") == 1


def test_unreachable_server_is_reported_as_none() -> None:
    from infra.stack.ports import free_port

    assert prepare_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1) is None


def test_data_survives_a_restart_and_stop_leaves_nothing(server: EmbeddedPostgres,
                                                         pgdata: Path) -> None:
    query(server.url, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    pid = server.pid
    assert pid is not None
    processes = [pid, *descendants(pid)]
    assert len(processes) > 1  # the postmaster and its workers
    server.stop()
    assert not any(process_alive(p) for p in processes)

    again = EmbeddedPostgres(pgdata, log_path=pgdata.parent / "postgres.log").start()
    try:
        assert query(again.url, "SELECT v FROM kept") == 42
    finally:
        again.stop()
