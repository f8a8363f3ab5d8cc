"""Backtest speed: EMA 9/21 cross with fees, slippage and a stop-loss over 1,000,000 1m candles,
our engine beside a plain pandas/numpy vectorised implementation of the same strategy.

Both start from the same arrays: synthetic candles (geometric random walk) with `ema_9` and
`ema_21` as the pipeline stores them (`ta`'s EMA). Timed:
  ours: workers.backtest.report.run(data, ema_cross, config): targets, fills, equity curve and
        every metric of the report;
  baseline: a vectorised pandas/numpy version written for this one strategy (cross events,
        segments between them, the first stop per segment with np.minimum.reduceat, compounding
        with cumprod): the trades and the equity curve, no metrics.
The two are run alternately; medians are reported. Before timing, the script asserts that both
give the same trades (sides, candles, reasons exactly; prices, quantities and P&L to 1e-9
relative) and the same equity curve.

    .venv/bin/python benchmarks/backtest_speed.py [--candles 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ta.trend import EMAIndicator

from workers.backtest.data import BacktestData, Floats, from_arrays
from workers.backtest.engine import BacktestConfig, Trade
from workers.backtest.report import run
from workers.backtest.strategies import make

START_MS = 1_704_067_200_000  # 2024-01-01
# 5 % of equity per trade: with all of it, ~23,000 trades' fees would take the equity to ~0.
CONFIG = BacktestConfig(fraction=0.05, taker_fee_bps=10, slippage_bps=2, stop_loss_pct=0.3)
TARGET_S = 5.0


def make_data(n: int, seed: int = 1) -> BacktestData:
    rng = np.random.default_rng(seed)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.0012, n)))
    open_ = np.concatenate(([40_000.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
    series = pd.Series(close)
    ema = {f"ema_{w}": EMAIndicator(series, window=w).ema_indicator().to_numpy()
           for w in (9, 21)}
    return from_arrays("BTCUSDT", "1m", START_MS + 60_000 * np.arange(n, dtype=np.int64),
                       open_, high, low, close, rng.exponential(5, n), indicators=ema)


@dataclass
class Baseline:
    entry_index: np.ndarray[Any, np.dtype[np.int64]]
    exit_index: np.ndarray[Any, np.dtype[np.int64]]
    entry_price: Floats
    exit_price: Floats
    qty: Floats
    pnl: Floats
    reason: np.ndarray[Any, np.dtype[np.str_]]
    equity: Floats


def baseline(data: BacktestData, config: BacktestConfig) -> Baseline:
    """The same rules, vectorised for this one strategy (long only, stop-loss, taker fees,
    fixed-fraction size)."""
    n = len(data)
    f = config.fraction
    fee, slip = config.taker_fee_bps / 1e4, config.slippage_bps / 1e4
    sl = (config.stop_loss_pct or 0.0) / 100
    o, lo, c = data.open, data.low, data.close
    gap = pd.Series(data.indicators["ema_9"] - data.indicators["ema_21"])
    prev = gap.shift(1)
    event = pd.Series(np.where((prev <= 0) & (gap > 0), 1.0,
                               np.where((prev >= 0) & (gap < 0), 0.0, np.nan)))
    target = event.ffill().fillna(0.0).to_numpy()
    before = np.concatenate(([0.0], target[:-1]))
    decided = np.flatnonzero(target[:-1] != before[:-1])
    actions = decided + 1
    wanted = target[decided]
    # Alternating changes 0 -> 1 -> 0 ...: each long entry ends at the next action (or at n).
    longs = np.flatnonzero(wanted == 1)
    start = actions[longs]
    end = np.append(actions, n)[longs + 1]
    entry = o[start] * (1 + slip)
    stop = entry * (1 - sl)
    # The first candle of each segment whose low reaches the segment's stop.
    seg_len = end - start
    owner = np.repeat(np.arange(len(start)), seg_len)
    idx = np.arange(seg_len.sum()) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len) \
        + np.repeat(start, seg_len)
    hit = np.where(lo[idx] <= stop[owner], idx, n)
    first = np.minimum.reduceat(hit, np.cumsum(seg_len) - seg_len)
    stopped = first < end
    at_end = ~stopped & (end == n)
    exit_index = np.where(stopped, first, np.where(at_end, n - 1, end))
    gapped = stopped & (first > start) & (o[np.minimum(first, n - 1)] <= stop)
    raw_exit = np.where(stopped, np.where(gapped, o[np.minimum(first, n - 1)], stop),
                        np.where(at_end, c[n - 1], o[np.minimum(end, n - 1)]))
    exit_price = raw_exit * (1 - slip)
    reason = np.where(stopped, "stop", np.where(at_end, "end", "signal"))
    # Compounding: each trade multiplies the equity by a factor of its prices and fees.
    growth = 1 + f * (exit_price / entry * (1 - fee) - 1 - fee)
    after = config.initial_cash * np.cumprod(growth)
    before_eq = np.concatenate(([config.initial_cash], after[:-1]))
    qty = f * before_eq / entry
    pnl = np.asarray(after - before_eq, dtype=np.float64)
    # Equity at each close: the last settled equity, or cash plus the position while held.
    settled = np.concatenate(([config.initial_cash], after))
    equity = settled[np.searchsorted(exit_index, np.arange(n), side="right")]
    held_len = exit_index - start
    held_owner = np.repeat(np.arange(len(start)), held_len)
    held = np.arange(held_len.sum()) - np.repeat(np.cumsum(held_len) - held_len, held_len) \
        + np.repeat(start, held_len)
    cash = before_eq - qty * entry * (1 + fee)
    equity[held] = cash[held_owner] + qty[held_owner] * c[held]
    return Baseline(start, exit_index, entry, exit_price, qty, pnl, reason, equity)


def assert_same(ours: list[Trade], equity: Floats, base: Baseline) -> None:
    assert len(ours) == len(base.entry_index), (len(ours), len(base.entry_index))
    assert [t.entry_index for t in ours] == base.entry_index.tolist()
    assert [t.exit_index for t in ours] == base.exit_index.tolist()
    assert [t.reason for t in ours] == base.reason.tolist()
    assert {t.side for t in ours} <= {"long"}
    for name in ("entry_price", "exit_price", "qty", "pnl"):
        np.testing.assert_allclose([getattr(t, name) for t in ours], getattr(base, name),
                                   rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(equity, base.equity, rtol=1e-9, err_msg="equity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    data = make_data(args.candles)
    strategy = make("ema_cross", {"fast": 9, "slow": 21})
    report = run(data, strategy, CONFIG)
    base = baseline(data, CONFIG)
    assert_same(report.trades, report.equity, base)
    reasons = {r: int((base.reason == r).sum()) for r in ("signal", "stop", "end")}
    print(f"{args.candles:,} candles, EMA 9/21 cross, {100 * CONFIG.fraction:g}% of equity per "
          f"trade, taker {CONFIG.taker_fee_bps:g} bps, "
          f"slippage {CONFIG.slippage_bps:g} bps, stop-loss {CONFIG.stop_loss_pct:g}%: "
          f"{len(report.trades):,} trades ({reasons}), identical in both "
          f"(final equity {report.metrics['final_equity']:.2f})")

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.runs):
        t = time.perf_counter()
        run(data, strategy, CONFIG)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        baseline(data, CONFIG)
        theirs.append(time.perf_counter() - t)
    mo, mb = statistics.median(ours), statistics.median(theirs)
    print(f"ours (report.run: targets, fills, equity, metrics): median {mo:.3f} s "
          f"[{', '.join(f'{x:.3f}' for x in ours)}]")
    print(f"pandas/numpy vectorised baseline (trades, equity): median {mb:.3f} s "
          f"[{', '.join(f'{x:.3f}' for x in theirs)}]")
    print(f"ratio ours/baseline: {mo / mb:.2f}; target < {TARGET_S:g} s: "
          f"{'met' if mo < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
