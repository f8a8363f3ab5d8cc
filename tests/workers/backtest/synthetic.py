"""Data for the backtest tests: hand-written candles, and random-walk runs put through the live
indicator and signal code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.writer import insert_signals, upsert_candles, upsert_indicators
from core.timeframes import TIMEFRAME_MS
from workers.backtest.data import BacktestData, from_arrays

START_MS = 1_723_154_400_000  # 2024-08-08 22:00 UTC


def hand(rows: Sequence[tuple[float, float, float, float]], timeframe: str = "1m"
         ) -> BacktestData:
    """Candles from (open, high, low, close) rows, one timeframe apart."""
    step = TIMEFRAME_MS[timeframe]
    return from_arrays("BTCUSDT", timeframe, [START_MS + i * step for i in range(len(rows))],
                       [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                       [r[3] for r in rows], run_id="hand")


def walk(n: int, seed: int = 1, symbol: str = "BTCUSDT", timeframe: str = "1m",
         vol: float = 0.003) -> list[Candle]:
    """A random walk of closed candles: each opens at the previous close."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    wicks = np.abs(rng.normal(0, vol / 3, (n, 2)))
    step = TIMEFRAME_MS[timeframe]
    out = []
    prev = 100.0
    for i in range(n):
        o, c = prev, float(closes[i])
        h = max(o, c) * (1 + wicks[i, 0])
        lo = min(o, c) * (1 - wicks[i, 1])
        t = START_MS + i * step
        out.append(Candle(symbol, timeframe, t, t + step - 1, o, h, lo, c, 2.0, 2.0 * c, 10,
                          1.0, c, True))
        prev = c
    return out


def store_run(conn: PGConnection, run_id: str, candles: Sequence[Candle]) -> int:
    """Store candles, indicators and signals as the `candles_closed` task does (its own
    function), under `run_id`; returns the number of signals."""
    from workers.tasks.indicators import advance

    _, out = advance(None, list(candles))
    upsert_candles(conn, out.candles, run_id=run_id)
    upsert_indicators(conn, out.indicators, run_id=run_id)
    insert_signals(conn, out.signals, run_id=run_id)
    return len(out.signals)
