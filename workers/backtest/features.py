"""Indicator series for strategies: the stored value when the run has it (what live computed),
otherwise the same `ta` definition computed here over the run's candles.

So `ema(data, 9)` is exactly the stored `ema_9`, and `ema(data, 5)`, which the pipeline does
not store, is `ta`'s EMA(5) of the same closes: both are causal (the value at a candle uses
that candle and earlier ones only). Values computed here start from the first loaded candle,
so when a backtest loads a range that starts mid-run their warm-up differs from the stored ones.

pandas and `ta` are imported on first use: every Celery worker imports the backtest tasks, and
the live indicator work should not pay a second of imports for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from workers.backtest.data import BacktestData, Floats

if TYPE_CHECKING:
    import pandas as pd


def _stored(data: BacktestData, *keys: str) -> tuple[Floats, ...] | None:
    if all(k in data.indicators for k in keys):
        return tuple(data.indicators[k] for k in keys)
    return None


def _close(data: BacktestData) -> pd.Series:
    import pandas as pd

    return pd.Series(data.close, dtype="float64")


def _array(series: pd.Series) -> Floats:
    out = series.to_numpy(dtype="float64", copy=True)
    out[np.isinf(out)] = np.nan
    return out


def ema(data: BacktestData, window: int) -> Floats:
    stored = _stored(data, f"ema_{window}")
    if stored is not None:
        return stored[0]
    from ta.trend import EMAIndicator

    return _array(EMAIndicator(_close(data), window=window).ema_indicator())


def rsi(data: BacktestData, window: int) -> Floats:
    stored = _stored(data, f"rsi_{window}")
    if stored is not None:
        return stored[0]
    from ta.momentum import RSIIndicator

    return _array(RSIIndicator(_close(data), window=window).rsi())


def macd(data: BacktestData, fast: int, slow: int, signal: int) -> tuple[Floats, Floats]:
    """(macd, macd_signal)."""
    if (fast, slow, signal) == (12, 26, 9):
        stored = _stored(data, "macd", "macd_signal")
        if stored is not None:
            return stored[0], stored[1]
    from ta.trend import MACD

    m = MACD(_close(data), window_slow=slow, window_fast=fast, window_sign=signal)
    return _array(m.macd()), _array(m.macd_signal())


def bollinger(data: BacktestData, window: int, num_std: float) -> tuple[Floats, Floats, Floats]:
    """(upper, middle, lower)."""
    if (window, num_std) == (20, 2.0):
        stored = _stored(data, "bb_upper", "bb_middle", "bb_lower")
        if stored is not None:
            return stored[0], stored[1], stored[2]
    from ta.volatility import BollingerBands

    bb = BollingerBands(_close(data), window=window, window_dev=num_std)
    return (_array(bb.bollinger_hband()), _array(bb.bollinger_mavg()),
            _array(bb.bollinger_lband()))
