"""A sink that only counts: for source behaviour (stopping, pacing) that does not involve the
broker. Everything that checks what reaches Kafka uses the real broker instead."""

from __future__ import annotations

import threading

from core.models import DeadLetter, Trade, TradeGap, TradeRecord


class CountingSink:
    def __init__(self, stop: threading.Event | None = None, stop_after: int = 0) -> None:
        self.trades = 0
        self.stop, self.stop_after = stop, stop_after

    def trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.stop is not None and self.trades == self.stop_after:
            self.stop.set()

    def trade_record(self, record: TradeRecord) -> None:
        raise AssertionError(record)  # only frame sources send records

    def dead_letter(self, letter: DeadLetter) -> None:
        raise AssertionError(letter)

    def gap(self, gap: TradeGap) -> None:
        raise AssertionError(gap)

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def flush(self, timeout: float = 60.0) -> None:
        pass
