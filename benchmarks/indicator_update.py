"""Indicator cost per closed candle: the incremental engine beside `ta` and talipp.

Measures, in one run, on the same synthetic candles (geometric random walk, random volumes):
  1. IndicatorEngine.update for the whole key set (22 values), after its longest warm-up;
  2. the same plus signals.evaluate and patterns.detect (the whole per-candle rule work);
  3. `ta` recomputing the same set over a 500-candle window (core.indicators.batch, pandas):
     what a worker without the engine would do per candle;
  4. talipp adding one candle to the indicators it has, same parameters: RSI 14, MACD 12/26/9,
     BB 20/2, EMA 9/21/50/200, SMA 20/50/200, ATR 14, Stoch 14/3, OBV, VWAP (talipp's is
     cumulative, not a 14-candle window), ADX 14/14;
  5. checkpoint cost: engine.state() + orjson.dumps, and IndicatorEngine.from_state(loads).
Only the per-candle loop is timed (not setup or warm-up). Each is repeated, interleaved; the
median over the runs is reported with its ratio to the engine.

    .venv/bin/python benchmarks/indicator_update.py [--candles 5000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson
import pandas as pd
from talipp.indicators import (
    ADX,
    ATR,
    BB,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    VWAP,
    Stoch,
)
from talipp.ohlcv import OHLCV

from core.candles import Candle
from core.indicators import IndicatorEngine, Values
from core.indicators.batch import compute_batch
from core.patterns import detect
from core.signals import evaluate

WARM = 250  # candles fed before timing: past every indicator's warm-up
TA_WINDOW = 500


def make_frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(60_000 * np.exp(np.cumsum(rng.standard_normal(n) * 0.002)), 2)
    open_ = np.concatenate([close[:1], close[:-1]])
    high = np.maximum(open_, close) + np.round(rng.exponential(20, n), 2)
    low = np.minimum(open_, close) - np.round(rng.exponential(20, n), 2)
    volume = np.round(rng.exponential(5, n), 5)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})


def to_candles(df: pd.DataFrame) -> list[Candle]:
    rows: list[list[float]] = df[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
    return [Candle("BTCUSDT", "1m", i * 60_000, i * 60_000 + 59_999, o, h, lo, c, v, c * v, 1,
                   v / 2, c * v / 2, True) for i, (o, h, lo, c, v) in enumerate(rows)]


def _since(t0: float, items: int) -> float:
    return (time.perf_counter() - t0) / items * 1e6


def engine_run(candles: list[Candle]) -> Callable[[], float]:
    def run() -> float:
        engine = IndicatorEngine()
        for c in candles[:WARM]:
            engine.update(c)
        update = engine.update
        timed = candles[WARM:]
        t0 = time.perf_counter()
        for c in timed:
            update(c)
        return _since(t0, len(timed))

    return run


def rules_run(candles: list[Candle]) -> Callable[[], float]:
    def run() -> float:
        engine = IndicatorEngine()
        prev: Values | None = None
        for c in candles[:WARM]:
            prev = engine.update(c)
        timed = candles[WARM:]
        t0 = time.perf_counter()
        for i, c in enumerate(timed, WARM):
            cur = engine.update(c)
            evaluate(prev, cur, c)
            detect(candles[i - 2 : i + 1])
            prev = cur
        return _since(t0, len(timed))

    return run


def ta_run(df: pd.DataFrame, calls: int) -> Callable[[], float]:
    def run() -> float:
        step = max(1, (len(df) - TA_WINDOW) // calls)
        windows = [df.iloc[k * step : k * step + TA_WINDOW] for k in range(calls)]
        t0 = time.perf_counter()
        for w in windows:
            compute_batch(w)
        return _since(t0, calls)

    return run


def talipp_run(candles: list[Candle]) -> Callable[[], float]:
    bars = [OHLCV(c.open, c.high, c.low, c.close, c.volume) for c in candles]

    def run() -> float:
        on_close = [RSI(14), MACD(12, 26, 9), BB(20, 2), EMA(9), EMA(21), EMA(50), EMA(200),
                    SMA(20), SMA(50), SMA(200)]
        on_bar = [ATR(14), Stoch(14, 3), OBV(), VWAP(), ADX(14, 14)]
        for b in bars[:WARM]:
            for ind in on_close:
                ind.add(b.close)
            for ind in on_bar:
                ind.add(b)
        timed = bars[WARM:]
        t0 = time.perf_counter()
        for b in timed:
            close = b.close
            for ind in on_close:
                ind.add(close)
            for ind in on_bar:
                ind.add(b)
        return _since(t0, len(timed))

    return run


def checkpoint_us(candles: list[Candle], reps: int = 200) -> tuple[float, float, int]:
    engine = IndicatorEngine()
    for c in candles[: WARM * 2]:
        engine.update(c)
    t0 = time.perf_counter()
    for _ in range(reps):
        blob = orjson.dumps(engine.state())
    dump = (time.perf_counter() - t0) / reps * 1e6
    t0 = time.perf_counter()
    for _ in range(reps):
        IndicatorEngine.from_state(orjson.loads(blob))
    load = (time.perf_counter() - t0) / reps * 1e6
    return dump, load, len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ta-calls", type=int, default=20, help="ta recomputes per run")
    args = parser.parse_args()

    df = make_frame(args.candles)
    candles = to_candles(df)
    results: dict[str, list[float]] = {"engine": [], "rules": [], "ta": [], "talipp": []}
    # Interleave the contenders so that machine noise hits them alike.
    for _ in range(args.runs):
        results["engine"].append(engine_run(candles)())
        results["rules"].append(rules_run(candles)())
        results["ta"].append(ta_run(df, args.ta_calls)())
        results["talipp"].append(talipp_run(candles)())
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["engine"]

    labels = {
        "engine": "IndicatorEngine.update, all 22 keys",
        "rules": "  + signals.evaluate + patterns.detect",
        "ta": f"ta, full recompute of a {TA_WINDOW}-candle window",
        "talipp": "talipp, 15 indicators, incremental",
    }
    print(f"{args.candles} candles ({args.candles - WARM} timed), {args.runs} runs, "
          "median per candle:")
    for key, label in labels.items():
        spread = f"{min(results[key]):.2f}..{max(results[key]):.2f}"
        print(f"  {label:46s} {med[key]:10.2f} us  x{med[key] / base:7.1f}   (runs {spread})")
    dump, load, size = checkpoint_us(candles)
    print(f"  checkpoint: state()+orjson.dumps {dump:.1f} us ({size} bytes), "
          f"from_state(orjson.loads) {load:.1f} us")


if __name__ == "__main__":
    main()
