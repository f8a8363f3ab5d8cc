"""The path every input takes: validate, deduplicate, watch continuity, send to Kafka.

Sources call `frame()` with raw Binance frames (WebSocket, recordings) or `trade()` with
already-split fields (CSV rows, synthetic trades). Bad input goes to the dead-letter topic with
its reason and never stops the producer.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from core import metrics
from core.exceptions import InvalidInput
from core.models import SCHEMA_VERSION, DeadLetter, Trade, TradeGap, TradeRecord
from core.serde import dead_letter
from producers.continuity import ContinuityTracker, Gap
from producers.frames import FrameParser

log = logging.getLogger(__name__)


class Sink(Protocol):
    def trade(self, trade: Trade) -> None: ...
    def trade_record(self, record: TradeRecord) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def gap(self, gap: TradeGap) -> None: ...
    def poll(self, timeout: float = 0.0) -> None: ...
    def flush(self, timeout: float = 60.0) -> None: ...


@dataclass
class IngestStats:
    per_symbol: dict[str, int] = field(default_factory=dict)  # trades sent, by symbol
    skipped: int = 0  # frames that hold no trade (depth, bookTicker, snapshots, ...)
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def trades(self) -> int:
        return sum(self.per_symbol.values())

    @property
    def dead_letters(self) -> int:
        return sum(self.rejected.values())


class Ingestor:
    def __init__(self, sink: Sink, market: str, symbols: Collection[str], source: str) -> None:
        self.sink = sink
        self.market = market
        self.source = source
        self.parser = FrameParser(market, symbols)
        self.tracker = ContinuityTracker()
        self.stats = IngestStats()
        self._ingested = {
            s: metrics.TRADES_INGESTED.labels(source, s) for s in self.parser.symbols
        }
        self._reported: Counter[str] = Counter()
        # Bound once: this is the per-frame path (see benchmarks/producer_throughput.py).
        self._parse = self.parser.parse_record
        self._send = sink.trade_record
        self._last_ids = self.tracker.last_id
        self._counts = self.stats.per_symbol

    def frame(self, raw: bytes | str, recv_ts: int | None = None) -> TradeRecord | None:
        """Ingest one exchange frame; return the trade sent, or None (skipped or rejected)."""
        recv = int(time.time() * 1000) if recv_ts is None else recv_ts
        try:
            record = self._parse(raw, recv)
        except InvalidInput as exc:
            self.reject(raw, exc)
            return None
        if record is None:
            self.stats.skipped += 1
            return None
        symbol = record.symbol
        last = self._last_ids.get(symbol)
        # The common case, the next id in sequence, skips the tracker's general path.
        if last is not None and record.trade_id == last + 1:
            self._last_ids[symbol] = record.trade_id
        elif not self._continuity(symbol, record.trade_id, record.ts):
            return None
        self._send(record)
        self._counts[symbol] = self._counts.get(symbol, 0) + 1
        return record

    def trade(self, trade: Trade, raw: bytes | str) -> bool:
        """Ingest a trade a source built itself (already validated); False if a duplicate."""
        symbol = trade["symbol"]
        if symbol not in self.parser.symbols:
            self.reject(raw, InvalidInput("unknown_symbol", f"{symbol!r:.40}"))
            return False
        if not self._continuity(symbol, trade["trade_id"], trade["ts"]):
            return False
        self.sink.trade(trade)
        self._counts[symbol] = self._counts.get(symbol, 0) + 1
        return True

    def _continuity(self, symbol: str, trade_id: int, ts: int) -> bool:
        """False for a duplicate; reports a gap when the id jumps."""
        accepted, gap = self.tracker.observe(symbol, trade_id)
        if not accepted:
            self.stats.duplicates += 1
            metrics.DUPLICATES.labels(self.source).inc()
            return False
        if gap is not None:
            self._report_gap(gap, ts)
        return True

    def reject(self, raw: bytes | str, exc: InvalidInput) -> None:
        self.stats.rejected[exc.reason] += 1
        metrics.DEAD_LETTERS.labels(self.source, exc.reason).inc()
        now = int(time.time() * 1000)
        self.sink.dead_letter(dead_letter(raw, exc.reason, exc.detail, self.source, now))

    def _report_gap(self, gap: Gap, ts: int) -> None:
        self.stats.gaps += 1
        self.stats.missing += gap.missing
        metrics.TRADE_GAPS.labels(self.source, gap.symbol).inc()
        metrics.MISSING_TRADES.labels(self.source, gap.symbol).inc(gap.missing)
        log.warning(
            "%s: trade ids %d..%d missing (%d trades)",
            gap.symbol, gap.first_missing, gap.last_missing, gap.missing,
        )
        self.sink.gap(
            {
                "v": SCHEMA_VERSION,
                "exchange": "binance",
                "market": self.market,
                "symbol": gap.symbol,
                "first_missing": gap.first_missing,
                "last_missing": gap.last_missing,
                "missing": gap.missing,
                "detected_ts": ts,
                "source": self.source,
            }
        )

    def flush_metrics(self) -> None:
        """Bring the Prometheus counters up to date (sources call this about once a second:
        a counter costs ~1 µs per inc, too much for the per-trade path)."""
        for symbol, n in self._counts.items():
            delta = n - self._reported[symbol]
            counter = self._ingested.get(symbol)
            if delta and counter is not None:
                counter.inc(delta)
                self._reported[symbol] = n

    def close(self) -> None:
        self.flush_metrics()
        self.sink.flush()
