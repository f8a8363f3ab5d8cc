"""BacktestData: validation, the live engine path, and the msgpack form sweeps share."""

from __future__ import annotations

import numpy as np
import pytest

from core.indicators import IndicatorEngine
from core.signals import evaluate
from tests.workers.backtest.synthetic import START_MS, walk
from workers.backtest.data import BacktestData, decode, encode, from_arrays, from_candles
from workers.backtest.errors import BacktestError, InvalidParams


def test_from_candles_runs_the_live_engine_and_signal_rules() -> None:
    candles = walk(300, seed=5)
    data = from_candles(candles, run_id="r")
    engine = IndicatorEngine()
    prev = None
    fired = 0
    for i, c in enumerate(candles):
        values = engine.update(c)
        for key, value in values.items():
            got = data.indicator(key)[i]
            assert (np.isnan(got) if value is None else got == value), (i, key)
        for sig in evaluate(prev, values, c):
            assert data.signal(sig.name)[i] == (1 if sig.direction == "bullish" else -1)
            fired += 1
        prev = values
    assert fired > 5
    assert sum(int(np.count_nonzero(v)) for v in data.signals.values()) == fired
    assert (data.symbol, data.timeframe, data.run_id, len(data)) == ("BTCUSDT", "1m", "r", 300)
    assert data.close.tolist() == [c.close for c in candles]


def test_msgpack_round_trip_is_exact() -> None:
    data = from_candles(walk(200, seed=6), run_id="r")
    back = decode(encode(data))
    assert (back.symbol, back.timeframe, back.run_id) == (data.symbol, data.timeframe, "r")
    for name in ("open_time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(back, name), getattr(data, name)), name
    assert back.indicators.keys() == data.indicators.keys()
    for key, values in data.indicators.items():
        assert np.array_equal(back.indicators[key], values, equal_nan=True), key
    assert {k: v.tolist() for k, v in back.signals.items()} == {
        k: v.tolist() for k, v in data.signals.items()}
    assert back.fingerprint() == data.fingerprint() == f"200-{START_MS}-{START_MS + 199 * 60_000}"


def test_head_is_a_prefix_of_everything() -> None:
    data = from_candles(walk(100, seed=7))
    head = data.head(40)
    assert len(head) == 40 and head.close.tolist() == data.close[:40].tolist()
    assert all(len(v) == 40 for v in head.indicators.values())
    assert all(len(v) == 40 for v in head.signals.values())


def test_inconsistent_input_is_refused() -> None:
    with pytest.raises(BacktestError, match="high has 2 values for 3 candles"):
        from_arrays("X", "1m", [1, 2, 3], [1, 1, 1], [1, 1], [1, 1, 1], [1, 1, 1])
    with pytest.raises(BacktestError, match="strictly increasing"):
        from_arrays("X", "1m", [1, 3, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1])
    with pytest.raises(InvalidParams, match="unknown timeframe '7m'"):
        from_arrays("X", "7m", [1], [1], [1], [1], [1])
    data = from_arrays("X", "1m", [1], [1], [1], [1], [1], indicators={"rsi_14": [None]})
    assert isinstance(data, BacktestData) and np.isnan(data.indicator("rsi_14")[0])
    with pytest.raises(BacktestError, match="no indicator 'ema_5' in the data; it has: rsi_14"):
        data.indicator("ema_5")
    assert data.signal("macd_cross").tolist() == [0]  # known, never fired
    with pytest.raises(InvalidParams, match="unknown signal 'moon'"):
        data.signal("moon")
