"""What a run stored, read back for comparison: candles, indicator values, signals and
patterns per run id (run id and write times left out), and the offline expectation for a
time range."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.indicators import IndicatorEngine
from core.models import Trade
from core.timeframes import TIMEFRAME_MS
from tests.core.db.dbutil import query
from tests.core.test_candles import Trade as Tick
from tests.core.test_candles import offline

Key = tuple[str, str]


def in_range(trades: Sequence[Trade], from_ms: int, to_ms: int) -> dict[str, list[Tick]]:
    ticks: dict[str, list[Tick]] = defaultdict(list)
    for t in trades:
        if from_ms <= t["ts"] < to_ms:
            ticks[t["symbol"]].append((float(t["price"]), float(t["qty"]), t["ts"],
                                       t["buyer_maker"]))
    return ticks


def expected_candles(trades: Sequence[Trade], from_ms: int, to_ms: int,
                     timeframes: Sequence[str]) -> dict[Key, list[Candle]]:
    """The offline candles of the trades in [from_ms, to_ms) whose range ends by `to_ms`
    (the others are still forming when the replay ends)."""
    out = {}
    for symbol, ticks in in_range(trades, from_ms, to_ms).items():
        for tf in timeframes:
            candles = [c for c in offline(ticks, symbol, tf)
                       if c.open_time + TIMEFRAME_MS[tf] <= to_ms]
            if candles:
                out[symbol, tf] = candles
    return out


def warmed_candles(trades: Sequence[Trade], from_ms: int, to_ms: int,
                   timeframes: Sequence[str]) -> dict[Key, list[Candle]]:
    """What a replay with the full warm-up builds: the candles of every trade before `to_ms`
    (all of them feed the indicators); it stores those opening at or after `from_ms`."""
    return expected_candles(trades, 0, to_ms, timeframes)


def written(candles: dict[Key, list[Candle]], from_ms: int) -> dict[Key, list[Candle]]:
    out = {key: [c for c in series if c.open_time >= from_ms] for key, series in candles.items()}
    return {key: series for key, series in out.items() if series}


def run_rows(db: PGConnection, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a run stored in the candle, indicator, signal and pattern tables, sorted."""
    ms = "(extract(epoch FROM {}) * 1000)::bigint"
    sql = {
        "candles": f"SELECT symbol, timeframe, {ms.format('open_time')}, "
                   f"{ms.format('close_time')}, open, high, low, close, volume, quote_volume, "
                   "trades, taker_buy_volume, taker_buy_quote_volume, closed FROM candles",
        "indicators": f'SELECT symbol, timeframe, {ms.format("open_time")}, "values"::text '
                      "FROM indicators",
        "signals": f"SELECT symbol, timeframe, {ms.format('time')}, name, direction, strength,"
                   ' "values"::text FROM signals',
        "patterns": f"SELECT symbol, timeframe, {ms.format('time')}, name, direction, "
                    "details::text FROM patterns",
        "trades": "SELECT symbol, trade_id FROM trades",
    }
    return {table: sorted(query(db, f"{select} WHERE run_id = %s", (run_id,)))
            for table, select in sql.items()}


def stored_candles(rows: dict[str, list[tuple[Any, ...]]]) -> dict[Key, list[Candle]]:
    """`run_rows(...)["candles"]` as candles per symbol and timeframe, oldest first."""
    stored: dict[Key, list[Candle]] = {}
    for row in rows["candles"]:
        stored.setdefault((row[0], row[1]), []).append(Candle(*row))
    return stored


def stored_indicators(db: PGConnection, run_id: str) -> dict[Key, dict[int, dict[str, Any]]]:
    values: dict[Key, dict[int, dict[str, Any]]] = defaultdict(dict)
    for symbol, tf, open_ms, vals in query(
            db, "SELECT symbol, timeframe, (extract(epoch FROM open_time) * 1000)::bigint,"
                ' "values" FROM indicators WHERE run_id = %s', (run_id,)):
        values[symbol, tf][open_ms] = vals
    return values


def assert_indicators_of_one_pass(db: PGConnection, run_id: str,
                                  candles: dict[Key, list[Candle]], written_from: int = 0) -> None:
    """One indicator row per candle opening at or after `written_from`, with the values of one
    straight pass over all of them: a candle skipped (fallen out of the Redis window) or
    applied twice changes every value after it."""
    import pytest

    values = stored_indicators(db, run_id)
    assert set(values) == set(written(candles, written_from))
    for key, series in candles.items():
        engine = IndicatorEngine()
        stored = [c for c in series if c.open_time >= written_from]
        if not stored:
            continue
        assert sorted(values[key]) == [c.open_time for c in stored], key
        for candle in series:
            straight = engine.update(candle)
            if candle.open_time < written_from:
                continue
            got = values[key][candle.open_time]
            assert got.keys() == straight.keys()
            for name, value in straight.items():
                assert got[name] == (None if value is None else pytest.approx(value, rel=1e-9)), (
                    key, candle.open_time, name)
