"""Read-back helpers for the database tests."""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import connection as PGConnection


def query(conn: PGConnection, sql: str, params: tuple[Any, ...] | None = None) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.rollback()  # end the read's transaction: the writer commits on its own
    return rows


def count(conn: PGConnection, table: str, run_id: str | None = None) -> int:
    if run_id is None:
        value = query(conn, f"SELECT count(*) FROM {table}")[0][0]
    else:
        value = query(conn, f"SELECT count(*) FROM {table} WHERE run_id = %s", (run_id,))[0][0]
    assert isinstance(value, int)
    return value
