"""Candles: the Binance kline contract and the event-time aggregation of trades into them.

A candle covers `[open_time, open_time + timeframe)`; `close_time` is the last millisecond of
that range, as in Binance's klines, and `open_time` is the start of the range even when the first
trade came later. A range with no trade has no candle; the next candle opens at its own first
trade. Candles close by event time: a trade (or the partition's watermark) at or past the end.

Only the smallest timeframe is built trade by trade. Each longer timeframe is the merge of the
closed base candles of its range, plus the forming base candle when someone asks for the live
value: per trade that is one update instead of one per timeframe, and merging is exact (max, min,
sums; the first open and last close).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from core.timeframes import TIMEFRAME_MS


class Candle(msgspec.Struct, gc=False):
    symbol: str
    timeframe: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float
    closed: bool = False


class Bar:
    """A candle being built (mutable, slotted: it is updated once per trade).

    `first_ts`/`last_ts` are the times of the first and last trade, so a late trade can move
    the open or the close correctly when it amends a candle.
    """

    __slots__ = ("close", "first_ts", "high", "last_ts", "low", "open", "open_time", "qv",
                 "tbq", "tbv", "trades", "volume")

    def __init__(self, open_time: int, price: float, qty: float, ts: int, buyer_maker: bool,
                 count: int) -> None:
        qv = price * qty
        self.open_time = open_time
        self.open = self.high = self.low = self.close = price
        self.first_ts = self.last_ts = ts
        self.volume = qty
        self.qv = qv
        self.trades = count
        self.tbv = 0.0 if buyer_maker else qty
        self.tbq = 0.0 if buyer_maker else qv

    def add(self, price: float, qty: float, ts: int, buyer_maker: bool, count: int) -> None:
        """A trade of this candle's range, in any order."""
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        if ts >= self.last_ts:
            self.close, self.last_ts = price, ts
        elif ts < self.first_ts:
            self.open, self.first_ts = price, ts
        qv = price * qty
        self.volume += qty
        self.qv += qv
        self.trades += count
        if not buyer_maker:
            self.tbv += qty
            self.tbq += qv

    def merge(self, other: Bar) -> None:
        """Fold in a candle of a sub-range (a base candle into a longer one)."""
        if other.high > self.high:
            self.high = other.high
        if other.low < self.low:
            self.low = other.low
        if other.last_ts >= self.last_ts:
            self.close, self.last_ts = other.close, other.last_ts
        if other.first_ts < self.first_ts:
            self.open, self.first_ts = other.open, other.first_ts
        self.volume += other.volume
        self.qv += other.qv
        self.trades += other.trades
        self.tbv += other.tbv
        self.tbq += other.tbq

    def copy(self, open_time: int | None = None) -> Bar:
        bar = Bar.__new__(Bar)
        for name in Bar.__slots__:
            setattr(bar, name, getattr(self, name))
        if open_time is not None:
            bar.open_time = open_time
        return bar

    def candle(self, symbol: str, timeframe: str, closed: bool) -> Candle:
        return Candle(
            symbol, timeframe, self.open_time, self.open_time + TIMEFRAME_MS[timeframe] - 1,
            self.open, self.high, self.low, self.close, self.volume, self.qv, self.trades,
            self.tbv, self.tbq, closed,
        )


@dataclass
class LateTrade:
    """A trade older than every candle still held for amendment: the caller must route it
    (dead-letter topic, counter), never drop it silently."""

    symbol: str
    ts: int
    price: float
    qty: float


@dataclass
class SymbolCandles:
    """Every timeframe's candles of one symbol. `timeframes` is sorted, shortest first; each
    must be a whole multiple of the first (true of all Binance intervals above 1s/1m)."""

    symbol: str
    timeframes: Sequence[str]
    late_grace_ms: int = 60_000
    base: Bar | None = None
    # Longer timeframes: the merge of their range's closed base candles.
    partial: dict[str, Bar] = field(default_factory=dict)
    # Closed candles kept for amendment by late trades, per timeframe, oldest first.
    recent: dict[str, OrderedDict[int, Bar]] = field(default_factory=dict)
    late_amended: int = 0

    def __post_init__(self) -> None:
        self.base_tf = self.timeframes[0]
        self.base_ms = TIMEFRAME_MS[self.base_tf]
        self.longer = [(tf, TIMEFRAME_MS[tf]) for tf in self.timeframes[1:]]
        for tf in self.timeframes:
            self.recent.setdefault(tf, OrderedDict())

    def add(self, price: float, qty: float, ts: int, buyer_maker: bool, count: int,
            out: list[Candle]) -> LateTrade | None:
        """Add one trade; append to `out` the candles it closes or amends (closed=True)."""
        base = self.base
        if base is not None:
            start = base.open_time
            if start <= ts < start + self.base_ms:
                base.add(price, qty, ts, buyer_maker, count)
                return None
            if ts < start:
                return self._late(price, qty, ts, buyer_maker, count, out)
            self.close_until(ts, out)
        self.base = Bar(ts - ts % self.base_ms, price, qty, ts, buyer_maker, count)
        return None

    def close_until(self, event_ts: int, out: list[Candle]) -> None:
        """Close every candle whose range ends at or before `event_ts`."""
        base = self.base
        if base is not None and event_ts >= base.open_time + self.base_ms:
            self._hold(self.base_tf, base, out)
            for tf, ms in self.longer:
                start = base.open_time - base.open_time % ms
                held = self.partial.get(tf)
                if held is None:
                    self.partial[tf] = base.copy(open_time=start)
                else:
                    held.merge(base)
            self.base = None
        for tf, ms in self.longer:
            held = self.partial.get(tf)
            if held is not None and event_ts >= held.open_time + ms:
                self._hold(tf, held, out)
                del self.partial[tf]
        self._expire(event_ts)

    def forming(self) -> list[Candle]:
        """The live candle of every timeframe that has one (closed=False)."""
        base = self.base
        out = []
        if base is not None:
            out.append(base.candle(self.symbol, self.base_tf, False))
        for tf, ms in self.longer:
            held = self.partial.get(tf)
            if base is None:
                if held is None:
                    continue
                bar = held
            else:
                # A base candle in a new range has already closed the previous `held`.
                bar = base.copy(open_time=base.open_time - base.open_time % ms)
                if held is not None:
                    bar.merge(held)
            out.append(bar.candle(self.symbol, tf, False))
        return out

    def _hold(self, tf: str, bar: Bar, out: list[Candle]) -> None:
        self.recent[tf][bar.open_time] = bar
        out.append(bar.candle(self.symbol, tf, True))

    def _expire(self, event_ts: int) -> None:
        for tf, held in self.recent.items():
            ms = TIMEFRAME_MS[tf]
            while held:
                open_time = next(iter(held))
                if open_time + ms + self.late_grace_ms > event_ts:
                    break
                del held[open_time]

    def _late(self, price: float, qty: float, ts: int, buyer_maker: bool, count: int,
              out: list[Candle]) -> LateTrade | None:
        bar = self.recent[self.base_tf].get(ts - ts % self.base_ms)
        if bar is None:
            return LateTrade(self.symbol, ts, price, qty)
        bar.add(price, qty, ts, buyer_maker, count)
        out.append(bar.candle(self.symbol, self.base_tf, True))
        for tf, ms in self.longer:
            start = ts - ts % ms
            held = self.partial.get(tf)
            if held is not None and held.open_time == start:
                held.add(price, qty, ts, buyer_maker, count)  # still open: nothing to emit
                continue
            closed = self.recent[tf].get(start)
            if closed is not None:
                closed.add(price, qty, ts, buyer_maker, count)
                out.append(closed.candle(self.symbol, tf, True))
        self.late_amended += 1
        return None


# Checkpoint form: plain lists, so a partition's candles survive a crash or move on rebalance.
BarState = list[float | int]


class SymbolState(msgspec.Struct):
    base: BarState | None
    partial: dict[str, BarState]
    recent: dict[str, list[BarState]]
    late_amended: int


def bar_state(bar: Bar) -> BarState:
    return [getattr(bar, name) for name in Bar.__slots__]


def bar_from_state(values: BarState) -> Bar:
    bar = Bar.__new__(Bar)
    for name, value in zip(Bar.__slots__, values, strict=True):
        setattr(bar, name, value)
    return bar


def symbol_state(sc: SymbolCandles) -> SymbolState:
    return SymbolState(
        None if sc.base is None else bar_state(sc.base),
        {tf: bar_state(b) for tf, b in sc.partial.items()},
        {tf: [bar_state(b) for b in held.values()] for tf, held in sc.recent.items()},
        sc.late_amended,
    )


def symbol_from_state(symbol: str, timeframes: Sequence[str], late_grace_ms: int,
                      state: SymbolState) -> SymbolCandles:
    """Rebuild a symbol's candles; timeframes no longer configured are dropped."""
    sc = SymbolCandles(symbol, timeframes, late_grace_ms)
    sc.base = None if state.base is None else bar_from_state(state.base)
    sc.partial = {tf: bar_from_state(v) for tf, v in state.partial.items() if tf in timeframes}
    for tf, bars in state.recent.items():
        if tf in sc.recent:
            for values in bars:
                bar = bar_from_state(values)
                sc.recent[tf][bar.open_time] = bar
    sc.late_amended = state.late_amended
    return sc
