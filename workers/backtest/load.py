"""Reading a run's closed candles, indicators and signals from PostgreSQL, as the live pipeline
(run id `live`) or a replay (its own run id) stored them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
from psycopg2.extensions import connection as PGConnection

from workers.backtest.data import DIRECTION, BacktestData
from workers.backtest.errors import NoData

_MS = "(extract(epoch FROM {}) * 1000)::bigint"

# Closed candles only: a forming candle's values are not final, and live never decides on one.
_CANDLES = f"""
    SELECT {_MS.format('c.open_time')}, c.open, c.high, c.low, c.close, c.volume,
           i."values"::text
    FROM candles c
    LEFT JOIN indicators i USING (run_id, symbol, timeframe, open_time)
    WHERE c.run_id = %(run)s AND c.symbol = %(symbol)s AND c.timeframe = %(tf)s AND c.closed
      AND c.open_time >= TIMESTAMPTZ 'epoch' + %(start)s * INTERVAL '1 millisecond'
      AND c.open_time < TIMESTAMPTZ 'epoch' + %(end)s * INTERVAL '1 millisecond'
    ORDER BY c.open_time
"""
_SIGNALS = f"""
    SELECT {_MS.format('time')}, name, direction FROM signals
    WHERE run_id = %(run)s AND symbol = %(symbol)s AND timeframe = %(tf)s
      AND time >= TIMESTAMPTZ 'epoch' + %(start)s * INTERVAL '1 millisecond'
      AND time < TIMESTAMPTZ 'epoch' + %(end)s * INTERVAL '1 millisecond'
"""
# Beyond any real time, and well inside timestamptz's range.
FAR_FUTURE_MS = 10**14


def load(conn: PGConnection, run_id: str, symbol: str, timeframe: str,
         start_ms: int | None = None, end_ms: int | None = None) -> BacktestData:
    """Candles with open_time in [start_ms, end_ms) (all when None), oldest first."""
    args = {"run": run_id, "symbol": symbol, "tf": timeframe,
            "start": 0 if start_ms is None else start_ms,
            "end": FAR_FUTURE_MS if end_ms is None else end_ms}
    try:
        with conn.cursor() as cur:
            cur.execute(_CANDLES, args)
            rows = cur.fetchall()
            cur.execute(_SIGNALS, args)
            fired = cur.fetchall()
    finally:
        conn.rollback()  # end the read transaction: a long-lived connection must not hold it
    if not rows:
        raise NoData(what_exists(conn, run_id, symbol, timeframe, start_ms, end_ms))
    n = len(rows)
    open_time = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    ohlcv = np.array([r[1:6] for r in rows], dtype=np.float64).reshape(n, 5)
    values = [orjson.loads(r[6]) if r[6] is not None else {} for r in rows]
    keys = sorted({k for v in values for k in v})
    indicators = {}
    for key in keys:
        column = np.array([v.get(key) for v in values], dtype=np.float64)  # None -> nan
        indicators[key] = column
    signals: dict[str, np.ndarray[tuple[int], np.dtype[np.int8]]] = {}
    for ms, name, direction in fired:
        i = int(np.searchsorted(open_time, ms))
        if i < n and open_time[i] == ms and direction in DIRECTION:
            signals.setdefault(name, np.zeros(n, np.int8))[i] = DIRECTION[direction]
    o, h, lo, c, v = (np.ascontiguousarray(col) for col in ohlcv.T)
    return BacktestData(symbol, timeframe, open_time, o, h, lo, c, v, indicators, signals,
                        run_id)


def _ms_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def what_exists(conn: PGConnection, run_id: str, symbol: str, timeframe: str,
                start_ms: int | None = None, end_ms: int | None = None) -> str:
    """Why nothing was found, and what the database does hold."""
    want = f"run {run_id!r} has no closed {timeframe} candles for {symbol}"
    if start_ms is not None or end_ms is not None:
        want += (f" from {_ms_text(start_ms) if start_ms is not None else 'the start'}"
                 f" to {_ms_text(end_ms) if end_ms is not None else 'the end'}")
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT symbol, timeframe, count(*), {_MS.format('min(open_time)')}, "
                f"{_MS.format('max(open_time)')} FROM candles WHERE run_id = %s AND closed "
                "GROUP BY symbol, timeframe ORDER BY symbol, timeframe", (run_id,))
            held = cur.fetchall()
            if not held:
                cur.execute("SELECT DISTINCT run_id FROM candles ORDER BY run_id LIMIT 50")
                runs = [r[0] for r in cur.fetchall()]
    finally:
        conn.rollback()
    if not held:
        return (f"{want}: that run has no candles at all; runs with candles: "
                f"{', '.join(runs) if runs else 'none (the database has no candles)'}")
    listed = "; ".join(f"{s} {tf}: {count} candles, {_ms_text(lo)} .. {_ms_text(hi)}"
                       for s, tf, count, lo, hi in held)
    return f"{want}; it has: {listed}"
