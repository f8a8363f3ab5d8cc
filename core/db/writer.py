"""Bulk, idempotent writes: COPY into a temporary staging table, then one INSERT ... SELECT
from it into the real table.

Why this shape: COPY is the fastest way into PostgreSQL but cannot resolve conflicts; the INSERT
from the staging table can, for the whole batch in one statement. Re-emitted data (a stream
process resuming from its checkpoint, a Celery retry, a replayed range) therefore costs neither a
lost nor a doubled row.

The INSERT first runs without a conflict clause, inside a savepoint: ON CONFLICT's speculative
insertion costs about as much CPU as the insert itself (measured: half the throughput), and
nearly every batch is all new rows. Only when that fails on a duplicate key is it rolled back to
the savepoint and run again with ON CONFLICT, so duplicates cost one wasted attempt, never a
wrong result.

Each call is one transaction and commits before it returns, so a batch lands whole or not at all;
anything the caller left pending on the connection is committed with it. On an error the
connection is rolled back and stays usable. Callers retry on `RETRYABLE_DB_ERRORS` (connection
lost, server restarting, serialization failure, deadlock) and on nothing else, which is a bad
batch that no retry would fix.

Rows go in sorted by key, so that two writers with overlapping batches lock rows in the same
order and cannot deadlock each other.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import msgspec
import orjson
import psycopg2
from psycopg2 import errors
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.schema import LIVE_RUN_ID
from core.models import Trade, TradeRecord

RETRYABLE_DB_ERRORS: tuple[type[Exception], ...] = (
    # Includes TransactionRollbackError (serialization failure, deadlock), a subclass.
    psycopg2.OperationalError,
    # The connection was already closed or broken: reconnect and retry.
    psycopg2.InterfaceError,
)


class IndicatorRow(TypedDict):
    """One candle's indicator values. `values` holds JSON-able values by indicator key
    (`{"rsi_14": 55.2, "macd": -1.3}`); NaN and infinities are stored as null."""

    symbol: str
    timeframe: str
    open_time: int  # ms since the epoch: the candle's open time
    values: Mapping[str, Any]


class SignalRow(TypedDict):
    symbol: str
    timeframe: str
    time: int  # ms since the epoch
    name: str
    direction: str
    strength: NotRequired[float | None]
    values: NotRequired[Mapping[str, Any]]


class PatternRow(TypedDict):
    symbol: str
    timeframe: str
    time: int  # ms since the epoch
    name: str
    direction: NotRequired[str | None]
    details: NotRequired[Mapping[str, Any]]


@dataclass(frozen=True)
class _Target:
    stage: str  # the temporary table's name
    stage_columns: str  # its column definitions, in COPY order
    insert: str  # INSERT ... SELECT ... FROM stage ORDER BY <key>, without a conflict clause
    on_conflict: str  # the clause for the retry when a key already exists
    # COPY's options. Trades use NULL '' (their text fields are never empty and are not
    # escaped, see _check), candles the binary format; the rest, default text with escaping.
    copy_options: str = ""


# ms or µs since the epoch to timestamptz by integer interval arithmetic: exact, unlike a
# division into to_timestamp()'s float seconds.
def _ms(column: str) -> str:
    return f"(TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 millisecond')"


def _us(column: str) -> str:
    return f"(TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 microsecond')"


NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    """`value` as a COPY text field: tab, newline and backslash would otherwise split or
    reinterpret the row."""
    if "\\" in value or not value.isprintable():
        return value.translate(_COPY_ESCAPES)
    return value


def _json(value: Mapping[str, Any] | None) -> str:
    # orjson writes NaN/inf as null (JSON has no NaN; PostgreSQL would refuse the row) and
    # escapes control characters itself, so only its backslashes need doubling for COPY.
    if not value:
        return "{}"
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode().replace("\\", "\\\\")


def _float(value: float | None) -> str:
    return NULL if value is None or math.isnan(value) else repr(float(value))


def _check(payload: str, rows: int, columns: int, what: str) -> None:
    """Refuse a payload in which some field held a tab, newline, CR or backslash.

    Trade rows are formatted without escaping each field (escaping nearly tripled the
    formatting time), which is safe only because this one scan of the whole payload proves that
    no field held a character COPY would read as structure. Their fields are numbers, symbols
    and names: such a character is bad input, not data to keep.
    """
    if ("\\" in payload or "\r" in payload or payload.count("\n") != rows
            or payload.count("\t") != rows * (columns - 1)):
        raise ValueError(f"{what}: a field holds a tab, newline, carriage return or backslash")


def _bulk(conn: PGConnection, target: _Target, payload: bytes, run_id: str) -> int:
    """COPY `payload` into the staging table, insert from it, commit; the rows written."""
    if not run_id:
        raise ValueError("run_id must not be empty")
    params = {"run_id": run_id}
    autocommit = conn.autocommit
    if autocommit:
        # COPY and INSERT must share one transaction: the staging rows vanish at every commit.
        conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # The staging table lives as long as the session and is emptied at each commit, so
            # frequent small batches do not churn the system catalogs with CREATE/DROP. JIT
            # would only add compile time to these plans, and the sort should stay in memory.
            cur.execute(
                "SET LOCAL client_min_messages = warning; SET LOCAL jit = off; "
                "SET LOCAL work_mem = '64MB'; "
                f"CREATE TEMP TABLE IF NOT EXISTS {target.stage} ({target.stage_columns}) "
                "ON COMMIT DELETE ROWS"
            )
            cur.copy_expert(f"COPY {target.stage} FROM STDIN {target.copy_options}",
                            io.BytesIO(payload))
            try:
                cur.execute(f"SAVEPOINT alphaplus_new_rows; {target.insert}", params)
            except errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT alphaplus_new_rows")
                cur.execute(f"{target.insert} {target.on_conflict}", params)
            written = int(cur.rowcount)
        conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True
    return written


def _rollback(conn: PGConnection) -> None:
    if conn.closed:
        return
    # On a broken connection this fails too; the error being raised already says more.
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()


_TRADES = _Target(
    stage="alphaplus_stage_trades",
    stage_columns="symbol text, trade_id bigint, price numeric, qty numeric, time_us bigint, "
                  "buyer_maker boolean, market text, exchange text, first_trade_id bigint, "
                  "last_trade_id bigint",
    insert="INSERT INTO trades (run_id, symbol, trade_id, time, price, qty, buyer_maker, "
           "market, exchange, first_trade_id, last_trade_id) "
           f"SELECT %(run_id)s, symbol, trade_id, {_us('time_us')}, price, qty, buyer_maker, "
           "market, exchange, first_trade_id, last_trade_id "
           "FROM alphaplus_stage_trades ORDER BY symbol, trade_id",
    # No conflict target: in TimescaleDB mode the unique key also holds the time column.
    on_conflict="ON CONFLICT DO NOTHING",
    copy_options="WITH (NULL '')",
)


def write_trades(conn: PGConnection, trades: Iterable[Trade | TradeRecord],
                 run_id: str = LIVE_RUN_ID) -> int:
    """Insert trades; one already stored under the same (run_id, symbol, trade_id) is left as
    it is. The time stored is `ts_us` when present, else `ts`. Returns the number of new
    trades."""
    lines: list[str] = []
    append = lines.append
    for t in trades:
        if isinstance(t, TradeRecord):
            t = t.as_dict()
        ts_us = t.get("ts_us")
        append(
            f"{t['symbol']}\t{t['trade_id']}\t{t['price']}\t{t['qty']}\t"
            f"{t['ts'] * 1000 if ts_us is None else ts_us}\t{'t' if t['buyer_maker'] else 'f'}\t"
            f"{t['market']}\t{t['exchange']}\t{t.get('first_trade_id', '')}\t"
            f"{t.get('last_trade_id', '')}\n"
        )
    if not lines:
        return 0
    payload = "".join(lines)
    _check(payload, len(lines), 10, "trade")
    return _bulk(conn, _TRADES, payload.encode(), run_id)


_CANDLE_VALUES = ("close_time", "open", "high", "low", "close", "volume", "quote_volume",
                  "trades", "taker_buy_volume", "taker_buy_quote_volume", "closed")

_CANDLES = _Target(
    stage="alphaplus_stage_candles",
    stage_columns="symbol text, timeframe text, open_ms bigint, close_ms bigint, open float8, "
                  "high float8, low float8, close float8, volume float8, quote_volume float8, "
                  "trades bigint, taker_buy_volume float8, taker_buy_quote_volume float8, "
                  "closed boolean",
    insert="INSERT INTO candles (run_id, symbol, timeframe, open_time, close_time, open, high, "
           "low, close, volume, quote_volume, trades, taker_buy_volume, "
           "taker_buy_quote_volume, closed) "
           f"SELECT %(run_id)s, symbol, timeframe, {_ms('open_ms')}, {_ms('close_ms')}, open, "
           "high, low, close, volume, quote_volume, trades, taker_buy_volume, "
           "taker_buy_quote_volume, closed "
           "FROM alphaplus_stage_candles ORDER BY symbol, timeframe, open_ms",
    on_conflict="ON CONFLICT (run_id, symbol, timeframe, open_time) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CANDLE_VALUES)
                # Skipping identical rows spares a dead tuple per unchanged candle re-emitted.
                + " WHERE (" + ", ".join(f"candles.{c}" for c in _CANDLE_VALUES) + ")"
                + " IS DISTINCT FROM (" + ", ".join(f"EXCLUDED.{c}" for c in _CANDLE_VALUES)
                + ") AND (EXCLUDED.closed OR NOT candles.closed)",
    copy_options="WITH (FORMAT binary)",
)

# Binary COPY: formatting nine floats as text per candle cost most of the writer's time, and
# parsing them back most of the server's COPY time. A candle is numbers and two short strings,
# so one precompiled struct packs each row.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, extension length
_BINARY_TRAILER = b"\xff\xff"
_CANDLE_NUMBERS = struct.Struct(">iqiq" + "id" * 6 + "iq" + "id" * 2 + "i?")


def _candles_binary(candles: Iterable[Candle]) -> bytes:
    parts = [_BINARY_HEADER]
    append = parts.append
    pack = _CANDLE_NUMBERS.pack
    # Field count, then symbol and timeframe as length-prefixed UTF-8: the same few per batch.
    prefixes: dict[tuple[str, str], bytes] = {}
    for c in candles:
        prefix = prefixes.get((c.symbol, c.timeframe))
        if prefix is None:
            symbol, timeframe = c.symbol.encode(), c.timeframe.encode()
            prefix = (struct.pack(">hi", 14, len(symbol)) + symbol
                      + struct.pack(">i", len(timeframe)) + timeframe)
            prefixes[(c.symbol, c.timeframe)] = prefix
        append(prefix)
        append(pack(8, c.open_time, 8, c.close_time, 8, c.open, 8, c.high, 8, c.low,
                    8, c.close, 8, c.volume, 8, c.quote_volume, 8, c.trades,
                    8, c.taker_buy_volume, 8, c.taker_buy_quote_volume, 1, c.closed))
    append(_BINARY_TRAILER)
    return b"".join(parts)


def upsert_candles(conn: PGConnection, candles: Iterable[Candle | Mapping[str, Any]],
                   run_id: str = LIVE_RUN_ID) -> int:
    """Insert candles, or update the stored ones with the same (run_id, symbol, timeframe,
    open_time): a candle amended by late trades replaces the earlier version. An unclosed
    candle never replaces a closed one (a stale update arriving late). Within one batch the
    last version of a candle wins. Returns the number of rows inserted or changed."""
    latest: dict[tuple[str, str, int], Candle] = {}
    for c in candles:
        if not isinstance(c, Candle):
            # Validates a dict (from the market.candles topic, say) against the contract.
            c = msgspec.convert(c, Candle)
        latest[(c.symbol, c.timeframe, c.open_time)] = c
    if not latest:
        return 0
    try:
        payload = _candles_binary(latest.values())
    except struct.error as exc:
        raise ValueError(f"candle: a field has the wrong type ({exc})") from exc
    return _bulk(conn, _CANDLES, payload, run_id)


_INDICATORS = _Target(
    stage="alphaplus_stage_indicators",
    stage_columns="symbol text, timeframe text, open_ms bigint, vals jsonb",
    insert='INSERT INTO indicators (run_id, symbol, timeframe, open_time, "values") '
           f"SELECT %(run_id)s, symbol, timeframe, {_ms('open_ms')}, vals "
           "FROM alphaplus_stage_indicators ORDER BY symbol, timeframe, open_ms",
    on_conflict="ON CONFLICT (run_id, symbol, timeframe, open_time) DO UPDATE "
                'SET "values" = indicators."values" || EXCLUDED."values" '
                'WHERE indicators."values" || EXCLUDED."values" '
                'IS DISTINCT FROM indicators."values"',
)


def upsert_indicators(conn: PGConnection, rows: Iterable[IndicatorRow],
                      run_id: str = LIVE_RUN_ID) -> int:
    """Insert or update one candle's indicator values. Stored keys absent from the new values
    are kept (the JSONB objects are merged), so indicator groups may be written separately;
    within one batch the last row of a candle wins. Returns the rows inserted or changed."""
    latest: dict[tuple[str, str, int], IndicatorRow] = {}
    for r in rows:
        latest[(r["symbol"], r["timeframe"], int(r["open_time"]))] = r
    if not latest:
        return 0
    payload = "".join([
        f"{_text(symbol)}\t{_text(tf)}\t{open_time}\t{_json(r['values'])}\n"
        for (symbol, tf, open_time), r in latest.items()
    ])
    return _bulk(conn, _INDICATORS, payload.encode(), run_id)


_SIGNALS = _Target(
    stage="alphaplus_stage_signals",
    stage_columns="symbol text, timeframe text, time_ms bigint, name text, direction text, "
                  "strength float8, vals jsonb",
    insert='INSERT INTO signals (run_id, symbol, timeframe, time, name, direction, strength, '
           '"values") '
           f"SELECT %(run_id)s, symbol, timeframe, {_ms('time_ms')}, name, direction, strength, "
           "vals FROM alphaplus_stage_signals ORDER BY symbol, timeframe, time_ms, name",
    on_conflict="ON CONFLICT (run_id, symbol, timeframe, time, name) DO NOTHING",
)


def insert_signals(conn: PGConnection, rows: Iterable[SignalRow],
                   run_id: str = LIVE_RUN_ID) -> int:
    """Insert signals; one already stored under the same (run_id, symbol, timeframe, time,
    name) is left as it was first written. Returns the number of new signals."""
    payload = "".join([
        f"{_text(r['symbol'])}\t{_text(r['timeframe'])}\t{int(r['time'])}\t{_text(r['name'])}\t"
        f"{_text(r['direction'])}\t{_float(r.get('strength'))}\t{_json(r.get('values'))}\n"
        for r in rows
    ])
    return _bulk(conn, _SIGNALS, payload.encode(), run_id) if payload else 0


_PATTERNS = _Target(
    stage="alphaplus_stage_patterns",
    stage_columns="symbol text, timeframe text, time_ms bigint, name text, direction text, "
                  "details jsonb",
    insert="INSERT INTO patterns (run_id, symbol, timeframe, time, name, direction, details) "
           f"SELECT %(run_id)s, symbol, timeframe, {_ms('time_ms')}, name, direction, details "
           "FROM alphaplus_stage_patterns ORDER BY symbol, timeframe, time_ms, name",
    on_conflict="ON CONFLICT (run_id, symbol, timeframe, time, name) DO NOTHING",
)


def insert_patterns(conn: PGConnection, rows: Iterable[PatternRow],
                    run_id: str = LIVE_RUN_ID) -> int:
    """Insert detected patterns; one already stored under the same (run_id, symbol,
    timeframe, time, name) is left as it was. Returns the number of new patterns."""
    lines = []
    for r in rows:
        direction = r.get("direction")
        lines.append(
            f"{_text(r['symbol'])}\t{_text(r['timeframe'])}\t{int(r['time'])}\t"
            f"{_text(r['name'])}\t{NULL if direction is None else _text(direction)}\t"
            f"{_json(r.get('details'))}\n"
        )
    return _bulk(conn, _PATTERNS, "".join(lines).encode(), run_id) if lines else 0
