"""Strategies: their rules on hand-made series, parity with the live signal rules, parameters,
and the no-look-ahead property (a later candle never changes an earlier decision)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from core.candles import Candle
from tests.workers.backtest.synthetic import START_MS, walk
from workers.backtest import features
from workers.backtest.data import BacktestData, from_arrays, from_candles
from workers.backtest.engine import BacktestConfig, simulate
from workers.backtest.errors import InvalidParams, UnknownStrategy
from workers.backtest.strategies import STRATEGIES, make, register
from workers.backtest.strategy import Bar, CandleStrategy, Strategy, check, lookahead_free

CANDLES = walk(1500, seed=3)


@pytest.fixture(scope="module")
def live() -> BacktestData:
    """The walk through the live indicator engine and signal rules."""
    return from_candles(CANDLES, run_id="t")


def with_rsi(values: list[float | None]) -> BacktestData:
    n = len(values)
    return from_arrays("X", "1m", [START_MS + i * 60_000 for i in range(n)], [1.0] * n,
                       [1.0] * n, [1.0] * n, [1.0] * n, indicators={"rsi_14": values})


def test_rsi_reversion_on_a_hand_series() -> None:
    data = with_rsi([None, 50, 25, 35, 60, 75, 65, 40, 20, 30])
    # Rises through 30 at 25 -> 35 (index 3); falls through 70 at 75 -> 65 (6); rises
    # through 30 again at 20 -> 30 (9: reaching the level counts, as in core.signals).
    assert make("rsi_reversion").targets(data).tolist() == [0, 0, 0, 1, 1, 1, -1, -1, -1, 1]
    assert make("rsi_reversion", {"low": "40", "high": "60"}).targets(data).tolist() == [
        0, 0, 0, 0, 1, 1, 1, -1, -1, -1]


@pytest.mark.parametrize(("strategy", "params", "signals"), [
    ("ema_cross", {}, "ema_9_21_cross"),
    ("macd_cross", {}, "macd_cross"),
    ("rsi_reversion", {}, "rsi_oversold_exit,rsi_overbought_exit"),
    ("bollinger_breakout", {"exit_middle": "false"}, "bollinger_breakout"),
])
def test_builtins_with_default_params_trade_the_live_signals(
        live: BacktestData, strategy: str, params: dict[str, str], signals: str) -> None:
    ours = make(strategy, params).targets(live)
    assert np.count_nonzero(np.diff(ours)) >= 3, "the walk should give a few changes"
    assert ours.tolist() == make("signal", {"name": signals}).targets(live).tolist()


def test_computed_indicators_equal_the_stored_ones(live: BacktestData) -> None:
    bare = from_arrays("BTCUSDT", "1m", live.open_time, live.open, live.high, live.low,
                       live.close)
    for key, got in (("ema_9", features.ema(bare, 9)), ("rsi_14", features.rsi(bare, 14)),
                     ("macd", features.macd(bare, 12, 26, 9)[0]),
                     ("macd_signal", features.macd(bare, 12, 26, 9)[1]),
                     ("bb_upper", features.bollinger(bare, 20, 2.0)[0])):
        np.testing.assert_allclose(got, live.indicator(key), rtol=1e-9, err_msg=key)
    assert features.ema(live, 9) is live.indicators["ema_9"]  # stored: used as is


def _moved_close(candles: list[Candle], t: int, factor: float) -> list[Candle]:
    out = list(candles)
    c = candles[t]
    close = c.close * factor
    out[t] = Candle(c.symbol, c.timeframe, c.open_time, c.close_time, c.open,
                    max(c.high, close), min(c.low, close), close, c.volume, c.quote_volume,
                    c.trades, c.taker_buy_volume, c.taker_buy_quote_volume, True)
    return out


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_later_close_never_changes_an_earlier_decision(live: BacktestData, name: str) -> None:
    strategy = make(name)
    config = BacktestConfig(allow_short=True, slippage_bps=5)
    base = strategy.targets(live)
    base_trades = simulate(live, base, config).trades
    changed_somewhere = False
    for t in (100, 400, 777, 1200):
        # Candle t + 1 closes 3 % lower: a big move, which changes later decisions.
        moved = from_candles(_moved_close(CANDLES, t + 1, 0.97))
        targets = strategy.targets(moved)
        assert targets[:t + 1].tolist() == base[:t + 1].tolist(), t
        changed_somewhere |= targets.tolist() != base.tolist()
        # The fills decided up to t (entries up to t + 1's open) are the same too.
        trades = simulate(moved, targets, config).trades
        before = [(x.entry_index, x.entry_price, x.qty) for x in base_trades
                  if x.entry_index <= t + 1]
        assert [(x.entry_index, x.entry_price, x.qty) for x in trades
                if x.entry_index <= t + 1] == before
    assert lookahead_free(strategy, live)
    if name != "signal":  # the stored signals are fixed here; the others recompute
        assert changed_somewhere, "the moved closes should matter to some later decision"


class Peeks(Strategy[Any]):
    name = "peeks"

    def targets(self, data: BacktestData) -> np.ndarray[Any, np.dtype[np.int8]]:
        nxt = np.append(data.close[1:], data.close[-1])
        return np.where(nxt > data.close, 1, 0).astype(np.int8)


def test_lookahead_check_catches_a_strategy_that_peeks(live: BacktestData) -> None:
    assert not lookahead_free(Peeks(), live)


@dataclass(frozen=True)
class DipParams:
    drop_pct: float = 1.0
    rsi_max: float = 40.0

    def __post_init__(self) -> None:
        check(self.drop_pct > 0, f"drop_pct must be > 0, got {self.drop_pct}")


class BuyTheDip(CandleStrategy[DipParams]):
    """The docs/BACKTEST.md example."""

    name = "buy_the_dip"
    params_type = DipParams

    def on_candle(self, bar: Bar) -> int | None:
        rsi = bar.value("rsi_14")
        prev_close = bar.closes(2)[0]
        if bar.position == 0 and rsi is not None and rsi < self.params.rsi_max \
                and bar.close <= prev_close * (1 - self.params.drop_pct / 100):
            return 1
        if bar.position == 1 and bar.signal("ema_9_21_cross") == "bearish":
            return 0
        return None


def test_candle_strategy_sees_one_candle_at_a_time(live: BacktestData) -> None:
    s = BuyTheDip(DipParams(drop_pct=0.3))
    targets = s.targets(live)
    assert np.count_nonzero(np.diff(targets)) > 0 and set(targets.tolist()) == {0, 1}
    assert lookahead_free(s, live)
    # By hand: the first entry is the first candle whose rules hold.
    rsi, close = live.indicator("rsi_14"), live.close
    first = next(i for i in range(1, len(live)) if rsi[i] < 40 and close[i] <= close[i - 1]
                 * 0.997)
    assert targets[:first].tolist() == [0] * first and targets[first] == 1
    bar = Bar(live)
    with pytest.raises(ValueError, match="cannot see later candles"):
        bar.value("rsi_14", ago=-1)


def test_a_strategy_class_of_ones_own_by_import_path(live: BacktestData) -> None:
    s = make("tests.workers.backtest.test_strategies:BuyTheDip", {"drop_pct": "0.3"})
    assert isinstance(s, BuyTheDip) and s.params == DipParams(drop_pct=0.3)
    assert s.name == "buy_the_dip"
    register(BuyTheDip)
    try:
        assert isinstance(make("buy_the_dip"), BuyTheDip)
    finally:
        del STRATEGIES["buy_the_dip"]
    with pytest.raises(UnknownStrategy, match="cannot import strategy 'nomodule:X'"):
        make("nomodule:X")
    with pytest.raises(UnknownStrategy, match="is not a Strategy subclass"):
        make("tests.workers.backtest.test_strategies:DipParams")


def test_params_are_parsed_and_validated() -> None:
    s = make("ema_cross", {"fast": "5", "slow": "30"})
    assert (s.params.fast, s.params.slow) == (5, 30)
    assert make("bollinger_breakout", {"exit_middle": "no", "num_std": "2.5"}).params == (
        STRATEGIES["bollinger_breakout"].params_type(20, 2.5, False))
    with pytest.raises(InvalidParams, match=r"ema_cross: need 1 <= fast < slow"):
        make("ema_cross", {"fast": "30"})
    with pytest.raises(InvalidParams, match=r"unknown parameter\(s\) speed; its parameters "
                                            r"\(defaults\): fast=9, slow=21"):
        make("ema_cross", {"speed": "3"})
    with pytest.raises(InvalidParams, match="fast: expected an integer, got 'nine'"):
        make("ema_cross", {"fast": "nine"})
    with pytest.raises(InvalidParams, match="unknown signal"):
        make("signal", {"name": "moon"})
    with pytest.raises(UnknownStrategy, match=r"available: rsi_reversion .* ema_cross"):
        make("nope")


def test_ema_cross_with_periods_the_pipeline_does_not_store(live: BacktestData) -> None:
    fast = features.ema(live, 5)
    assert "ema_5" not in live.indicators and np.isnan(fast[3]) and not np.isnan(fast[4])
    targets = make("ema_cross", {"fast": 5, "slow": 30}).targets(live)
    assert targets.tolist() != make("ema_cross").targets(live).tolist()
    assert lookahead_free(make("ema_cross", {"fast": 5, "slow": 30}), live)
