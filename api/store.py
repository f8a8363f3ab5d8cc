"""What the API reads from PostgreSQL: candles (with their indicators), signals, patterns.

psycopg2 is blocking, so each query runs in a worker thread (`anyio.to_thread`) on a small
connection pool; the REST hot path rarely gets here (the cache answers first). Times go in and
out as the contract's integer milliseconds; the SQL turns them into timestamptz exactly
(`'epoch' + n ms`, no float division).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2.extensions import connection as PGConnection

from core.db.connect import libpq_url
from core.db.mode import Mode, storage_mode
from core.exceptions import ServiceUnavailable

T = TypeVar("T")

CANDLE_FIELDS = ("symbol", "timeframe", "open_time", "close_time", "open", "high", "low",
                 "close", "volume", "quote_volume", "trades", "taker_buy_volume",
                 "taker_buy_quote_volume", "closed")
_MS = "(extract(epoch FROM {0}) * 1000)::bigint"
_TS = "('epoch'::timestamptz + %s * interval '1 millisecond')"

_CANDLES_SQL = f"""
SELECT c.symbol, c.timeframe, {_MS.format('c.open_time')}, {_MS.format('c.close_time')},
       c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades,
       c.taker_buy_volume, c.taker_buy_quote_volume, c.closed{{indicators}}
FROM candles c{{join}}
WHERE c.run_id = %s AND c.symbol = %s AND c.timeframe = %s
  AND c.open_time >= {_TS} AND c.open_time <= {_TS}
ORDER BY c.open_time DESC
LIMIT %s
"""
_JOIN = (" LEFT JOIN indicators i ON i.run_id = c.run_id AND i.symbol = c.symbol"
         " AND i.timeframe = c.timeframe AND i.open_time = c.open_time")

_EVENTS_SQL = """
SELECT symbol, timeframe, {ms}, name, direction, {extra}
FROM {table}
WHERE run_id = %s AND symbol = %s {tf_filter} AND time >= {ts}
ORDER BY time DESC, name
LIMIT %s
"""

_LATEST_INDICATORS_SQL = f"""
SELECT {_MS.format('open_time')}, "values" FROM indicators
WHERE run_id = %s AND symbol = %s AND timeframe = %s
ORDER BY open_time DESC LIMIT 1
"""


_BACKTEST_FIELDS = ("id", "run_id", "strategy", "symbol", "timeframe", "candles", "start_time",
                    "end_time", "created_at", "params", "config", "metrics")
_BACKTEST_SQL = f"""
SELECT id, run_id, strategy, symbol, timeframe, candles, {_MS.format('start_time')},
       {_MS.format('end_time')}, {_MS.format('created_at')}, params, config, metrics{{more}}
FROM backtests {{where}}
"""


class DatabaseDown(ServiceUnavailable):
    """PostgreSQL did not answer; the message says where it was looked for."""


class MarketStore:
    """Read-only queries for one run id (`live`, or a replay's)."""

    def __init__(self, database_url: str, run_id: str, *, max_connections: int = 8) -> None:
        self.url = libpq_url(database_url)
        self.run_id = run_id
        self.max_connections = max_connections
        # Idle connections, most recently used last. Not psycopg2's ThreadedConnectionPool: it
        # keeps only `minconn` connections and closes every other one it is given back, so
        # with a lazy pool (minconn 0) every read paid a new connection (~4 ms, and ~6 ms more
        # for a TimescaleDB backend's first query; benchmarks/storage.py).
        self._idle: list[PGConnection] = []
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(max_connections)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def _conn(self) -> Iterator[PGConnection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = psycopg2.connect(self.url, connect_timeout=3,
                                        application_name="alphaplus-api")
            except psycopg2.OperationalError as exc:
                raise DatabaseDown(f"PostgreSQL is not answering: {exc}".strip()) from exc
        broken = False
        try:
            conn.autocommit = True  # read-only single statements: no transaction left open
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise DatabaseDown(f"PostgreSQL connection failed: {exc}".strip()) from exc
        except psycopg2.errors.UndefinedTable as exc:
            raise DatabaseDown("the database has no AlphaPlus tables yet: run "
                               "`alphaplus migrate`") from exc
        finally:
            self._put_back(conn, broken)

    def _put_back(self, conn: PGConnection, broken: bool) -> None:
        if not broken and not conn.closed:
            if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            with self._lock:
                # The limiter bounds the connections in use; this bounds the idle ones.
                if len(self._idle) < self.max_connections:
                    self._idle.append(conn)
                    return
        conn.close()
        if broken:
            # A lost connection usually means a restarted or unreachable server: the idle ones
            # are as dead, and each would fail a request of its own before it was found out.
            self.close()

    async def _run(self, fn: Callable[[PGConnection], T]) -> T:
        def job() -> T:
            with self._conn() as conn:
                return fn(conn)

        return await anyio.to_thread.run_sync(job, limiter=self._limiter)

    async def candles(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                      limit: int, with_indicators: bool) -> list[dict[str, Any]]:
        """The latest `limit` stored candles with open_time in [start, end], oldest first."""
        sql = _CANDLES_SQL.format(indicators=', i."values"' if with_indicators else "",
                                  join=_JOIN if with_indicators else "")

        def query(conn: PGConnection) -> list[dict[str, Any]]:
            with conn.cursor() as cur:
                cur.execute(sql, (self.run_id, symbol, timeframe, start_ms, end_ms, limit))
                rows = cur.fetchall()
            out = []
            for row in reversed(rows):
                candle = dict(zip(CANDLE_FIELDS, row[:14], strict=True))
                if with_indicators:
                    candle["indicators"] = row[14]
                out.append(candle)
            return out

        return await self._run(query)

    async def events(self, kind: str, symbol: str, timeframe: str | None, since_ms: int,
                     limit: int) -> list[dict[str, Any]]:
        """Signals or patterns of a symbol (one timeframe or all), newest first."""
        table, extra, extra_names = (
            ("signals", 'strength, "values"', ("strength", "values")) if kind == "signals"
            else ("patterns", "details", ("details",)))
        sql = _EVENTS_SQL.format(ms=_MS.format("time"), extra=extra, table=table, ts=_TS,
                                 tf_filter="AND timeframe = %s" if timeframe else "")
        params: tuple[Any, ...] = (self.run_id, symbol, *((timeframe,) if timeframe else ()),
                                   since_ms, limit)
        names = ("symbol", "timeframe", "time", "name", "direction", *extra_names)

        def query(conn: PGConnection) -> list[dict[str, Any]]:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return await self._run(query)

    async def latest_indicators(self, symbol: str, timeframe: str) -> dict[str, Any] | None:
        def query(conn: PGConnection) -> dict[str, Any] | None:
            with conn.cursor() as cur:
                cur.execute(_LATEST_INDICATORS_SQL, (self.run_id, symbol, timeframe))
                row = cur.fetchone()
            if row is None:
                return None
            return {"symbol": symbol, "timeframe": timeframe, "open_time": row[0],
                    "values": row[1]}

        return await self._run(query)

    async def backtest(self, report_id: str) -> dict[str, Any] | None:
        """One backtest report (workers/backtest/store.py writes them), trades and equity
        curve included; None when there is no such id."""
        sql = _BACKTEST_SQL.format(more=", trades, equity", where="WHERE id = %s")

        def query(conn: PGConnection) -> dict[str, Any] | None:
            with conn.cursor() as cur:
                cur.execute(sql, (report_id,))
                row = cur.fetchone()
            if row is None:
                return None
            return dict(zip((*_BACKTEST_FIELDS, "trades", "equity"), row, strict=True))

        return await self._run(query)

    async def backtests(self, run_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Reports newest first (all runs, or one), without their trades and equity curves."""
        where = ("WHERE run_id = %s " if run_id else "") + "ORDER BY created_at DESC LIMIT %s"
        sql = _BACKTEST_SQL.format(more="", where=where)
        args: tuple[Any, ...] = (run_id, limit) if run_id else (limit,)

        def query(conn: PGConnection) -> list[dict[str, Any]]:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return [dict(zip(_BACKTEST_FIELDS, row, strict=True)) for row in cur.fetchall()]

        return await self._run(query)

    async def health(self) -> tuple[float, Mode]:
        """Round-trip time of a trivial query (ms) and the storage mode; raises DatabaseDown."""

        def query(conn: PGConnection) -> tuple[float, Mode]:
            started = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
            latency = (time.perf_counter() - started) * 1000
            return latency, storage_mode(conn)

        return await self._run(query)
