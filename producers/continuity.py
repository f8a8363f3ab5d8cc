"""Trade-id continuity per symbol: drops duplicates and reports gaps.

Binance trade ids (and aggTrade ids) are contiguous per symbol, so an id at or below the last
one seen is a duplicate (for example from the overlap of two connections during a switch-over)
and an id more than one above it means trades were lost in between.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gap:
    symbol: str
    first_missing: int
    last_missing: int

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1


class ContinuityTracker:
    def __init__(self) -> None:
        self.last_id: dict[str, int] = {}
        self.duplicates = 0
        self.gaps: list[Gap] = []

    def observe(self, symbol: str, trade_id: int) -> tuple[bool, Gap | None]:
        """(accept the trade?, the gap it reveals or None)."""
        last = self.last_id.get(symbol)
        if last is not None:
            if trade_id <= last:
                self.duplicates += 1
                return False, None
            if trade_id > last + 1:
                gap = Gap(symbol, last + 1, trade_id - 1)
                self.gaps.append(gap)
                self.last_id[symbol] = trade_id
                return True, gap
        self.last_id[symbol] = trade_id
        return True, None
