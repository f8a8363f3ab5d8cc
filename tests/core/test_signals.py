from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import numpy as np
import pytest

from core.candles import Candle
from core.indicators import KEYS, IndicatorEngine, Values
from core.signals import NAMES, Signal, evaluate

DOC = (Path(__file__).resolve().parents[2] / "docs" / "INDICATORS.md").read_text()


def row(**values: float | None) -> Values:
    out: Values = dict.fromkeys(KEYS)
    out.update(values)
    return out


def bar(open_: float = 100.0, close: float = 100.0, t: int = 60_000) -> Candle:
    return Candle("BTCUSDT", "1m", t, t + 59_999, open_, max(open_, close) + 1,
                  min(open_, close) - 1, close, 1.0, 100.0, 1, 0.5, 50.0, True)


def fired(prev: Values | None, cur: Values, candle: Candle | None = None) -> list[Signal]:
    return evaluate(prev, cur, candle or bar())


def only(prev: Values | None, cur: Values, candle: Candle | None = None) -> Signal:
    signals = fired(prev, cur, candle)
    assert len(signals) == 1, signals
    return signals[0]


def test_rsi_oversold_exit_fires_when_rsi_climbs_back_to_30() -> None:
    s = only(row(rsi_14=25.0), row(rsi_14=32.0))
    assert (s.name, s.direction) == ("rsi_oversold_exit", "bullish")
    assert s.strength == pytest.approx(0.7)  # 7 RSI points of the 10 that make full strength
    assert s.values == {"rsi_14": 32.0, "rsi_14_prev": 25.0}
    assert only(row(rsi_14=29.9), row(rsi_14=30.0)).name == "rsi_oversold_exit"
    assert only(row(rsi_14=5.0), row(rsi_14=45.0)).strength == 1.0


@pytest.mark.parametrize(("prev", "cur"), [(25.0, 29.0), (30.0, 35.0), (31.0, 20.0),
                                           (None, 35.0), (25.0, None)])
def test_rsi_oversold_exit_needs_a_crossing(prev: float | None, cur: float | None) -> None:
    assert fired(row(rsi_14=prev), row(rsi_14=cur)) == []


def test_rsi_overbought_exit_fires_when_rsi_falls_back_to_70() -> None:
    s = only(row(rsi_14=75.0), row(rsi_14=69.0))
    assert (s.name, s.direction) == ("rsi_overbought_exit", "bearish")
    assert s.strength == pytest.approx(0.6)
    assert only(row(rsi_14=70.1), row(rsi_14=70.0)).name == "rsi_overbought_exit"
    for prev, cur in [(70.0, 60.0), (80.0, 71.0), (60.0, 80.0)]:
        assert fired(row(rsi_14=prev), row(rsi_14=cur)) == []


def test_no_previous_row_means_no_crossing() -> None:
    assert fired(None, row(rsi_14=35.0, macd=1.0, macd_signal=0.0, atr_14=1.0)) == []


def test_macd_cross_bullish_and_bearish_with_strength_from_crossing_speed() -> None:
    s = only(row(macd=1.0, macd_signal=2.0, atr_14=10.0),
             row(macd=2.5, macd_signal=2.0, atr_14=10.0))
    assert (s.name, s.direction) == ("macd_cross", "bullish")
    # The histogram moved from -1 to +0.5: 1.5 against a full-strength 0.2 * ATR = 2.
    assert s.strength == pytest.approx(0.75)
    assert s.values == {"macd": 2.5, "macd_signal": 2.0, "atr_14": 10.0, "macd_prev": 1.0,
                        "macd_signal_prev": 2.0}
    s = only(row(macd=3.0, macd_signal=2.0, atr_14=1.0),
             row(macd=1.0, macd_signal=2.0, atr_14=1.0))
    assert (s.name, s.direction, s.strength) == ("macd_cross", "bearish", 1.0)


@pytest.mark.parametrize(("prev_gap", "gap"), [(1.0, 2.0), (-1.0, -0.5), (0.0, 0.0),
                                               (-1.0, 0.0)])
def test_macd_cross_needs_the_lines_to_cross(prev_gap: float, gap: float) -> None:
    assert fired(row(macd=prev_gap, macd_signal=0.0, atr_14=1.0),
                 row(macd=gap, macd_signal=0.0, atr_14=1.0)) == []


def test_touching_then_leaving_counts_once() -> None:
    gaps = [-1.0, 0.0, 0.5, 0.0, 0.7]
    rows = [row(macd=g, macd_signal=0.0, atr_14=1.0) for g in gaps]
    signals = [fired(a, b) for a, b in itertools.pairwise(rows)]
    assert [[s.direction for s in sig] for sig in signals] == [[], ["bullish"], [], ["bullish"]]


def test_crossing_in_a_flat_market_is_full_strength() -> None:
    s = only(row(macd=-0.1, macd_signal=0.0, atr_14=0.0),
             row(macd=0.1, macd_signal=0.0, atr_14=0.0))
    assert s.strength == 1.0


def test_a_cross_without_atr_does_not_fire() -> None:
    assert fired(row(macd=-1.0, macd_signal=0.0), row(macd=1.0, macd_signal=0.0)) == []


def test_ema_9_21_cross() -> None:
    s = only(row(ema_9=99.0, ema_21=100.0, atr_14=5.0), row(ema_9=100.5, ema_21=100.0,
                                                          atr_14=5.0))
    assert (s.name, s.direction) == ("ema_9_21_cross", "bullish")
    assert s.strength == pytest.approx(1.0)
    s = only(row(ema_9=100.2, ema_21=100.0, atr_14=5.0), row(ema_9=99.9, ema_21=100.0,
                                                           atr_14=5.0))
    assert (s.name, s.direction) == ("ema_9_21_cross", "bearish")
    assert s.strength == pytest.approx(0.3)
    assert fired(row(ema_9=99.0, ema_21=100.0, atr_14=5.0),
                 row(ema_9=99.5, ema_21=100.0, atr_14=5.0)) == []


def test_golden_and_death_cross() -> None:
    s = only(row(sma_50=99.9, sma_200=100.0, atr_14=1.0),
             row(sma_50=100.05, sma_200=100.0, atr_14=1.0))
    assert (s.name, s.direction) == ("golden_cross", "bullish")
    assert s.strength == pytest.approx(0.75)
    assert s.values["sma_50_prev"] == 99.9
    s = only(row(sma_50=100.1, sma_200=100.0, atr_14=1.0),
             row(sma_50=99.8, sma_200=100.0, atr_14=1.0))
    assert (s.name, s.direction, s.strength) == ("death_cross", "bearish", 1.0)
    assert fired(row(sma_50=None, sma_200=100.0, atr_14=1.0),
                 row(sma_50=101.0, sma_200=100.0, atr_14=1.0)) == []


def bands() -> Values:
    return row(bb_upper=110.0, bb_middle=100.0, bb_lower=90.0)  # sigma = 5


def test_bollinger_breakout_above_the_upper_band() -> None:
    s = only(None, bands(), bar(105.0, 112.5, t=120_000))
    assert (s.name, s.direction, s.strength) == ("bollinger_breakout", "bullish", 0.5)
    assert (s.symbol, s.timeframe, s.time) == ("BTCUSDT", "1m", 120_000)
    assert s.values == {"bb_upper": 110.0, "bb_middle": 100.0, "bb_lower": 90.0,
                        "open": 105.0, "close": 112.5}
    assert only(None, bands(), bar(110.0, 130.0)).strength == 1.0


def test_bollinger_breakout_below_the_lower_band() -> None:
    s = only(None, bands(), bar(95.0, 89.0))
    assert (s.name, s.direction, s.strength) == ("bollinger_breakout", "bearish", 0.2)


@pytest.mark.parametrize(("open_", "close"), [(105.0, 110.0), (111.0, 115.0), (100.0, 95.0),
                                              (89.0, 85.0), (95.0, 90.0)])
def test_bollinger_breakout_needs_the_candle_to_cross_a_band(open_: float, close: float) -> None:
    assert fired(None, bands(), bar(open_, close)) == []


def test_bollinger_breakout_out_of_a_flat_band_is_full_strength() -> None:
    flat = row(bb_upper=100.0, bb_middle=100.0, bb_lower=100.0)
    assert only(None, flat, bar(100.0, 100.01)).strength == 1.0


def test_signals_over_a_long_random_walk() -> None:
    rng = np.random.default_rng(11)
    close = 60_000 * np.exp(np.cumsum(rng.standard_normal(6000) * 0.003))
    engine = IndicatorEngine()
    prev: Values | None = None
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(close.tolist()):
        o = close[i - 1].item() if i else c
        candle = Candle("BTCUSDT", "1m", i * 60_000, i * 60_000 + 59_999, o, max(o, c) * 1.001,
                        min(o, c) * 0.999, c, 1.0, c, 1, 0.5, c / 2, True)
        cur = engine.update(candle)
        for s in evaluate(prev, cur, candle):
            assert s.name in NAMES and 0.0 <= s.strength <= 1.0
            assert s.time == candle.open_time
            assert msgspec.json.decode(msgspec.json.encode(s), type=Signal) == s
            seen.add((s.name, s.direction))
        prev = cur
    assert seen == {
        ("rsi_oversold_exit", "bullish"), ("rsi_overbought_exit", "bearish"),
        ("macd_cross", "bullish"), ("macd_cross", "bearish"),
        ("bollinger_breakout", "bullish"), ("bollinger_breakout", "bearish"),
        ("ema_9_21_cross", "bullish"), ("ema_9_21_cross", "bearish"),
        ("golden_cross", "bullish"), ("death_cross", "bearish"),
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_signal_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC
