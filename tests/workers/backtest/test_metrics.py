"""The report's figures against hand computations on a small equity series."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from core.timeframes import DAY_MS, HOUR_MS
from workers.backtest import metrics
from workers.backtest.engine import Trade


def trade(pnl: float, reason: str = "signal", bars: int = 1, fee: float = 1.0) -> Trade:
    # Entry at 100 for qty 1: return_pct is the pnl in percent.
    return Trade("long", 0, bars, 0, 0, 100.0, 100.0 + pnl, 1.0, fee / 2, fee / 2, pnl,
                 reason)  # type: ignore[arg-type]


def test_figures_of_a_four_day_series() -> None:
    equity = np.array([10_100.0, 10_000.0, 10_300.0, 10_200.0])
    trades = [trade(100.0), trade(-50.0), trade(30.0, reason="stop", bars=2)]
    m = metrics.compute(equity, 10_000.0, DAY_MS, trades, buy_and_hold=0.05,
                        min_annualise_ms=0)

    returns = [10_100 / 10_000 - 1, 10_000 / 10_100 - 1, 10_300 / 10_000 - 1,
               10_200 / 10_300 - 1]
    mean = sum(returns) / 4
    sd = statistics.stdev(returns)  # sample standard deviation
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / 4)
    cagr = 1.02 ** (365 / 4) - 1  # 2 % in 4 of 365 days
    depth = 100 / 10_100  # 10,100 -> 10,000

    assert m["total_return"] == pytest.approx(0.02)
    assert m["cagr"] == pytest.approx(cagr)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(365))
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(365))
    assert m["max_drawdown"] == pytest.approx(depth)
    # From the close at the peak (day 0) to the first close back above it (day 2).
    assert m["max_drawdown_duration_candles"] == 2
    assert m["max_drawdown_duration_ms"] == 2 * DAY_MS
    assert m["calmar"] == pytest.approx(cagr / depth)
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx(130 / 50)
    assert m["expectancy"] == pytest.approx(80 / 3)
    assert m["expectancy_pct"] == pytest.approx(80 / 3)  # entries at 100 for qty 1
    assert m["trades"] == 3
    assert m["exposure"] == pytest.approx((1 + 1 + 3) / 4)  # the stop's candle is held
    assert m["fees_paid"] == pytest.approx(3.0)
    assert m["final_equity"] == 10_200.0
    assert m["buy_and_hold_return"] == 0.05
    assert m["candles"] == 4


def test_annualisation_follows_the_timeframe() -> None:
    equity = np.array([10_100.0, 10_000.0, 10_300.0, 10_200.0])
    daily = metrics.compute(equity, 10_000.0, DAY_MS, [], 0.0, min_annualise_ms=0)
    hourly = metrics.compute(equity, 10_000.0, HOUR_MS, [], 0.0, min_annualise_ms=0)
    assert hourly["sharpe"] == pytest.approx(daily["sharpe"] * math.sqrt(24))
    assert hourly["cagr"] == pytest.approx(1.02 ** (365 * 24 / 4) - 1)


def test_no_cagr_or_calmar_for_a_span_too_short_to_annualise() -> None:
    equity = np.array([10_100.0, 9_900.0, 10_300.0, 10_200.0])
    short = metrics.compute(equity, 10_000.0, HOUR_MS, [], 0.0)  # 4 hours
    assert short["cagr"] is None and short["calmar"] is None
    assert short["sharpe"] is not None and short["max_drawdown"] > 0
    month = metrics.compute(np.resize(equity, 30), 10_000.0, DAY_MS, [], 0.0)
    assert month["cagr"] is not None and month["calmar"] is not None


def test_unrecovered_drawdown_lasts_to_the_end() -> None:
    depth, duration = metrics.max_drawdown(np.array([9_000.0, 9_500.0, 8_000.0, 8_500.0]),
                                           10_000.0)
    assert depth == pytest.approx(0.2)
    assert duration == 4  # from the initial cash (before candle 0) to the last close


def test_drawdown_starts_at_the_last_close_on_the_peak() -> None:
    depth, duration = metrics.max_drawdown(
        np.array([11_000.0, 11_000.0, 9_900.0, 11_500.0]), 10_000.0)
    assert depth == pytest.approx(0.1)
    assert duration == 2  # left the peak after candle 1, back above it at candle 3


def test_undefined_ratios_are_none() -> None:
    flat = np.full(5, 10_000.0)
    m = metrics.compute(flat, 10_000.0, DAY_MS, [trade(10.0)], 0.0)
    assert (m["sharpe"], m["sortino"], m["calmar"], m["profit_factor"]) == (
        None, None, None, None)
    assert m["max_drawdown"] == 0.0
    none = metrics.compute(flat, 10_000.0, DAY_MS, [], 0.0)
    assert (none["win_rate"], none["expectancy"], none["trades"]) == (None, None, 0)
