"""Rule-based trading signals from two consecutive indicator rows (see docs/INDICATORS.md).

`evaluate(prev, cur, candle)` takes the engine's values for the previous and the current closed
candle of one symbol/timeframe and returns the signals that fire on the current one. Every rule
is an event (a crossing between the two rows), not a state, so a rule fires once per crossing,
not on every candle while a condition holds. Missing values (None, warm-up) never fire.

Strength is in [0, 1]. For crossings of two lines it is the speed of the crossing, measured
against the typical candle range (ATR): how far the gap between the lines moved in one candle,
with `CROSS_SPEED_FULL` ATRs counting as full strength.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from core.candles import Candle

Direction = Literal["bullish", "bearish"]
Row = Mapping[str, float | None]

RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0
RSI_MOVE_FULL = 10.0  # RSI points moved in the exit candle that count as full strength
CROSS_SPEED_FULL = 0.2  # gap change per candle, in ATRs, that counts as full strength

NAMES: tuple[str, ...] = (
    "rsi_oversold_exit",
    "rsi_overbought_exit",
    "macd_cross",
    "bollinger_breakout",
    "ema_9_21_cross",
    "golden_cross",
    "death_cross",
)


class Signal(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: str
    time: int  # the open_time of the candle the signal fired on
    name: str
    direction: Direction
    strength: float
    values: dict[str, float]  # the inputs the rule looked at


def _clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _ratio(x: float, full: float) -> float:
    """`x / full` clamped to [0, 1]; a zero scale (a flat market) makes any move decisive."""
    if full > 0:
        return _clamp(x / full)
    return 1.0 if x > 0 else 0.0


def _line_cross(
    prev: Row, cur: Row, fast: str, slow: str,
) -> tuple[Direction, float, dict[str, float]] | None:
    """The fast line crossing the slow one between `prev` and `cur`, its speed, the inputs."""
    pf, ps = prev.get(fast), prev.get(slow)
    f, s, atr = cur.get(fast), cur.get(slow), cur.get("atr_14")
    if pf is None or ps is None or f is None or s is None or atr is None:
        return None
    gap_prev = pf - ps
    gap = f - s
    if gap_prev <= 0 < gap:
        direction: Direction = "bullish"
    elif gap_prev >= 0 > gap:
        direction = "bearish"
    else:
        return None
    strength = _ratio(abs(gap - gap_prev), CROSS_SPEED_FULL * atr)
    return direction, strength, {fast: f, slow: s, "atr_14": atr, f"{fast}_prev": pf,
                                 f"{slow}_prev": ps}


def evaluate(prev: Row | None, cur: Row, candle: Candle) -> list[Signal]:
    """The signals firing on `candle`, whose indicator row is `cur` (`prev`: the row before)."""
    found: list[tuple[str, Direction, float, dict[str, float]]] = []

    upper, middle, lower = cur.get("bb_upper"), cur.get("bb_middle"), cur.get("bb_lower")
    if upper is not None and middle is not None and lower is not None:
        # The candle that breaks out: opened inside the band, closed beyond it. sigma is the
        # band's standard deviation (the bands are 2 sigma from the middle).
        sigma = (upper - lower) / 4
        o, c = candle.open, candle.close
        hit: tuple[Direction, float] | None = None
        if o <= upper < c:
            hit = ("bullish", _ratio(c - upper, sigma))
        elif o >= lower > c:
            hit = ("bearish", _ratio(lower - c, sigma))
        if hit is not None:
            found.append(("bollinger_breakout", *hit, {
                "bb_upper": upper, "bb_middle": middle, "bb_lower": lower, "open": o,
                "close": c}))

    if prev is not None:
        rsi_prev = prev.get("rsi_14")
        rsi = cur.get("rsi_14")
        if rsi_prev is not None and rsi is not None:
            if rsi_prev < RSI_OVERSOLD <= rsi:
                found.append(("rsi_oversold_exit", "bullish",
                              _ratio(rsi - rsi_prev, RSI_MOVE_FULL),
                              {"rsi_14": rsi, "rsi_14_prev": rsi_prev}))
            elif rsi_prev > RSI_OVERBOUGHT >= rsi:
                found.append(("rsi_overbought_exit", "bearish",
                              _ratio(rsi_prev - rsi, RSI_MOVE_FULL),
                              {"rsi_14": rsi, "rsi_14_prev": rsi_prev}))

        cross = _line_cross(prev, cur, "macd", "macd_signal")
        if cross is not None:
            found.append(("macd_cross", *cross))
        cross = _line_cross(prev, cur, "ema_9", "ema_21")
        if cross is not None:
            found.append(("ema_9_21_cross", *cross))
        cross = _line_cross(prev, cur, "sma_50", "sma_200")
        if cross is not None:
            direction, strength, vals = cross
            name = "golden_cross" if direction == "bullish" else "death_cross"
            found.append((name, direction, strength, vals))

    return [
        Signal(candle.symbol, candle.timeframe, candle.open_time, name, direction, strength, vals)
        for name, direction, strength, vals in found
    ]
