"""Candle timeframes: their names (Binance's kline intervals) and lengths in milliseconds."""

from __future__ import annotations

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

TIMEFRAME_MS: dict[str, int] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
}


def parse_timeframes(raw: str) -> tuple[str, ...]:
    """Parse a comma list such as `1m,5m,1h`; order by length, no duplicates."""
    names = {s.strip() for s in raw.split(",") if s.strip()}
    unknown = sorted(names - TIMEFRAME_MS.keys())
    if unknown:
        raise ValueError(
            f"unknown timeframe(s) {', '.join(unknown)}; allowed: {', '.join(TIMEFRAME_MS)}"
        )
    if not names:
        raise ValueError("needs at least one timeframe")
    return tuple(sorted(names, key=TIMEFRAME_MS.__getitem__))


def open_time(ts_ms: int, timeframe: str) -> int:
    """Start of the candle holding `ts_ms` (epoch-aligned, UTC, as Binance)."""
    length = TIMEFRAME_MS[timeframe]
    return ts_ms - ts_ms % length
