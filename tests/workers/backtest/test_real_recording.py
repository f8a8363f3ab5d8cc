"""Backtests on candles built from real recorded Binance trades (11 minutes of BTCUSDT and
ETHUSDT, as 1s candles through the live indicator engine), and the accounting identities that
must hold for any strategy and settings."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from tests.core.test_candles import offline, recorded_trades
from workers.backtest.data import BacktestData, from_candles
from workers.backtest.engine import BacktestConfig
from workers.backtest.report import run
from workers.backtest.strategies import STRATEGIES, make
from workers.backtest.strategy import lookahead_free


@pytest.fixture(scope="module", params=["btcusdt", "ethusdt"])
def recorded(request: pytest.FixtureRequest) -> BacktestData:
    symbol = str(request.param)
    # The first second is partial (the recording starts mid-second), as live would see it.
    candles = offline(recorded_trades(symbol), symbol.upper(), "1s")
    return from_candles(candles, run_id="recording")


CONFIGS = [
    BacktestConfig(),
    BacktestConfig(allow_short=True, slippage_bps=1, stop_loss_pct=0.02, take_profit_pct=0.03),
    BacktestConfig(fraction=0.5, slippage_range=0.2, stop_loss_pct=0.05, allow_short=True),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_on_real_trades_balances(recorded: BacktestData, name: str,
                                                config: BacktestConfig) -> None:
    assert len(recorded) > 600
    strategy = make(name)
    report = run(recorded, strategy, config)
    trades = report.trades
    m = report.metrics
    # Cash is conserved: the final equity is the initial cash plus every trade's P&L.
    assert m["final_equity"] == pytest.approx(config.initial_cash + sum(t.pnl for t in trades),
                                              rel=1e-12)
    assert m["fees_paid"] == pytest.approx(sum(t.fees for t in trades))
    assert m["trades"] == len(trades)
    d = recorded
    slip = config.slippage_bps / 1e4
    for t in trades:
        i, j = t.entry_index, t.exit_index
        assert i <= j and (t.side == "long" or config.allow_short)
        # Entries at an open, moved by slippage only; exits inside the exit candle's range
        # (a take-profit limit exactly, market fills give up their slippage).
        room = slip * d.high[j] + config.slippage_range * (d.high[j] - d.low[j])
        assert d.low[j] - room - 1e-9 <= t.exit_price <= d.high[j] + room + 1e-9
        entry_room = slip * d.open[i] + config.slippage_range * (d.high[i] - d.low[i])
        assert abs(t.entry_price - d.open[i]) == pytest.approx(entry_room, abs=1e-9)
        if t.reason == "signal":
            assert t.exit_time == d.open_time[j]
        if t.reason == "stop" and config.stop_loss_pct is not None:
            worse = t.exit_price < t.entry_price if t.side == "long" else (
                t.exit_price > t.entry_price)
            assert worse
    # Positions never overlap and follow one another in time.
    for a, b in pairwise(trades):
        assert b.entry_index >= a.exit_index
    assert lookahead_free(strategy, recorded, samples=8)


def test_default_rules_trade_the_live_signals_on_real_trades(recorded: BacktestData) -> None:
    ours = make("ema_cross").targets(recorded)
    assert np.count_nonzero(np.diff(ours)) >= 4
    assert ours.tolist() == make("signal").targets(recorded).tolist()
