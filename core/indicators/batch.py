"""Every indicator key over a whole series, with `ta` itself: for backfill, replay and as the
reference the incremental engine is tested against.

The values are `ta`'s (fillna=False), with two clean-ups so that a row means the same here as in
the engine: `ta`'s placeholder zeros before ATR's and ADX's first real value become NaN, and the
±inf of a division by zero becomes NaN. docs/INDICATORS.md lists where each key starts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator, StochasticOscillator
from ta.trend import MACD, ADXIndicator, EMAIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands
from ta.volume import OnBalanceVolumeIndicator, VolumeWeightedAveragePrice

from core.indicators.engine import KEYS

# First row (0-based) at which ta's value is a result rather than an array's initial 0.0.
ATR_FIRST = 13
ADX_FIRST = 27
DI_FIRST = 15


def compute_batch(df: pd.DataFrame) -> pd.DataFrame:
    """`df` has float columns open, high, low, close, volume, one row per candle, oldest first.

    Returns one float column per key of `KEYS`, on `df`'s index, NaN where there is no value.
    """
    high = df["high"].astype("float64")
    low = df["low"].astype("float64")
    close = df["close"].astype("float64")
    volume = df["volume"].astype("float64")
    n = len(df)
    out: dict[str, pd.Series] = {}

    out["rsi_14"] = RSIIndicator(close, window=14).rsi()
    macd = MACD(close, window_slow=26, window_fast=12, window_sign=9)
    out["macd"] = macd.macd()
    out["macd_signal"] = macd.macd_signal()
    out["macd_hist"] = macd.macd_diff()
    bb = BollingerBands(close, window=20, window_dev=2)
    out["bb_upper"] = bb.bollinger_hband()
    out["bb_middle"] = bb.bollinger_mavg()
    out["bb_lower"] = bb.bollinger_lband()
    for w in (9, 21, 50, 200):
        out[f"ema_{w}"] = EMAIndicator(close, window=w).ema_indicator()
    for w in (20, 50, 200):
        out[f"sma_{w}"] = SMAIndicator(close, window=w).sma_indicator()

    nan = pd.Series(np.nan, index=df.index, dtype="float64")
    # ta indexes its ATR seed array at window - 1: it fails below 14 rows.
    out["atr_14"] = AverageTrueRange(high, low, close, window=14).average_true_range() if (
        n > ATR_FIRST) else nan
    stoch = StochasticOscillator(high, low, close, window=14, smooth_window=3)
    out["stoch_k"] = stoch.stoch()
    out["stoch_d"] = stoch.stoch_signal()
    out["obv"] = OnBalanceVolumeIndicator(close, volume).on_balance_volume()
    out["vwap"] = VolumeWeightedAveragePrice(
        high, low, close, volume, window=14).volume_weighted_average_price()
    # ta's ADX sizes arrays by len - 13 and writes the ADX seed at position 14.
    adx = ADXIndicator(high, low, close, window=14) if n >= 14 else None
    out["adx_14"] = adx.adx() if adx is not None and n > ADX_FIRST else nan
    out["adx_pos"] = adx.adx_pos() if adx is not None else nan
    out["adx_neg"] = adx.adx_neg() if adx is not None else nan

    cols = {k: out[k].to_numpy(dtype="float64", copy=True) for k in KEYS}
    cols["atr_14"][:ATR_FIRST] = np.nan
    cols["adx_14"][:ADX_FIRST] = np.nan
    cols["adx_pos"][:DI_FIRST] = np.nan
    cols["adx_neg"][:DI_FIRST] = np.nan
    for values in cols.values():
        values[np.isinf(values)] = np.nan
    return pd.DataFrame(cols, index=df.index)
