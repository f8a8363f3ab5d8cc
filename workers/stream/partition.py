"""One Kafka partition's share of the stream stage: trades in, candles out, no I/O.

Everything a partition needs to resume after a crash or to move to another process on rebalance
is in `PartitionCheckpoint`: its symbols' open candles, the last trade id per symbol, and the
offset of the next message. The stage stores it (Redis) before it commits that offset (Kafka),
so a restart resumes exactly where the stored state ends: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from core.candles import Candle, LateTrade, SymbolCandles, SymbolState, symbol_from_state
from core.candles import symbol_state as to_symbol_state
from core.models import TradeRecord
from core.validation import MAX_FUTURE_MS, MAX_TRADE_ID, MIN_TS_MS, record_problem

# A symbol counts as live when its trades arrive within this of their own trade time; only
# then may the wall clock close its candles (a replay of 2019 must never be closed by 2026).
LIVE_LAG_MS = 60_000

_decode_trade = msgspec.json.Decoder(TradeRecord).decode


class PartitionCheckpoint(msgspec.Struct):
    offset: int  # the next message to read
    symbols: dict[str, SymbolState]
    last_ids: dict[str, int]
    topic_id: str = ""  # of the topic the offset belongs to ("": unknown)


@dataclass
class Rejected:
    raw: bytes
    reason: str
    detail: str


@dataclass
class BatchResult:
    closed: list[Candle] = field(default_factory=list)  # closed or amended, in order
    trades: list[TradeRecord] = field(default_factory=list)
    late: list[tuple[bytes, LateTrade]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    touched: set[str] = field(default_factory=set)  # symbols whose forming candle changed


class PartitionProcessor:
    def __init__(self, partition: int, timeframes: Sequence[str], late_grace_ms: int,
                 offset: int = -1) -> None:
        self.partition = partition
        self.timeframes = tuple(timeframes)
        self.late_grace_ms = late_grace_ms
        self.offset = offset  # next offset to read; -1 until the first message
        self.symbols: dict[str, SymbolCandles] = {}
        self.last_ids: dict[str, int] = {}
        # Per symbol: (last trade time, wall clock when it was processed), for quiet closes.
        self.seen: dict[str, tuple[int, int]] = {}
        self.known_symbols: set[str] = set()  # found well formed
        self.topic_id = ""

    def process(self, messages: Sequence[tuple[int, bytes]]) -> BatchResult:
        """Apply (offset, value) messages of this partition, in order."""
        result = BatchResult()
        closed = result.closed
        symbols = self.symbols
        last_ids = self.last_ids
        # Per symbol, the time of its last trade applied in this batch: `touched` and `seen`
        # are set from it once per batch instead of once per trade.
        last_ts: dict[str, int] = {}
        now = int(time.time() * 1000)
        latest_ts = now + MAX_FUTURE_MS
        known = self.known_symbols
        inf = math.inf
        for offset, value in messages:
            self.offset = offset + 1
            try:
                trade = _decode_trade(value)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                # msgspec lets a UnicodeDecodeError out for bad UTF-8 inside a string.
                result.rejected.append(Rejected(value, "bad_schema", str(exc)[:200]))
                continue
            try:
                price = float(trade.price)
                qty = float(trade.qty)
            except ValueError:
                result.rejected.append(Rejected(value, "bad_schema", "price/qty not numbers"))
                continue
            symbol = trade.symbol
            trade_id = trade.trade_id
            # Anything can write to the topic: values are checked again (the comparisons
            # inline, the call only for the rare record that fails one), and before the
            # duplicate check, since a huge id would pass every later id off as a duplicate.
            if not (0.0 < price < inf and 0.0 < qty < inf and 0 <= trade_id <= MAX_TRADE_ID
                    and MIN_TS_MS <= trade.ts <= latest_ts and symbol in known):
                problem = record_problem(trade, price, qty, known, now)
                if problem is not None:
                    result.rejected.append(Rejected(value, *problem))
                    continue
            last = last_ids.get(symbol)
            # Binance ids grow per symbol: an id seen before is a re-delivery (a producer that
            # re-sent after a restart), and counting it again would corrupt the candle.
            if last is not None and trade_id <= last:
                result.duplicates += 1
                continue
            last_ids[symbol] = trade_id
            sc = symbols.get(symbol)
            if sc is None:
                sc = symbols[symbol] = SymbolCandles(symbol, self.timeframes, self.late_grace_ms)
            count = 1
            if trade.first_trade_id is not None and trade.last_trade_id is not None:
                count = trade.last_trade_id - trade.first_trade_id + 1
            late = sc.add(price, qty, trade.ts, trade.buyer_maker, count, closed)
            if late is not None:
                result.late.append((value, late))
                continue
            result.trades.append(trade)
            last_ts[symbol] = trade.ts
        if last_ts:
            result.touched.update(last_ts)
            seen = self.seen
            for symbol, ts in last_ts.items():
                seen[symbol] = (ts, now)
        return result

    def close_quiet(self, now_ms: int, grace_ms: int, out: list[Candle]) -> None:
        """Close the candles of live symbols that went quiet, by the wall clock."""
        for symbol, (last_ts, seen_at) in self.seen.items():
            if seen_at - last_ts > LIVE_LAG_MS:
                continue  # history: closed by its own trades only
            self.symbols[symbol].close_until(last_ts + (now_ms - seen_at) - grace_ms, out)

    def checkpoint(self) -> PartitionCheckpoint:
        return PartitionCheckpoint(
            self.offset,
            {s: to_symbol_state(sc) for s, sc in self.symbols.items()},
            dict(self.last_ids),
            self.topic_id,
        )

    @classmethod
    def restore(cls, partition: int, timeframes: Sequence[str], late_grace_ms: int,
                cp: PartitionCheckpoint) -> PartitionProcessor:
        proc = cls(partition, timeframes, late_grace_ms, cp.offset)
        proc.symbols = {
            s: symbol_from_state(s, proc.timeframes, late_grace_ms, st)
            for s, st in cp.symbols.items()
        }
        proc.last_ids = dict(cp.last_ids)
        proc.topic_id = cp.topic_id
        return proc
