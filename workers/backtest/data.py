"""What a backtest reads: one run's closed candles for one symbol and timeframe, with the
indicator values and signals stored beside them, as numpy arrays.

The engine and the strategies see only this, whatever it came from: the database (`load.py`,
what the live pipeline or a replay stored), candles run through the live indicator engine here
(`from_candles`, the same code path as the Celery task), or arrays built in memory (tests,
benchmarks). A missing indicator value (warm-up, None in the database) is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from core.candles import Candle
from core.indicators import IndicatorEngine
from core.signals import NAMES as SIGNAL_NAMES
from core.signals import evaluate
from core.timeframes import TIMEFRAME_MS
from workers.backtest.errors import BacktestError, InvalidParams

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Directions = NDArray[np.int8]  # +1 bullish, -1 bearish, 0 nothing

DIRECTION = {"bullish": 1, "bearish": -1}


@dataclass(frozen=True, eq=False)
class BacktestData:
    symbol: str
    timeframe: str
    open_time: Ints  # ms since the epoch, strictly increasing
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats
    indicators: Mapping[str, Floats] = field(default_factory=dict)
    # Per signal name, at the index of the candle it fired on (decided at that candle's close).
    signals: Mapping[str, Directions] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.timeframe not in TIMEFRAME_MS:
            raise InvalidParams(f"unknown timeframe {self.timeframe!r}; "
                                f"known: {', '.join(TIMEFRAME_MS)}")
        n = len(self.open_time)
        columns: dict[str, Floats | Directions] = {
            "open": self.open, "high": self.high, "low": self.low, "close": self.close,
            "volume": self.volume, **self.indicators, **self.signals}
        for name, column in columns.items():
            if len(column) != n:
                raise BacktestError(f"{name} has {len(column)} values for {n} candles")
        if n > 1 and not bool(np.all(np.diff(self.open_time) > 0)):
            raise BacktestError("candle open times must be strictly increasing")

    def __len__(self) -> int:
        return len(self.open_time)

    @property
    def timeframe_ms(self) -> int:
        return TIMEFRAME_MS[self.timeframe]

    def indicator(self, key: str) -> Floats:
        try:
            return self.indicators[key]
        except KeyError:
            known = ", ".join(sorted(self.indicators)) or "none"
            raise BacktestError(f"no indicator {key!r} in the data; it has: {known}") from None

    def signal(self, name: str) -> Directions:
        """The signal's direction per candle; all zeros when it never fired."""
        if name not in SIGNAL_NAMES:
            raise InvalidParams(f"unknown signal {name!r}; known: {', '.join(SIGNAL_NAMES)}")
        found = self.signals.get(name)
        return np.zeros(len(self), np.int8) if found is None else found

    def head(self, n: int) -> BacktestData:
        """The first `n` candles and everything stored with them: what a strategy would have
        seen at candle n - 1's close (the no-look-ahead checks compare against this)."""
        return BacktestData(
            self.symbol, self.timeframe, self.open_time[:n], self.open[:n], self.high[:n],
            self.low[:n], self.close[:n], self.volume[:n],
            {k: v[:n] for k, v in self.indicators.items()},
            {k: v[:n] for k, v in self.signals.items()}, self.run_id)

    def fingerprint(self) -> str:
        """Names exactly which candles these are (for cache keys): count, first, last."""
        if not len(self):
            return "0"
        return f"{len(self)}-{int(self.open_time[0])}-{int(self.open_time[-1])}"


def from_arrays(symbol: str, timeframe: str, open_time: Iterable[int],
                open: Iterable[float], high: Iterable[float], low: Iterable[float],
                close: Iterable[float], volume: Iterable[float] | None = None, *,
                indicators: Mapping[str, Iterable[float | None]] | None = None,
                signals: Mapping[str, Iterable[int]] | None = None,
                run_id: str = "") -> BacktestData:
    """A `BacktestData` from any sequences (lists, pandas columns); None becomes NaN."""
    o = _floats(open)
    return BacktestData(
        symbol, timeframe, np.asarray(list(open_time), dtype=np.int64), o, _floats(high),
        _floats(low), _floats(close),
        np.zeros(len(o)) if volume is None else _floats(volume),
        {k: _floats(v) for k, v in (indicators or {}).items()},
        {k: np.asarray(list(v), dtype=np.int8) for k, v in (signals or {}).items()}, run_id)


def _floats(values: Iterable[float | None]) -> Floats:
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def from_candles(candles: Sequence[Candle], run_id: str = "") -> BacktestData:
    """Candles of one symbol and timeframe, oldest first, through the live indicator engine and
    signal rules, as the `candles_closed` task runs them: what the pipeline would have stored."""
    if not candles:
        raise BacktestError("no candles")
    engine = IndicatorEngine()
    rows: list[dict[str, float | None]] = []
    fired: dict[str, list[tuple[int, int]]] = {}
    prev: dict[str, float | None] | None = None
    for i, candle in enumerate(candles):
        values = engine.update(candle)
        for sig in evaluate(prev, values, candle):
            fired.setdefault(sig.name, []).append((i, DIRECTION[sig.direction]))
        rows.append(values)
        prev = values
    keys = sorted({k for row in rows for k in row})
    signals = {}
    for name, hits in fired.items():
        column = np.zeros(len(candles), np.int8)
        for i, direction in hits:
            column[i] = direction
        signals[name] = column
    first = candles[0]
    return from_arrays(first.symbol, first.timeframe, [c.open_time for c in candles],
                       [c.open for c in candles], [c.high for c in candles],
                       [c.low for c in candles], [c.close for c in candles],
                       [c.volume for c in candles],
                       indicators={k: [row.get(k) for row in rows] for k in keys},
                       signals=signals, run_id=run_id)


# -- serialisation: one msgpack blob, so Celery tasks of a sweep share one load via Redis ----

class _Wire(msgspec.Struct, array_like=True):
    symbol: str
    timeframe: str
    run_id: str
    columns: dict[str, bytes]  # float64/int64 arrays, little-endian
    signals: dict[str, bytes]  # int8 arrays


_BASE = ("open_time", "open", "high", "low", "close", "volume")
_decode = msgspec.msgpack.Decoder(_Wire).decode


def encode(data: BacktestData) -> bytes:
    columns: dict[str, bytes] = {
        name: np.ascontiguousarray(getattr(data, name)).astype("<f8" if name != "open_time"
                                                                 else "<i8").tobytes()
        for name in _BASE}
    for key, values in data.indicators.items():
        columns[f"i:{key}"] = np.ascontiguousarray(values, dtype="<f8").tobytes()
    signals = {k: np.ascontiguousarray(v, dtype=np.int8).tobytes()
               for k, v in data.signals.items()}
    return msgspec.msgpack.encode(_Wire(data.symbol, data.timeframe, data.run_id, columns,
                                        signals))


def decode(blob: bytes) -> BacktestData:
    wire = _decode(blob)
    cols: dict[str, Any] = {
        name: np.frombuffer(wire.columns[name], dtype="<i8" if name == "open_time" else "<f8")
        for name in _BASE}
    indicators = {k[2:]: np.frombuffer(v, dtype="<f8") for k, v in wire.columns.items()
                  if k.startswith("i:")}
    signals = {k: np.frombuffer(v, dtype=np.int8) for k, v in wire.signals.items()}
    return BacktestData(wire.symbol, wire.timeframe, cols["open_time"], cols["open"],
                        cols["high"], cols["low"], cols["close"], cols["volume"], indicators,
                        signals, wire.run_id)
