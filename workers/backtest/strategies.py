"""The built-in strategies and the registry the CLI, the Celery tasks and the API look names up
in. Each is event-driven, as the live signals are: it changes its target when something crosses,
and holds it otherwise. -1 means short, or flat when the backtest is long-only."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.signals import NAMES as SIGNAL_NAMES
from workers.backtest import features
from workers.backtest.data import BacktestData, Directions
from workers.backtest.errors import UnknownStrategy
from workers.backtest.strategy import (
    Strategy,
    check,
    crosses_above,
    crosses_below,
    describe,
    falls_through,
    from_changes,
    hold,
    parse_params,
    rises_through,
)


@dataclass(frozen=True)
class RsiParams:
    period: int = 14
    low: float = 30.0
    high: float = 70.0

    def __post_init__(self) -> None:
        check(self.period >= 2, f"period must be >= 2, got {self.period}")
        check(0 < self.low < self.high < 100,
              f"need 0 < low < high < 100, got low={self.low}, high={self.high}")


class RsiReversion(Strategy[RsiParams]):
    name = "rsi_reversion"
    params_type = RsiParams
    description = ("long when RSI rises through `low`; exit (or short) when it falls through "
                   "`high`")

    def targets(self, data: BacktestData) -> Directions:
        p = self.params
        r = features.rsi(data, p.period)
        return hold(rises_through(r, p.low), falls_through(r, p.high))


@dataclass(frozen=True)
class MacdParams:
    fast: int = 12
    slow: int = 26
    signal: int = 9

    def __post_init__(self) -> None:
        check(1 <= self.fast < self.slow, f"need 1 <= fast < slow, got fast={self.fast}, "
                                          f"slow={self.slow}")
        check(self.signal >= 1, f"signal must be >= 1, got {self.signal}")


class MacdCross(Strategy[MacdParams]):
    name = "macd_cross"
    params_type = MacdParams
    description = "long when MACD crosses above its signal line; exit (or short) below"

    def targets(self, data: BacktestData) -> Directions:
        p = self.params
        m, s = features.macd(data, p.fast, p.slow, p.signal)
        return hold(crosses_above(m, s), crosses_below(m, s))


@dataclass(frozen=True)
class EmaParams:
    fast: int = 9
    slow: int = 21

    def __post_init__(self) -> None:
        check(1 <= self.fast < self.slow, f"need 1 <= fast < slow, got fast={self.fast}, "
                                          f"slow={self.slow}")


class EmaCross(Strategy[EmaParams]):
    name = "ema_cross"
    params_type = EmaParams
    description = "long when EMA(fast) crosses above EMA(slow); exit (or short) below"

    def targets(self, data: BacktestData) -> Directions:
        fast = features.ema(data, self.params.fast)
        slow = features.ema(data, self.params.slow)
        return hold(crosses_above(fast, slow), crosses_below(fast, slow))


@dataclass(frozen=True)
class BollingerParams:
    window: int = 20
    num_std: float = 2.0
    exit_middle: bool = True

    def __post_init__(self) -> None:
        check(self.window >= 2, f"window must be >= 2, got {self.window}")
        check(self.num_std > 0, f"num_std must be > 0, got {self.num_std}")


class BollingerBreakout(Strategy[BollingerParams]):
    name = "bollinger_breakout"
    params_type = BollingerParams
    description = ("long on a candle that opens inside the upper band and closes above it, "
                   "short (or flat) on the mirror below the lower band; out when the close "
                   "crosses back over the middle band (exit_middle) or on the opposite breakout")

    def targets(self, data: BacktestData) -> Directions:
        p = self.params
        upper, middle, lower = features.bollinger(data, p.window, p.num_std)
        o, c = data.open, data.close
        up = (o <= upper) & (upper < c)  # core.signals' bollinger_breakout, bullish
        down = (o >= lower) & (lower > c)
        if not p.exit_middle:
            return hold(up, down)
        below, above = c < middle, c > middle
        changes: list[tuple[int, int]] = []
        state = 0
        # Only candles where something can happen; the exits are state-dependent, hence a loop.
        for i in np.flatnonzero(up | down | (below | above)).tolist():
            new = (1 if up[i] else -1 if down[i]
                   else 0 if (state == 1 and below[i]) or (state == -1 and above[i]) else state)
            if new != state:
                changes.append((i, new))
                state = new
        return from_changes(len(data), changes)


@dataclass(frozen=True)
class SignalParams:
    #: Stored signal names, comma-separated: bullish ones go long, bearish ones short/flat.
    name: str = "ema_9_21_cross"

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in SIGNAL_NAMES]
        check(bool(self.names) and not unknown,
              f"unknown signal(s) {', '.join(unknown) or '(none given)'}; "
              f"known: {', '.join(SIGNAL_NAMES)}")

    @property
    def names(self) -> list[str]:
        return [n.strip() for n in self.name.split(",") if n.strip()]


class SignalFollow(Strategy[SignalParams]):
    name = "signal"
    params_type = SignalParams
    description = "follows the run's stored signals (as the live pipeline emitted them)"

    def targets(self, data: BacktestData) -> Directions:
        total = np.zeros(len(data), np.int16)
        for name in self.params.names:
            total += data.signal(name)
        return hold(total > 0, total < 0)


STRATEGIES: dict[str, type[Strategy[Any]]] = {
    s.name: s for s in (RsiReversion, MacdCross, EmaCross, BollingerBreakout, SignalFollow)}


def register(strategy: type[Strategy[Any]]) -> type[Strategy[Any]]:
    """Adds a strategy under its `name` (usable as a class decorator)."""
    STRATEGIES[strategy.name] = strategy
    return strategy


def available() -> str:
    return "; ".join(f"{name} ({describe(s.params_type()) or 'no parameters'})"
                     for name, s in STRATEGIES.items())


def _imported(spec: str) -> type[Strategy[Any]]:
    """`package.module:ClassName`, a strategy class of the user's own."""
    module_name, _, attr = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownStrategy(f"cannot import strategy {spec!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Strategy)):
        raise UnknownStrategy(f"{spec!r} is not a Strategy subclass")
    return found


def make(name: str, params: Mapping[str, object] | None = None) -> Strategy[Any]:
    """The strategy `name` with `params` (strings or JSON values) over its defaults. `name` is
    a registered name, or `package.module:ClassName` for a strategy class of one's own."""
    cls = _imported(name) if ":" in name else STRATEGIES.get(name)
    if cls is None:
        raise UnknownStrategy(f"unknown strategy {name!r}; available: {available()}, "
                              "or package.module:ClassName")
    return cls(parse_params(cls, params or {}))
