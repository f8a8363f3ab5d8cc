"""Candlestick patterns ending at the latest closed candle (definitions: docs/INDICATORS.md).

`detect(candles)` looks at the last one to three candles of one symbol/timeframe (the caller
keeps a window of three) and returns every pattern whose last candle is `candles[-1]`.

Crypto markets trade around the clock, so a candle opens where the previous one closed: the
textbook conditions that need a price gap between candles (stars, engulfing opens) are relaxed to
"at or beyond" the previous close, and the star's body only has to sit below (above) the first
candle's close by its midpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from core.candles import Candle

PatternDirection = Literal["bullish", "bearish", "neutral"]

DOJI_BODY = 0.1  # doji: body at most this share of the range
SMALL_SHADOW = 0.1  # hammer/star: the short shadow at most this share of the range
LONG_SHADOW = 2.0  # hammer/star: the long shadow at least this many bodies
LONG_BODY = 0.5  # a "long" candle: body at least this share of its range
STAR_BODY = 0.3  # a star's body at most this share of the first candle's body

NAMES: tuple[str, ...] = (
    "doji",
    "hammer",
    "shooting_star",
    "bullish_engulfing",
    "bearish_engulfing",
    "morning_star",
    "evening_star",
    "three_white_soldiers",
    "three_black_crows",
)


class Pattern(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: str
    time: int  # open_time of the pattern's last candle
    start_time: int  # open_time of its first candle
    name: str
    direction: PatternDirection
    candles: int  # how many candles form it


class _Shape:
    """One candle's body and shadows."""

    __slots__ = ("bear", "body", "bull", "close", "high", "long", "low", "lower", "mid", "open",
                 "range", "upper")

    def __init__(self, c: Candle) -> None:
        o = self.open = c.open
        cl = self.close = c.close
        h = self.high = c.high
        lo = self.low = c.low
        rng = self.range = h - lo
        self.bull = cl > o
        self.bear = cl < o
        top, bottom = (cl, o) if cl > o else (o, cl)
        body = self.body = top - bottom
        self.upper = h - top
        self.lower = bottom - lo
        self.long = rng > 0 and body >= LONG_BODY * rng
        self.mid = (o + cl) / 2


def _doji(a: _Shape) -> bool:
    return a.range > 0 and a.body <= DOJI_BODY * a.range


def _hammer_shape(a: _Shape) -> bool:
    return (a.range > 0 and a.body > DOJI_BODY * a.range and a.lower >= LONG_SHADOW * a.body
            and a.upper <= SMALL_SHADOW * a.range)


def _star_shape(a: _Shape) -> bool:
    return (a.range > 0 and a.body > DOJI_BODY * a.range and a.upper >= LONG_SHADOW * a.body
            and a.lower <= SMALL_SHADOW * a.range)


def _engulfs(a: _Shape, b: _Shape) -> bool:
    """b's body covers a's body and is larger."""
    return (b.body > a.body and min(b.open, b.close) <= min(a.open, a.close)
            and max(b.open, b.close) >= max(a.open, a.close))


def _two(a: _Shape, b: _Shape) -> list[tuple[str, PatternDirection]]:
    out: list[tuple[str, PatternDirection]] = []
    # Trend context for the one-candle reversals: they must extend the previous candle's move.
    if _hammer_shape(b) and a.bear and b.low < a.low:
        out.append(("hammer", "bullish"))
    if _star_shape(b) and a.bull and b.high > a.high:
        out.append(("shooting_star", "bearish"))
    if a.bear and b.bull and _engulfs(a, b):
        out.append(("bullish_engulfing", "bullish"))
    if a.bull and b.bear and _engulfs(a, b):
        out.append(("bearish_engulfing", "bearish"))
    return out


def _three(a: _Shape, b: _Shape, c: _Shape) -> list[tuple[str, PatternDirection]]:
    out: list[tuple[str, PatternDirection]] = []
    small_star = b.body <= STAR_BODY * a.body
    if a.bear and a.long and small_star and b.mid <= a.close and c.bull and c.close > a.mid:
        out.append(("morning_star", "bullish"))
    if a.bull and a.long and small_star and b.mid >= a.close and c.bear and c.close < a.mid:
        out.append(("evening_star", "bearish"))
    if all(x.bull and x.long for x in (a, b, c)) and (
        a.open <= b.open <= a.close < b.close and b.open <= c.open <= b.close < c.close
    ):
        out.append(("three_white_soldiers", "bullish"))
    if all(x.bear and x.long for x in (a, b, c)) and (
        a.close <= b.open <= a.open and b.close < a.close
        and b.close <= c.open <= b.open and c.close < b.close
    ):
        out.append(("three_black_crows", "bearish"))
    return out


def detect(candles: Sequence[Candle]) -> list[Pattern]:
    """Patterns ending at `candles[-1]`; the candles are consecutive, oldest first."""
    if not candles:
        return []
    last = candles[-1]
    shapes = [_Shape(c) for c in candles[-3:]]
    found: list[tuple[str, PatternDirection, int]] = []
    if _doji(shapes[-1]):
        found.append(("doji", "neutral", 1))
    if len(shapes) >= 2:
        found.extend((n, d, 2) for n, d in _two(shapes[-2], shapes[-1]))
    if len(shapes) == 3:
        found.extend((n, d, 3) for n, d in _three(*shapes))
    return [
        Pattern(last.symbol, last.timeframe, last.open_time,
                candles[len(candles) - size].open_time, name, direction, size)
        for name, direction, size in found
    ]
