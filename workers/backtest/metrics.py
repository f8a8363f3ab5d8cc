"""Performance figures of an equity curve and its trades.

Conventions (docs/BACKTEST.md): returns are per candle, from the initial cash to the first
close and then close to close; annualised with the number of candles in a 365-day year (crypto
trades every day); the risk-free rate is 0. Ratios that would divide by zero (no variance, no
loss, no drawdown) are None, as JSON has no infinity; so are CAGR and Calmar for a span shorter
than 30 days (`MIN_ANNUALISE_MS`), where compounding to a year only magnifies noise. Returns
and drawdowns are fractions (0.05 = 5 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.timeframes import DAY_MS
from workers.backtest.data import Floats
from workers.backtest.engine import Trade

YEAR_MS = 365 * DAY_MS
#: Below this span, CAGR and Calmar are None: compounding minutes or hours into a year gives
#: numbers like a Calmar of 1e28 (seen on a 67-second backtest), which mean nothing.
MIN_ANNUALISE_MS = 30 * DAY_MS


def periods_per_year(timeframe_ms: int) -> float:
    return YEAR_MS / timeframe_ms


def drawdown(equity: Floats, initial: float) -> Floats:
    """Per candle, how far the equity is below its running peak (a fraction, <= 0); the
    initial cash counts as the first peak."""
    peak = np.maximum.accumulate(np.concatenate(([initial], equity)))[1:]
    return np.asarray(equity / peak - 1.0)


def max_drawdown(equity: Floats, initial: float) -> tuple[float, int]:
    """(the deepest drawdown as a positive fraction, its duration in candles): from the last
    close at the peak before it to the first close back at or above that peak, or to the last
    close if none; the initial cash is the close before the first candle."""
    if not len(equity):
        return 0.0, 0
    dd = drawdown(equity, initial)
    trough = int(dd.argmin())
    depth = float(-dd[trough])
    if depth == 0.0:
        return 0.0, 0
    series = np.concatenate(([initial], equity))
    t = trough + 1  # in `series`
    # The last close at the peak: the drawdown starts when the equity leaves it.
    peak_at = t - int(series[:t + 1][::-1].argmax())
    peak = series[peak_at]
    recovered = np.flatnonzero(series[t:] >= peak)
    end = t + int(recovered[0]) if len(recovered) else len(series) - 1
    return depth, end - peak_at


def _none_if_bad(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def compute(equity: Floats, initial: float, timeframe_ms: int, trades: Sequence[Trade],
            buy_and_hold: float, min_annualise_ms: int = MIN_ANNUALISE_MS) -> dict[str, Any]:
    n = len(equity)
    ppy = periods_per_year(timeframe_ms)
    final = float(equity[-1]) if n else initial
    total = final / initial - 1.0
    years = n / ppy
    cagr = (final / initial) ** (1 / years) - 1.0 if years > 0 and final > 0 else (
        -1.0 if final <= 0 else 0.0)
    returns = np.diff(np.concatenate(([initial], equity))) / np.concatenate(
        ([initial], equity[:-1]))
    sharpe = sortino = None
    if n >= 2:
        std = float(returns.std(ddof=1))
        mean = float(returns.mean())
        sharpe = _none_if_bad(mean / std * math.sqrt(ppy)) if std > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        sortino = _none_if_bad(mean / downside * math.sqrt(ppy)) if downside > 0 else None
    depth, duration = max_drawdown(equity, initial)
    calmar = cagr / depth if depth > 0 else None
    if n * timeframe_ms < min_annualise_ms:
        cagr, calmar = math.nan, None

    pnl = np.array([t.pnl for t in trades])
    wins = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    count = len(trades)
    profit_factor = float(wins.sum() / -losses.sum()) if len(losses) else None
    return {
        "total_return": total,
        "cagr": _none_if_bad(cagr),
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": _none_if_bad(calmar) if calmar is not None else None,
        "max_drawdown": depth,
        "max_drawdown_duration_candles": duration,
        "max_drawdown_duration_ms": duration * timeframe_ms,
        "win_rate": len(wins) / count if count else None,
        "profit_factor": profit_factor,
        "expectancy": float(pnl.mean()) if count else None,  # mean P&L per trade, quote
        "expectancy_pct": (float(np.mean([t.return_pct for t in trades])) if count
                           else None),
        "trades": count,
        "exposure": sum(t.bars for t in trades) / n if n else 0.0,
        "fees_paid": float(sum(t.fees for t in trades)),
        "final_equity": final,
        "buy_and_hold_return": buy_and_hold,
        "candles": n,
    }
