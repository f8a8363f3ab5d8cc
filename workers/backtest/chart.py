"""The report's PNG: the strategy's equity beside buy-and-hold, and both drawdowns below.

A bare `Figure` (not pyplot) draws with the Agg canvas, needs no display and keeps no global
state, so worker threads can render at once. Long runs are thinned to a few thousand
points per line (keeping each bucket's lowest and highest value, so drawdowns stay visible).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

from workers.backtest import metrics
from workers.backtest.data import Floats, Ints
from workers.backtest.report import BacktestReport

MAX_POINTS = 4000


def _thin(n: int, series: list[Floats]) -> Ints:
    """Indices to plot: all when few; else per bucket the first, the lowest and the highest
    of every series."""
    if n <= MAX_POINTS:
        return np.arange(n, dtype=np.int64)
    buckets = MAX_POINTS // (1 + 2 * len(series))
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[Ints] = [edges[:-1], np.array([n - 1], np.int64)]
    for s in series:
        for reduce in (np.minimum, np.maximum):
            # The index of each bucket's extreme: reduceat gives the value, argmax finds it.
            values = reduce.reduceat(s, edges[:-1])
            owner = np.repeat(np.arange(buckets), np.diff(edges))
            hit = np.flatnonzero(s == values[owner])
            first = np.unique(owner[hit], return_index=True)[1]
            keep.append(hit[first])
    return np.unique(np.concatenate(keep))


def render(report: BacktestReport, path: Path) -> Path:
    initial = float(report.config["initial_cash"])
    strategy_dd = report.drawdown()
    hold_dd = metrics.drawdown(report.buy_and_hold, initial)
    keep = _thin(len(report.equity), [report.equity, report.buy_and_hold, strategy_dd])
    times = [datetime.fromtimestamp(int(t) / 1000, UTC) for t in report.open_time[keep]]

    fig = Figure(figsize=(11, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    params = ", ".join(f"{k}={v}" for k, v in report.params.items())
    m = report.metrics
    fig.suptitle(f"{report.strategy} ({params}) on {report.symbol} {report.timeframe}, "
                 f"run {report.run_id}: {100 * m['total_return']:+.2f}% vs buy & hold "
                 f"{100 * m['buy_and_hold_return']:+.2f}%, {m['trades']} trades",
                 fontsize=11)
    top.plot(times, report.equity[keep], color="#1f77b4", lw=1.2, label="strategy")
    top.plot(times, report.buy_and_hold[keep], color="#999999", lw=1.0, label="buy & hold")
    top.axhline(initial, color="#cccccc", lw=0.8, ls="--")
    top.set_ylabel("equity (quote)")
    top.legend(loc="best", frameon=False)
    top.grid(alpha=0.3)

    bottom.fill_between(times, 100 * strategy_dd[keep], 0, color="#d62728", alpha=0.35,
                        lw=0, label="strategy")
    bottom.plot(times, 100 * hold_dd[keep], color="#999999", lw=0.9, label="buy & hold")
    bottom.set_ylabel("drawdown %")
    bottom.legend(loc="lower left", frameon=False)
    bottom.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
