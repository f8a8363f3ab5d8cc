from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import groupby

import orjson
import pytest

from core.candles import Candle, LateTrade, SymbolCandles
from core.timeframes import TIMEFRAME_MS
from producers.sources.recording import read_lines
from tests.conftest import HFT

ALL = ("1m", "5m", "15m", "1h", "4h", "1d")
Trade = tuple[float, float, int, bool]  # price, qty, ts, buyer_maker


def recorded_trades(symbol: str = "btcusdt") -> list[Trade]:
    """The real trades of the two spot files (they cross midnight: every timeframe rolls)."""
    out = []
    for name in (f"{symbol}_20240808.gz", f"{symbol}_20240809.gz"):
        for _, raw in read_lines(HFT / "spot" / name):
            if b"@trade" in raw[:40]:
                d = orjson.loads(raw)["data"]
                out.append((float(d["p"]), float(d["q"]), d["T"], d["m"]))
    return out


def offline(trades: Iterable[Trade], symbol: str, tf: str) -> list[Candle]:
    """The independent computation: group by range start, in trade order."""
    ms = TIMEFRAME_MS[tf]
    out = []
    for start, group in groupby(trades, key=lambda t: t[2] - t[2] % ms):
        g = list(group)
        taker = [t for t in g if not t[3]]
        out.append(Candle(
            symbol, tf, start, start + ms - 1, g[0][0], max(t[0] for t in g),
            min(t[0] for t in g), g[-1][0], math.fsum(t[1] for t in g),
            math.fsum(t[0] * t[1] for t in g), len(g), math.fsum(t[1] for t in taker),
            math.fsum(t[0] * t[1] for t in taker), True))
    return out


def assert_same(got: list[Candle], want: list[Candle]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.symbol, g.timeframe, g.open_time, g.close_time, g.trades, g.closed) == (
            w.symbol, w.timeframe, w.open_time, w.close_time, w.trades, w.closed)
        for name in ("open", "high", "low", "close", "volume", "quote_volume",
                     "taker_buy_volume", "taker_buy_quote_volume"):
            assert getattr(g, name) == pytest.approx(getattr(w, name), rel=1e-9, abs=1e-12), name


def run(trades: list[Trade], timeframes: tuple[str, ...] = ALL) -> list[Candle]:
    sc = SymbolCandles("BTCUSDT", timeframes)
    out: list[Candle] = []
    for price, qty, ts, maker in trades:
        assert sc.add(price, qty, ts, maker, 1, out) is None
    sc.close_until(trades[-1][2] + 2 * TIMEFRAME_MS["1d"], out)
    return out


def test_real_trades_give_the_offline_candles_for_every_timeframe() -> None:
    trades = recorded_trades()
    got = run(trades)
    for tf in ALL:
        assert_same([c for c in got if c.timeframe == tf], offline(trades, "BTCUSDT", tf))
    # The recording crosses midnight, so the daily candle really rolled.
    assert [c.open_time for c in got if c.timeframe == "1d"] == [1723075200000, 1723161600000]


def test_forming_candles_equal_the_offline_candles_so_far() -> None:
    trades = recorded_trades()[:20_000]
    sc = SymbolCandles("BTCUSDT", ALL)
    out: list[Candle] = []
    for price, qty, ts, maker in trades:
        sc.add(price, qty, ts, maker, 1, out)
    forming = {c.timeframe: c for c in sc.forming()}
    for tf in ALL:
        want = offline(trades, "BTCUSDT", tf)[-1]
        want.closed = False
        assert_same([forming[tf]], [want])


def test_an_empty_minute_has_no_candle_and_the_next_opens_at_its_trade() -> None:
    t0 = 1_723_161_600_000
    got = run([(10.0, 1.0, t0 + 5_000, False), (11.0, 1.0, t0 + 3 * 60_000 + 7, True)], ("1m",))
    assert [(c.open_time, c.open) for c in got] == [(t0, 10.0), (t0 + 180_000, 11.0)]


def test_old_history_closes_by_event_time_only() -> None:
    sc = SymbolCandles("BTCUSDT", ("1m", "1h"))
    out: list[Candle] = []
    sc.add(10.0, 1.0, 1_500_000_000_000, False, 1, out)  # 2017: long past on the wall clock
    assert out == [] and len(sc.forming()) == 2
    sc.close_until(1_500_000_000_000 + 60_000, out)  # the partition's watermark moved on
    assert [c.timeframe for c in out] == ["1m"]


def test_late_trade_amends_the_held_candles_and_beyond_grace_is_reported() -> None:
    t0 = 1_723_161_600_000  # a 5m boundary
    sc = SymbolCandles("BTCUSDT", ("1m", "5m"), late_grace_ms=60_000)
    out: list[Candle] = []
    sc.add(10.0, 1.0, t0 + 1_000, False, 1, out)
    sc.add(12.0, 1.0, t0 + 61_000, False, 1, out)  # closes the first minute
    out.clear()
    assert sc.add(15.0, 2.0, t0 + 2_000, True, 1, out) is None  # late, inside the grace
    assert [(c.timeframe, c.high, c.volume, c.trades, c.close) for c in out] == [
        ("1m", 15.0, 3.0, 2, 15.0)]
    assert sc.late_amended == 1
    # The forming 5m candle holds the amended minute.
    five = next(c for c in sc.forming() if c.timeframe == "5m")
    assert (five.high, five.volume, five.trades) == (15.0, 4.0, 3)

    sc.add(13.0, 1.0, t0 + 200_000, False, 1, out)  # event time moves past the grace
    out.clear()
    late = sc.add(9.0, 1.0, t0 + 3_000, False, 1, out)
    assert late == LateTrade("BTCUSDT", t0 + 3_000, 9.0, 1.0) and out == []


def test_state_round_trip_mid_stream_gives_the_same_candles() -> None:
    import msgspec

    from core.candles import SymbolState, symbol_from_state, symbol_state

    trades = recorded_trades()
    straight = run(trades)
    sc = SymbolCandles("BTCUSDT", ALL)
    out: list[Candle] = []
    for i, (price, qty, ts, maker) in enumerate(trades):
        if i % 5_000 == 0:  # as if the process restarted from a checkpoint here
            wire = msgspec.json.encode(symbol_state(sc))
            sc = symbol_from_state("BTCUSDT", ALL, 60_000,
                                   msgspec.json.decode(wire, type=SymbolState))
        sc.add(price, qty, ts, maker, 1, out)
    sc.close_until(trades[-1][2] + 2 * TIMEFRAME_MS["1d"], out)
    assert out == straight
