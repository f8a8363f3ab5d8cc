"""The incremental indicator engine: one closed candle in, every indicator's new value out.

One engine serves one symbol and timeframe. Each `update` costs O(1) (running sums, EWMs,
monotonic deques; nothing re-reads a window except pandas' own rare variance recompute), and
every value equals what `ta` computes over the whole series up to that candle: the primitives
replay pandas' floating-point operations, `wilder.py` replays ta's ATR and ADX loops. A value is
None until `ta` would give a real number (docs/INDICATORS.md lists each key's warm-up).

The engine keeps no history beyond its windows, so its state is small and JSON-safe:
`state()` / `from_state()` round-trip exactly, for checkpoints.
"""

from __future__ import annotations

from typing import Any

from core.candles import Candle
from core.exceptions import AlphaPlusError, InvalidInput
from core.indicators.primitives import (
    NAN,
    Ewm,
    RollingExtreme,
    RollingMean,
    RollingStd,
    RollingSum,
    State,
)
from core.indicators.wilder import TaAdx, TaAtr

STATE_VERSION = 1

KEYS: tuple[str, ...] = (
    "rsi_14",
    "macd", "macd_signal", "macd_hist",
    "bb_upper", "bb_middle", "bb_lower",
    "ema_9", "ema_21", "ema_50", "ema_200",
    "sma_20", "sma_50", "sma_200",
    "atr_14",
    "stoch_k", "stoch_d",
    "obv",
    "vwap",
    "adx_14", "adx_pos", "adx_neg",
)

Values = dict[str, float | None]


class CandleOutOfOrder(AlphaPlusError, ValueError):
    """A candle not after the last one applied (or for another series): applying it would
    corrupt every running value, so the caller must restore an earlier state and replay."""


def _ohlcv(c: Candle) -> list[float]:
    return [c.open, c.high, c.low, c.close, c.volume]


class IndicatorEngine:
    """Every indicator of docs/INDICATORS.md for one symbol/timeframe, updated per closed candle."""

    __slots__ = (
        "_adx", "_atr", "_bb_std", "_ema9", "_ema12", "_ema21", "_ema26", "_ema50", "_ema200",
        "_high14", "_last", "_last_candle", "_low14", "_macd_signal", "_obv", "_prev_close",
        "_restored_ohlcv", "_rsi_down", "_rsi_up", "_sma20", "_sma50", "_sma200", "_stoch_d",
        "_vol14", "_vwap_pv14", "last_open_time", "symbol", "timeframe",
    )

    def __init__(self) -> None:
        self.symbol: str | None = None
        self.timeframe: str | None = None
        self.last_open_time: int | None = None
        self._last: Values = {}
        self._last_candle: Candle | None = None
        self._restored_ohlcv: list[float] | None = None
        self._prev_close = NAN
        self._rsi_up = Ewm(alpha=1 / 14)
        self._rsi_down = Ewm(alpha=1 / 14)
        self._ema9 = Ewm(span=9)
        self._ema12 = Ewm(span=12)
        self._ema21 = Ewm(span=21)
        self._ema26 = Ewm(span=26)
        self._ema50 = Ewm(span=50)
        self._ema200 = Ewm(span=200)
        self._macd_signal = Ewm(span=9)
        self._sma20 = RollingMean(20)  # also Bollinger's middle band: the same rolling mean
        self._sma50 = RollingMean(50)
        self._sma200 = RollingMean(200)
        self._bb_std = RollingStd(20)
        self._atr = TaAtr(14)
        self._low14 = RollingExtreme(14, lowest=True)
        self._high14 = RollingExtreme(14)
        self._stoch_d = RollingMean(3)
        self._obv = 0.0
        self._vwap_pv14 = RollingSum(14)
        self._vol14 = RollingSum(14)
        self._adx = TaAdx(14)

    def update(self, candle: Candle) -> Values:
        """Apply the next closed candle; return every key's value (None while warming up).

        The same candle again (a redelivered task) returns the same values without changing
        anything; an older or different candle for the last open_time raises CandleOutOfOrder;
        a candle with its close outside [low, high], a negative volume or a NaN raises
        InvalidInput. Neither changes the state.
        """
        last = self.last_open_time
        if last is None:
            self.symbol = candle.symbol
            self.timeframe = candle.timeframe
        elif candle.open_time <= last or candle.symbol != self.symbol or (
            candle.timeframe != self.timeframe
        ):
            return self._refuse(candle)
        high = candle.high
        low = candle.low
        close = candle.close
        volume = candle.volume
        # One NaN would poison every running value for good (and every checkpoint after it);
        # the range check also guarantees Stochastic's only 0/0 is a flat window.
        if not (low <= close <= high and volume >= 0.0):
            raise InvalidInput("candle", f"{candle.symbol} {candle.timeframe} {candle.open_time}:"
                               f" low {low} close {close} high {high} volume {volume}")
        self.last_open_time = candle.open_time
        self._last_candle = candle
        pc = self._prev_close
        self._prev_close = close

        # RSI: ta feeds 0 gains and 0 losses for the first candle (its diff is NaN).
        diff = close - pc
        up = self._rsi_up.update(diff if diff > 0 else 0.0)
        down = self._rsi_down.update(-diff if diff < 0 else 0.0)
        rsi: float | None = None
        if self._rsi_up.nobs >= 14:
            rsi = 100.0 if down == 0 else 100 - (100 / (1 + up / down))

        # MACD: both EMAs run from the first candle; the signal EMA starts at the first MACD.
        e12 = self._ema12.update(close)
        e26 = self._ema26.update(close)
        macd = macd_signal = macd_hist = None
        if self._ema26.nobs >= 26:
            macd = e12 - e26
            sig = self._macd_signal.update(macd)
            if self._macd_signal.nobs >= 9:
                macd_signal = sig
                macd_hist = macd - sig

        e9 = self._ema9.update(close)
        e21 = self._ema21.update(close)
        e50 = self._ema50.update(close)
        e200 = self._ema200.update(close)

        # Primitives return NaN while warming up (or for ta's NaNs); `x == x` is False for NaN.
        sma20 = self._sma20.update(close)
        std20 = self._bb_std.update(close)
        sma50 = self._sma50.update(close)
        sma200 = self._sma200.update(close)
        bb_middle = bb_upper = bb_lower = None
        if sma20 == sma20:
            bb_middle = sma20
            bb_upper = sma20 + 2 * std20
            bb_lower = sma20 - 2 * std20

        atr = self._atr.update(high, low, close)

        lo = self._low14.update(low)
        hi = self._high14.update(high)
        k = NAN
        # A flat window is 0/0, NaN in ta; nonzero/0 cannot happen with low <= close <= high.
        if lo == lo and hi != lo:
            k = 100 * (close - lo) / (hi - lo)
        d = self._stoch_d.update(k)

        # OBV: ta's first candle counts as a rise (its comparison with NaN is False).
        obv = self._obv = self._obv - volume if close < pc else self._obv + volume

        pv = self._vwap_pv14.update((high + low + close) / 3.0 * volume)
        vol = self._vol14.update(volume)

        adx, adx_pos, adx_neg = self._adx.update(high, low, close)

        out: Values = {
            "rsi_14": rsi,
            "macd": macd,
            "macd_signal": macd_signal,
            "macd_hist": macd_hist,
            "bb_upper": bb_upper,
            "bb_middle": bb_middle,
            "bb_lower": bb_lower,
            "ema_9": e9 if self._ema9.nobs >= 9 else None,
            "ema_21": e21 if self._ema21.nobs >= 21 else None,
            "ema_50": e50 if self._ema50.nobs >= 50 else None,
            "ema_200": e200 if self._ema200.nobs >= 200 else None,
            "sma_20": bb_middle,
            "sma_50": sma50 if sma50 == sma50 else None,
            "sma_200": sma200 if sma200 == sma200 else None,
            "atr_14": atr if atr == atr else None,
            "stoch_k": k if k == k else None,
            "stoch_d": d if d == d else None,
            "obv": obv,
            "vwap": pv / vol if vol == vol and vol != 0 else None,
            "adx_14": adx if adx == adx else None,
            "adx_pos": adx_pos if adx_pos == adx_pos else None,
            "adx_neg": adx_neg if adx_neg == adx_neg else None,
        }
        self._last = out
        return dict(out)  # the caller may add to its row; the engine keeps its own

    def _refuse(self, candle: Candle) -> Values:
        if (
            candle.open_time == self.last_open_time
            and candle.symbol == self.symbol
            and candle.timeframe == self.timeframe
            and _ohlcv(candle) == self._last_ohlcv
        ):
            return dict(self._last)
        raise CandleOutOfOrder(
            f"{candle.symbol} {candle.timeframe} open_time {candle.open_time} does not follow "
            f"{self.symbol} {self.timeframe} {self.last_open_time} (or differs from the candle "
            "applied for it)"
        )

    def state(self) -> State:
        """Everything needed to continue exactly: plain JSON types, NaN written as None."""
        return {
            "v": STATE_VERSION,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "last_open_time": self.last_open_time,
            "last": dict(self._last),
            "last_ohlcv": self._last_ohlcv,
            "prev_close": None if self.last_open_time is None else self._prev_close,
            "obv": self._obv,
            **{name: getattr(self, "_" + name).state() for name in _PARTS},
        }

    @property
    def _last_ohlcv(self) -> list[float] | None:
        c = self._last_candle
        return self._restored_ohlcv if c is None else _ohlcv(c)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> IndicatorEngine:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"indicator state version {state.get('v')!r} is not {STATE_VERSION}")
        engine = cls()
        engine.symbol = state["symbol"]
        engine.timeframe = state["timeframe"]
        engine.last_open_time = state["last_open_time"]
        engine._last = dict(state["last"])
        engine._restored_ohlcv = state["last_ohlcv"]
        pc = state["prev_close"]
        engine._prev_close = NAN if pc is None else float(pc)
        engine._obv = float(state["obv"])
        for name in _PARTS:
            getattr(engine, "_" + name).load(state[name])
        return engine


_PARTS = (
    "rsi_up", "rsi_down", "ema9", "ema12", "ema21", "ema26", "ema50", "ema200", "macd_signal",
    "sma20", "sma50", "sma200", "bb_std", "atr", "low14", "high14", "stoch_d", "vwap_pv14",
    "vol14", "adx",
)
