from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from core.candles import Candle
from core.patterns import NAMES, Pattern, detect

DOC = (Path(__file__).resolve().parents[2] / "docs" / "INDICATORS.md").read_text()


def c(o: float, h: float, lo: float, cl: float, i: int = 0) -> Candle:
    t = i * 60_000
    return Candle("ETHUSDT", "5m", t, t + 59_999, o, h, lo, cl, 1.0, cl, 1, 0.5, cl / 2, True)


def seq(*ohlc: tuple[float, float, float, float]) -> list[Candle]:
    return [c(*x, i=i) for i, x in enumerate(ohlc)]


def names(candles: list[Candle]) -> set[str]:
    return {p.name for p in detect(candles)}


# A plain candle: long body, short shadows; neither doji nor hammer nor star.
PLAIN_DOWN = (110.0, 111.0, 99.0, 100.0)
PLAIN_UP = (100.0, 111.0, 99.0, 110.0)


def test_doji() -> None:
    [p] = detect(seq((100.0, 105.0, 95.0, 100.5)))  # body 0.5 of a range of 10
    assert (p.name, p.direction, p.candles, p.time, p.start_time) == ("doji", "neutral", 1, 0, 0)
    assert (p.symbol, p.timeframe) == ("ETHUSDT", "5m")
    assert "doji" in names(seq((100.0, 105.0, 95.0, 100.0)))  # open == close
    assert "doji" not in names(seq((100.0, 105.0, 95.0, 101.5)))  # body 15% of the range
    assert names(seq((100.0, 100.0, 100.0, 100.0))) == set()  # no range, no shape


def test_hammer_after_a_falling_candle() -> None:
    hammer = (100.0, 102.2, 90.0, 102.0)  # body 2, lower shadow 10, upper 0.2 of 12.2
    [p] = detect(seq(PLAIN_DOWN, hammer))
    assert (p.name, p.direction, p.candles, p.start_time, p.time) == (
        "hammer", "bullish", 2, 0, 60_000)
    # The same shape after a rise is a hanging man, not a hammer; without a lower low neither.
    assert "hammer" not in names(seq(PLAIN_UP, hammer))
    assert "hammer" not in names(seq((110.0, 111.0, 89.0, 100.0), hammer))
    assert "hammer" not in names(seq(hammer))
    # Shape limits: a long upper shadow, or a lower shadow under two bodies.
    assert "hammer" not in names(seq(PLAIN_DOWN, (100.0, 104.0, 90.0, 102.0)))
    assert "hammer" not in names(seq(PLAIN_DOWN, (100.0, 106.2, 93.0, 106.0)))


def test_shooting_star_after_a_rising_candle() -> None:
    star = (110.0, 122.0, 109.8, 112.0)  # body 2, upper shadow 10, lower 0.2
    [p] = detect(seq(PLAIN_UP, star))
    assert (p.name, p.direction, p.candles) == ("shooting_star", "bearish", 2)
    assert "shooting_star" not in names(seq(PLAIN_DOWN, star))
    assert "shooting_star" not in names(seq((100.0, 123.0, 99.0, 110.0), star))  # no higher high
    assert "shooting_star" not in names(seq(PLAIN_UP, (110.0, 122.0, 106.0, 112.0)))


def test_bullish_engulfing() -> None:
    [p] = detect(seq((105.0, 106.0, 99.0, 100.0), (100.0, 108.0, 99.5, 107.0)))
    assert (p.name, p.direction, p.candles) == ("bullish_engulfing", "bullish", 2)
    # The second body must cover the first: here it closes below the first open.
    assert "bullish_engulfing" not in names(seq((105.0, 106.0, 99.0, 100.0),
                                                (100.0, 105.0, 99.5, 104.0)))
    # Two rising candles are no engulfing.
    assert "bullish_engulfing" not in names(seq((100.0, 106.0, 99.0, 105.0),
                                                (100.0, 108.0, 99.5, 107.0)))


def test_bearish_engulfing() -> None:
    [p] = detect(seq((100.0, 106.0, 99.0, 105.0), (105.0, 106.0, 97.0, 98.0)))
    assert (p.name, p.direction) == ("bearish_engulfing", "bearish")
    assert "bearish_engulfing" not in names(seq((100.0, 106.0, 99.0, 105.0),
                                                (105.0, 106.0, 100.0, 101.0)))


def test_morning_star() -> None:
    candles = seq((110.0, 111.0, 99.0, 100.0), (99.0, 101.0, 97.0, 99.5),
                  (99.5, 108.0, 98.5, 107.0))
    found = detect(candles)
    assert [(p.name, p.direction, p.candles, p.start_time, p.time) for p in found] == [
        ("morning_star", "bullish", 3, 0, 120_000)]
    # The third candle must close above the middle of the first body (105).
    assert "morning_star" not in names([*candles[:2], c(99.5, 104.0, 98.5, 103.0, 2)])
    # The star's body must be small next to the first body.
    assert "morning_star" not in names([candles[0], c(100.0, 101.0, 93.0, 95.0, 1), candles[2]])
    # The first candle must fall with a long body.
    assert "morning_star" not in names([c(110.0, 120.0, 90.0, 100.0), *candles[1:]])


def test_evening_star() -> None:
    candles = seq((100.0, 111.0, 99.0, 110.0), (111.0, 113.0, 109.0, 110.5),
                  (110.5, 111.5, 102.0, 103.0))
    [p] = detect(candles)
    assert (p.name, p.direction, p.candles) == ("evening_star", "bearish", 3)
    assert "evening_star" not in names([*candles[:2], c(110.5, 111.5, 106.0, 107.0, 2)])
    assert "evening_star" not in names([candles[0], c(108.0, 113.0, 107.0, 109.0, 1),
                                        candles[2]])  # the star sits below the first close


def test_three_white_soldiers() -> None:
    candles = seq((100.0, 105.5, 99.5, 105.0), (105.0, 110.5, 104.5, 110.0),
                  (110.0, 115.5, 109.5, 115.0))
    [p] = detect(candles)
    assert (p.name, p.direction, p.candles) == ("three_white_soldiers", "bullish", 3)
    # A short third body (a long upper shadow) breaks it, so does a lower close.
    assert "three_white_soldiers" not in names([*candles[:2], c(110.0, 120.0, 109.5, 111.0, 2)])
    assert "three_white_soldiers" not in names([*candles[:2], c(110.0, 110.0, 104.0, 109.5, 2)])
    # The second candle must open within the first body.
    assert "three_white_soldiers" not in names([candles[0], c(106.0, 110.5, 105.5, 110.0, 1),
                                                candles[2]])


def test_three_black_crows() -> None:
    candles = seq((115.0, 115.5, 109.5, 110.0), (110.0, 110.5, 104.5, 105.0),
                  (105.0, 105.5, 99.5, 100.0))
    [p] = detect(candles)
    assert (p.name, p.direction, p.candles) == ("three_black_crows", "bearish", 3)
    assert "three_black_crows" not in names([*candles[:2], c(105.0, 106.0, 104.0, 104.5, 2)])
    assert "three_black_crows" not in names([candles[0], c(116.0, 116.5, 104.5, 105.0, 1),
                                             candles[2]])


def test_plain_candles_and_short_windows_have_no_pattern() -> None:
    assert detect([]) == []
    assert detect(seq(PLAIN_UP)) == []
    assert detect(seq(PLAIN_UP, PLAIN_UP)) == []


def test_only_the_last_three_candles_count() -> None:
    soldiers = seq((100.0, 105.5, 99.5, 105.0), (105.0, 110.5, 104.5, 110.0),
                   (110.0, 115.5, 109.5, 115.0))
    longer = [c(120.0, 121.0, 119.0, 119.5, -1), *soldiers]
    assert names(longer) == {"three_white_soldiers"}
    assert detect(longer)[0].start_time == 0


def test_random_candles_give_known_patterns_only() -> None:
    rng = np.random.default_rng(3)
    price = 100.0
    window: list[Candle] = []
    seen = set()
    for i in range(20_000):
        o = price
        cl = o * float(np.exp(rng.standard_normal() * 0.01))
        h = max(o, cl) * (1 + float(rng.exponential(0.004)))
        lo = min(o, cl) * (1 - float(rng.exponential(0.004)))
        window = [*window[-2:], c(o, h, lo, cl, i)]
        for p in detect(window):
            assert p.name in NAMES and p.time == window[-1].open_time
            assert msgspec.json.decode(msgspec.json.encode(p), type=Pattern) == p
            seen.add(p.name)
        price = cl
    assert seen == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_pattern_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC
