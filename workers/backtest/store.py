"""Backtest reports in the `backtests` table (migration 0002), one row per report.

The row holds the report's document (`BacktestReport.as_dict()`) split into columns: the
metrics, the trade list and the thinned equity curve are JSONB, so the API returns them as they
are and the results of a run can be compared in SQL (`metrics->>'sharpe'`).
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg2.extensions import connection as PGConnection

from workers.backtest.report import BacktestReport

_JSON = ("params", "config", "metrics", "trades", "equity")
_TIME = ("start_time", "end_time", "created_at")
_COLUMNS = ("id", "run_id", "strategy", "symbol", "timeframe", "candles", *_TIME, *_JSON)


def _ms_to_ts(name: str) -> str:
    return f"TIMESTAMPTZ 'epoch' + %({name})s * INTERVAL '1 millisecond'"


_INSERT = (
    f"INSERT INTO backtests ({', '.join(_COLUMNS)}) VALUES ("
    + ", ".join(
        f"%({c})s::jsonb" if c in _JSON else _ms_to_ts(c) if c in _TIME else f"%({c})s"
        for c in _COLUMNS)
    + ") ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")
)
_SUMMARY = tuple(c for c in _COLUMNS if c not in ("trades", "equity"))


def _select(columns: tuple[str, ...]) -> str:
    return "SELECT " + ", ".join(
        f"(extract(epoch FROM {c}) * 1000)::bigint" if c in _TIME
        else f"{c}::text" if c in _JSON else c
        for c in columns) + " FROM backtests"


def save(conn: PGConnection, report: BacktestReport) -> None:
    """Insert the report, or replace the one with the same id; commits."""
    doc = report.as_dict()
    row: dict[str, Any] = {c: doc[c] for c in _COLUMNS if c != "candles"}
    row["candles"] = report.metrics["candles"]
    for c in _JSON:
        row[c] = orjson.dumps(doc[c]).decode()
    try:
        with conn.cursor() as cur:
            cur.execute(_INSERT, row)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _document(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    doc = dict(zip(columns, row, strict=True))
    for c in _JSON:
        if c in doc:
            doc[c] = orjson.loads(doc[c])
    return doc


def fetch(conn: PGConnection, report_id: str) -> dict[str, Any] | None:
    """The saved report document (as `BacktestReport.as_dict()`, plus `candles`), or None."""
    try:
        with conn.cursor() as cur:
            cur.execute(f"{_select(_COLUMNS)} WHERE id = %s", (report_id,))
            row = cur.fetchone()
    finally:
        conn.rollback()
    return None if row is None else _document(_COLUMNS, row)


def list_reports(conn: PGConnection, run_id: str | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    """The newest reports (of one run, when given), without their trades and curves."""
    where = "WHERE run_id = %s" if run_id is not None else ""
    params: tuple[Any, ...] = (run_id, limit) if run_id is not None else (limit,)
    try:
        with conn.cursor() as cur:
            cur.execute(f"{_select(_SUMMARY)} {where} ORDER BY created_at DESC, id LIMIT %s",
                        params)
            rows = cur.fetchall()
    finally:
        conn.rollback()
    return [_document(_SUMMARY, row) for row in rows]
