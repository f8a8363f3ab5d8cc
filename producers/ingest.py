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
from core.models import SCHEMA_VERSION, DeadLetter, Trade, TradeGap
from core.serde import dead_letter
from producers.continuity import ContinuityTracker, Gap
from producers.frames import FrameParser

log = logging.getLogger(__name__)


class Sink(Protocol):
    def trade(self, trade: Trade) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def gap(self, gap: TradeGap) -> None: ...
    def poll(self, timeout: float = 0.0) -> None: ...
    def flush(self, timeout: float = 60.0) -> None: ...


@dataclass
class IngestStats:
    trades: int = 0
    skipped: int = 0  # frames that hold no trade (depth, bookTicker, snapshots, ...)
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

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
        self._pending_metric: Counter[str] = Counter()

    def frame(self, raw: bytes | str, recv_ts: int | None = None) -> Trade | None:
        """Ingest one exchange frame; return the trade sent, or None (skipped or rejected)."""
        recv = int(time.time() * 1000) if recv_ts is None else recv_ts
        try:
            trade = self.parser.parse(raw, recv)
        except InvalidInput as exc:
            self.reject(raw, exc)
            return None
        if trade is None:
            self.stats.skipped += 1
            return None
        return trade if self._accept(trade) else None

    def trade(self, trade: Trade, raw: bytes | str) -> bool:
        """Ingest a trade a source built itself (already validated); False if a duplicate."""
        if trade["symbol"] not in self.parser.symbols:
            self.reject(raw, InvalidInput("unknown_symbol", f"{trade['symbol']!r:.40}"))
            return False
        return self._accept(trade)

    def _accept(self, trade: Trade) -> bool:
        symbol = trade["symbol"]
        accepted, gap = self.tracker.observe(symbol, trade["trade_id"])
        if not accepted:
            self.stats.duplicates += 1
            metrics.DUPLICATES.labels(self.source).inc()
            return False
        if gap is not None:
            self._report_gap(gap, trade["ts"])
        self.sink.trade(trade)
        self.stats.trades += 1
        self._pending_metric[symbol] += 1
        if self.stats.trades % 1000 == 0:
            self.flush_metrics()
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
        # Prometheus counters cost ~1 µs per inc; batch them off the per-trade path.
        for symbol, n in self._pending_metric.items():
            counter = self._ingested.get(symbol)
            if counter is not None:
                counter.inc(n)
        self._pending_metric.clear()

    def close(self) -> None:
        self.flush_metrics()
        self.sink.flush()
