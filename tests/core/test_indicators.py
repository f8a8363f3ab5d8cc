"""The incremental engine against `ta` itself, on random walks and on real Binance trades.

Tolerance: 1e-9 relative (and 1e-9 absolute for values that cross zero: MACD, its histogram,
OBV). In practice the engine's floats are identical to ta's, because the primitives replay the
pandas kernels' operations in the same order; `test_values_are_bit_for_bit_ta` pins that down
separately, so a pandas release that reorders its arithmetic shows up as that one failure while
the tolerance tests still bound the difference.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pandas as pd
import pytest
from ta.momentum import RSIIndicator, StochasticOscillator
from ta.trend import MACD, ADXIndicator, EMAIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands
from ta.volume import OnBalanceVolumeIndicator, VolumeWeightedAveragePrice

from core.candles import Candle
from core.exceptions import InvalidInput
from core.indicators import KEYS, CandleOutOfOrder, IndicatorEngine, Values
from core.indicators.batch import compute_batch
from core.indicators.primitives import (
    Ewm,
    RollingExtreme,
    RollingMean,
    RollingStd,
    RollingSum,
    numpy_sum,
)
from tests.conftest import HFT

SIGNED = {"macd", "macd_signal", "macd_hist", "obv"}


def random_walk(seed: int, n: int = 5000) -> pd.DataFrame:
    """Geometric random walk on a 0.01 tick (so ties happen), random volumes, and two flat,
    zero-volume stretches longer than every window (flat windows: 0/0 in Stochastic and VWAP,
    pandas' equal-values shortcut, the variance recompute when a spike leaves the window)."""
    rng = np.random.default_rng(seed)
    close = np.round(60_000 * np.exp(np.cumsum(rng.standard_normal(n) * 0.002)), 2)
    close[n // 3 : n // 3 + 1] *= 1.2  # a spike: it leaves the std window with cancellation
    open_ = np.concatenate([close[:1], close[:-1]])
    high = np.maximum(open_, close) + np.round(rng.exponential(20, n), 2)
    low = np.minimum(open_, close) - np.round(rng.exponential(20, n), 2)
    volume = np.round(rng.exponential(5, n), 5)
    volume[rng.random(n) < 0.02] = 0.0
    for start in (n // 10, n // 2) if n else ():
        flat = close[start]
        sl = slice(start, start + 40)
        open_[sl] = high[sl] = low[sl] = close[sl] = flat
        volume[sl] = 0.0
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})


def real_second_candles() -> pd.DataFrame:
    """1-second OHLCV candles of the real BTCUSDT trades of both recordings (about 650)."""
    rows: dict[int, list[float]] = {}
    for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz"):
        with gzip.open(HFT / "spot" / name, "rb") as fh:
            for line in fh:
                frame = orjson.loads(line.partition(b" ")[2])
                if frame.get("stream") != "btcusdt@trade":
                    continue
                d = frame["data"]
                price, qty, second = float(d["p"]), float(d["q"]), d["T"] // 1000 * 1000
                row = rows.get(second)
                if row is None:
                    rows[second] = [price, price, price, price, qty]
                else:
                    row[1] = max(row[1], price)
                    row[2] = min(row[2], price)
                    row[3] = price
                    row[4] += qty
    times = sorted(rows)
    return pd.DataFrame([rows[t] for t in times], index=pd.Index(times, name="open_time"),
                        columns=["open", "high", "low", "close", "volume"])


def candles(df: pd.DataFrame, timeframe: str = "1m") -> Iterator[Candle]:
    step = 60_000 if timeframe == "1m" else 1_000
    rows: list[list[float]] = df[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
    for i, (o, h, lo, c, v) in enumerate(rows):
        t = i * step
        yield Candle("BTCUSDT", timeframe, t, t + step - 1, o, h, lo, c, v, 0.0, 1, 0.0, 0.0, True)


def run(df: pd.DataFrame, timeframe: str = "1m") -> list[Values]:
    engine = IndicatorEngine()
    return [engine.update(c) for c in candles(df, timeframe)]


def column(rows: Sequence[Values], key: str) -> np.ndarray:
    return np.array([math.nan if r[key] is None else r[key] for r in rows], dtype="float64")


def ta_raw(df: pd.DataFrame) -> dict[str, pd.Series]:
    """ta's own outputs, without compute_batch's clean-ups."""
    h, lo, c, v = df["high"], df["low"], df["close"], df["volume"]
    macd = MACD(c)
    bb = BollingerBands(c, window=20, window_dev=2)
    stoch = StochasticOscillator(h, lo, c, window=14, smooth_window=3)
    adx = ADXIndicator(h, lo, c, window=14)
    return {
        "rsi_14": RSIIndicator(c).rsi(),
        "macd": macd.macd(), "macd_signal": macd.macd_signal(), "macd_hist": macd.macd_diff(),
        "bb_upper": bb.bollinger_hband(), "bb_middle": bb.bollinger_mavg(),
        "bb_lower": bb.bollinger_lband(),
        **{f"ema_{w}": EMAIndicator(c, window=w).ema_indicator() for w in (9, 21, 50, 200)},
        **{f"sma_{w}": SMAIndicator(c, window=w).sma_indicator() for w in (20, 50, 200)},
        "atr_14": AverageTrueRange(h, lo, c, window=14).average_true_range(),
        "stoch_k": stoch.stoch(), "stoch_d": stoch.stoch_signal(),
        "obv": OnBalanceVolumeIndicator(c, v).on_balance_volume(),
        "vwap": VolumeWeightedAveragePrice(h, lo, c, v, window=14).volume_weighted_average_price(),
        "adx_14": adx.adx(), "adx_pos": adx.adx_pos(), "adx_neg": adx.adx_neg(),
    }


# Where ta 0.11 writes its arrays' initial 0.0 instead of a value: the engine says None there.
PLACEHOLDER_ZEROS = {"atr_14": 13, "adx_14": 27, "adx_pos": 15, "adx_neg": 15}


def assert_matches_ta(df: pd.DataFrame, rows: Sequence[Values]) -> None:
    raw = ta_raw(df)
    for key in KEYS:
        got = column(rows, key)
        want = raw[key].to_numpy(dtype="float64", copy=True)
        zeros = PLACEHOLDER_ZEROS.get(key, 0)
        assert (want[:zeros] == 0.0).all(), key
        want[:zeros] = np.nan
        assert (np.isnan(got) == np.isnan(want)).all(), (
            key, np.flatnonzero(np.isnan(got) != np.isnan(want))[:10])
        ok = ~np.isnan(want)
        atol = 1e-9 if key in SIGNED else 0.0
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=atol, err_msg=key)


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "INDICATORS.md").read_text()
    missing = [k for k in KEYS if f"`{k}`" not in doc]
    assert missing == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_walk_equals_ta(seed: int) -> None:
    df = random_walk(seed)
    rows = run(df)
    assert_matches_ta(df, rows)
    # Every key reaches a value, and the flat stretches really produced ta's NaNs mid-series.
    last = rows[-1]
    assert all(last[k] is not None for k in KEYS)
    assert rows[len(df) // 2 + 30]["stoch_k"] is None
    assert rows[len(df) // 2 + 30]["vwap"] is None


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return real_second_candles()


def test_real_binance_second_candles_equal_ta(real: pd.DataFrame) -> None:
    assert 600 < len(real) < 700
    rows = run(real, "1s")
    assert_matches_ta(real, rows)
    assert all(rows[-1][k] is not None for k in KEYS)


def test_values_are_bit_for_bit_ta(real: pd.DataFrame) -> None:
    for df in (random_walk(7, 3000), real):
        rows = run(df)
        want = compute_batch(df)
        for key in KEYS:
            got = column(rows, key)
            ref = want[key].to_numpy()
            same = (got == ref) | (np.isnan(got) & np.isnan(ref))
            assert same.all(), (key, np.flatnonzero(~same)[:5])


@pytest.mark.parametrize("n", [*range(0, 35), 199, 200, 201])
def test_short_series_warm_up_like_compute_batch(n: int) -> None:
    df = random_walk(3, n)
    rows = run(df)
    want = compute_batch(df)
    assert list(want.columns) == list(KEYS) and len(want) == n
    for key in KEYS:
        got = column(rows, key)
        ref = want[key].to_numpy()
        assert ((got == ref) | (np.isnan(got) & np.isnan(ref))).all(), key


def test_first_values_appear_where_documented() -> None:
    rows = run(random_walk(4, 300))
    first = {k: next(i for i, r in enumerate(rows) if r[k] is not None) for k in KEYS}
    assert first == {
        "rsi_14": 13, "macd": 25, "macd_signal": 33, "macd_hist": 33,
        "bb_upper": 19, "bb_middle": 19, "bb_lower": 19,
        "ema_9": 8, "ema_21": 20, "ema_50": 49, "ema_200": 199,
        "sma_20": 19, "sma_50": 49, "sma_200": 199,
        "atr_14": 13, "stoch_k": 13, "stoch_d": 15, "obv": 0, "vwap": 13,
        "adx_14": 27, "adx_pos": 15, "adx_neg": 15,
    }


@pytest.mark.parametrize("cut", [1, 10, 14, 20, 27, 33, 150, 2500])
def test_state_round_trip_continues_identically(cut: int) -> None:
    cs = list(candles(random_walk(5, 3000)))
    engine = IndicatorEngine()
    for c in cs[:cut]:
        engine.update(c)
    state = engine.state()
    restored = IndicatorEngine.from_state(orjson.loads(orjson.dumps(state)))
    via_msgspec = IndicatorEngine.from_state(msgspec.json.decode(msgspec.json.encode(state)))
    # Taking the state must not let later updates change it.
    snapshot = orjson.dumps(state)
    for c in cs[cut:]:
        want = engine.update(c)
        assert restored.update(c) == want
        assert via_msgspec.update(c) == want
    assert orjson.dumps(state) == snapshot
    assert orjson.dumps(restored.state()) == orjson.dumps(engine.state())


def test_a_redelivered_candle_changes_nothing_and_out_of_order_is_refused() -> None:
    cs = list(candles(random_walk(6, 40)))
    engine = IndicatorEngine()
    for c in cs[:30]:
        values = engine.update(c)
    assert engine.update(cs[29]) == values  # the same candle again (a retried task)
    restored = IndicatorEngine.from_state(orjson.loads(orjson.dumps(engine.state())))
    assert restored.update(cs[29]) == values
    amended = msgspec.structs.replace(cs[29], close=cs[29].close + 1.0)
    with pytest.raises(CandleOutOfOrder):
        engine.update(amended)
    with pytest.raises(CandleOutOfOrder):
        engine.update(cs[10])
    with pytest.raises(CandleOutOfOrder):
        engine.update(msgspec.structs.replace(cs[30], symbol="ETHUSDT"))
    # Refusals left the state alone: the rest equals an uninterrupted run.
    fresh = IndicatorEngine()
    want = [fresh.update(c) for c in cs][30:]
    assert [engine.update(c) for c in cs[30:]] == want


@pytest.mark.parametrize("change", [{"close": math.nan}, {"high": math.nan}, {"volume": -1.0},
                                    {"close": 1e9}, {"low": 1e9}])
def test_an_invalid_candle_is_refused_without_harm(change: dict[str, float]) -> None:
    cs = list(candles(random_walk(8, 60)))
    engine = IndicatorEngine()
    for c in cs[:30]:
        engine.update(c)
    with pytest.raises(InvalidInput):
        engine.update(msgspec.structs.replace(cs[30], **change))
    fresh = IndicatorEngine()
    want = [fresh.update(c) for c in cs][30:]
    assert [engine.update(c) for c in cs[30:]] == want


def test_a_returned_row_is_the_callers_to_change() -> None:
    cs = list(candles(random_walk(9, 30)))
    engine = IndicatorEngine()
    for c in cs:
        row = engine.update(c)
    row["rsi_14"] = -1.0
    assert engine.update(cs[-1])["rsi_14"] != -1.0
    assert engine.state()["last"]["rsi_14"] != -1.0


def test_state_is_refused_from_another_version() -> None:
    state = IndicatorEngine().state()
    state["v"] = 99
    with pytest.raises(ValueError, match="version"):
        IndicatorEngine.from_state(state)


# --- the primitives against pandas directly ---


def _same(got: Sequence[float], want: pd.Series) -> bool:
    g = np.array(got)
    w = want.to_numpy()
    return bool(((g == w) | (np.isnan(g) & np.isnan(w))).all())


def _prices(seed: int, n: int = 2000) -> pd.Series:
    rng = np.random.default_rng(seed)
    x = np.round(100 * np.exp(np.cumsum(rng.standard_normal(n) * 0.01)), 2)
    x[300:340] = x[300]
    x[700] *= 1e6  # leaves the window with catastrophic cancellation
    return pd.Series(x)


@pytest.mark.parametrize("seed", [0, 1])
def test_primitives_replay_pandas(seed: int) -> None:
    s = _prices(seed)
    xs = s.tolist()
    for span in (9, 26, 200):
        e = Ewm(span=span)
        assert _same([e.update(x) for x in xs], s.ewm(span=span, adjust=False).mean())
    e = Ewm(alpha=1 / 14)
    assert _same([e.update(x) for x in xs], s.ewm(alpha=1 / 14, adjust=False).mean())
    for w in (3, 20, 200):
        m, t, sd = RollingMean(w), RollingSum(w), RollingStd(w)
        assert _same([m.update(x) for x in xs], s.rolling(w).mean())
        assert _same([t.update(x) for x in xs], s.rolling(w).sum())
        assert _same([sd.update(x) for x in xs], s.rolling(w).std(ddof=0))
    hi, lo = RollingExtreme(14), RollingExtreme(14, lowest=True)
    assert _same([hi.update(x) for x in xs], s.rolling(14).max())
    assert _same([lo.update(x) for x in xs], s.rolling(14).min())
    holes = s.where(np.random.default_rng(seed).random(len(s)) > 0.1)
    m = RollingMean(3)
    assert _same([m.update(x) for x in holes.tolist()], holes.rolling(3).mean())


def test_numpy_sum_is_numpys_pairwise_sum() -> None:
    rng = np.random.default_rng(0)
    for n in range(0, 129):
        a = rng.standard_normal(n) * 1e4
        assert numpy_sum(a.tolist()) == float(np.sum(a))
