"""The strategy interface: what a strategy is, its parameters, and helpers to write one.

A strategy turns a run's candles, indicators and signals into a *target position* for every
candle: +1 long, 0 flat, -1 short (flat when the backtest does not allow shorts), decided at
that candle's close. The engine acts on a change of target at the next candle's open, so the
value at index i may use candles 0..i only. Two ways to write one:

- `Strategy.targets(data)`: whole arrays at once (numpy), fast. The no-look-ahead rule is then
  the author's to keep; `lookahead_free(strategy, data)` checks it on sample prefixes.
- `CandleStrategy.on_candle(bar)`: called once per candle, oldest first, with a `Bar` that
  shows the current candle and earlier ones only, so it cannot look ahead. Slower (a Python
  call per candle), fine for a few hundred thousand candles.

Parameters are a frozen dataclass with defaults; `__post_init__` validates them by raising
`InvalidParams` (`check` helps). docs/BACKTEST.md has a worked example.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from workers.backtest.data import BacktestData, Directions, Floats
from workers.backtest.errors import InvalidParams

P = TypeVar("P")
Bools = np.ndarray[Any, np.dtype[np.bool_]]


@dataclasses.dataclass(frozen=True)
class NoParams:
    pass


class Strategy(ABC, Generic[P]):
    #: The name the CLI and the reports use.
    name: ClassVar[str]
    #: The parameters' dataclass; every field has a default.
    params_type: ClassVar[type[Any]] = NoParams
    description: ClassVar[str] = ""

    def __init__(self, params: P | None = None) -> None:
        self.params: P = self.params_type() if params is None else params

    @abstractmethod
    def targets(self, data: BacktestData) -> Directions:
        """The target position (+1, 0, -1) at each candle's close; int8, one per candle."""

    def __repr__(self) -> str:
        return f"{self.name}({describe(self.params)})"


class Bar:
    """The current candle of a `CandleStrategy`, and its past: nothing later is reachable."""

    __slots__ = ("_data", "i", "position")

    def __init__(self, data: BacktestData) -> None:
        self._data = data
        self.i = 0  #: the candle's index in the run
        self.position = 0  #: the target the strategy gave last (+1, 0, -1)

    @property
    def open_time(self) -> int:
        return int(self._data.open_time[self.i])

    @property
    def open(self) -> float:
        return float(self._data.open[self.i])

    @property
    def high(self) -> float:
        return float(self._data.high[self.i])

    @property
    def low(self) -> float:
        return float(self._data.low[self.i])

    @property
    def close(self) -> float:
        return float(self._data.close[self.i])

    @property
    def volume(self) -> float:
        return float(self._data.volume[self.i])

    def value(self, key: str, ago: int = 0) -> float | None:
        """Indicator `key` (e.g. "rsi_14") `ago` candles back; None in warm-up or before
        the first candle."""
        if ago < 0:
            raise ValueError("ago must be >= 0: a strategy cannot see later candles")
        i = self.i - ago
        if i < 0:
            return None
        v = float(self._data.indicator(key)[i])
        return None if math.isnan(v) else v

    def closes(self, n: int) -> Floats:
        """The last `n` closes up to this candle (fewer at the start)."""
        return self._data.close[max(0, self.i + 1 - n):self.i + 1]

    def signal(self, name: str) -> str | None:
        """"bullish" or "bearish" when the stored signal `name` fired on this candle."""
        d = int(self._data.signal(name)[self.i])
        return "bullish" if d > 0 else "bearish" if d < 0 else None


class CandleStrategy(Strategy[P]):
    @abstractmethod
    def on_candle(self, bar: Bar) -> int | None:
        """The target after this candle closes (+1, 0, -1), or None to keep the last one."""

    def targets(self, data: BacktestData) -> Directions:
        out = np.zeros(len(data), np.int8)
        bar = Bar(data)
        for i in range(len(data)):
            bar.i = i
            want = self.on_candle(bar)
            if want is not None:
                if want not in (-1, 0, 1):
                    raise ValueError(f"{self.name}: on_candle returned {want!r}, not -1/0/1/None")
                bar.position = int(want)
            out[i] = bar.position
        return out


# -- parameters -----------------------------------------------------------------------------

def check(ok: bool, message: str) -> None:
    """For `__post_init__`: refuse a parameter value with a clear message."""
    if not ok:
        raise InvalidParams(message)


def describe(params: Any) -> str:
    """`fast=9, slow=21`."""
    return ", ".join(f"{f.name}={getattr(params, f.name)}" for f in dataclasses.fields(params))


def _convert(name: str, hint: Any, value: object) -> object:
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise InvalidParams(f"{name}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise InvalidParams(f"{name}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise InvalidParams(f"{name}: expected a number, got {value!r}") from None
    return str(value)


def parse_params(strategy: type[Strategy[Any]], raw: Mapping[str, object]) -> Any:
    """`strategy`'s parameters from `raw` (strings from the command line, or JSON values);
    what `raw` leaves out keeps its default."""
    params_type = strategy.params_type
    hints = typing.get_type_hints(params_type)
    known = [f.name for f in dataclasses.fields(params_type)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        have = describe(params_type()) or "none"
        raise InvalidParams(f"{strategy.name}: unknown parameter(s) {', '.join(unknown)}; "
                            f"its parameters (defaults): {have}")
    values = {k: _convert(k, hints[k], v) for k, v in raw.items()}
    try:
        return params_type(**values)
    except InvalidParams as exc:
        raise InvalidParams(f"{strategy.name}: {exc}") from None


# -- helpers for array strategies -------------------------------------------------------------

def _prev(x: Floats) -> Floats:
    out = np.empty_like(x)
    out[0] = np.nan
    out[1:] = x[:-1]
    return out


def crosses_above(a: Floats, b: Floats) -> Bools:
    """`a` crosses above `b` at this candle: gap <= 0 before, > 0 now (as core.signals)."""
    gap = a - b
    return (_prev(gap) <= 0) & (gap > 0)


def crosses_below(a: Floats, b: Floats) -> Bools:
    gap = a - b
    return (_prev(gap) >= 0) & (gap < 0)


def rises_through(x: Floats, level: float) -> Bools:
    """Below `level` before, at or above it now (core.signals' RSI rule)."""
    return (_prev(x) < level) & (x >= level)


def falls_through(x: Floats, level: float) -> Bools:
    return (_prev(x) > level) & (x <= level)


def hold(up: Bools, down: Bools) -> Directions:
    """+1 from each `up` candle, -1 from each `down` candle, until the next one; 0 before the
    first. A candle that is both keeps the previous target."""
    events = up.astype(np.int8) - down.astype(np.int8)
    idx = np.where(events != 0, np.arange(len(events)), -1)
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return np.where(last >= 0, events[np.maximum(last, 0)], 0).astype(np.int8)


def from_changes(n: int, changes: Sequence[tuple[int, int]]) -> Directions:
    """Targets for `n` candles from (index, new target) pairs in index order, 0 before."""
    out = np.zeros(n, np.int8)
    ends = [i for i, _ in changes[1:]] + [n]
    for (i, value), end in zip(changes, ends[:len(changes)], strict=True):
        out[i:end] = value
    return out


def lookahead_free(strategy: Strategy[Any], data: BacktestData, samples: int = 20,
                   seed: int = 0) -> bool:
    """True when the targets over each sampled prefix equal the full run's targets over that
    prefix: the strategy did not use a later candle for any of those decisions."""
    full = strategy.targets(data)
    rng = np.random.default_rng(seed)
    n = len(data)
    for cut in sorted(set(rng.integers(1, n + 1, size=min(samples, n)).tolist())):
        if not np.array_equal(strategy.targets(data.head(cut)), full[:cut]):
            return False
    return True
