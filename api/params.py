"""Query parameters the REST routes share, checked with messages that say what is allowed.

FastAPI's own validation answers 422 for a wrong type; everything that needs the configuration
(which symbols, which timeframes) or relates two parameters (start after end) is checked here and
answered 400 with the allowed values named.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.exceptions import AlphaPlusError
from core.settings import Settings

# Year 3000: far enough for any query, small enough that PostgreSQL's timestamps never overflow.
MAX_TIME_MS = 32_503_680_000_000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


# Run ids (`live`, a replay's) and report ids: what core.replays and the backtest store make.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# ASCII digits only: str.isdigit() also takes "²", which int() refuses.
_EPOCH_MS = re.compile(r"-?[0-9]+")


class BadRequest(AlphaPlusError):
    """A request parameter is wrong; the message says which and what is allowed (HTTP 400)."""


def symbol(settings: Settings, raw: str) -> str:
    value = raw.strip().upper()
    if value not in settings.symbols:
        raise BadRequest(f"unknown symbol {raw!r}: this server has "
                         f"{', '.join(settings.symbols)}")
    return value


def timeframe(settings: Settings, raw: str) -> str:
    value = raw.strip()
    if value not in settings.timeframes:
        raise BadRequest(f"unknown timeframe {raw!r}: this server has "
                         f"{', '.join(settings.timeframes)}")
    return value


def identifier(name: str, raw: str) -> str:
    """A run or report id: letters, digits, `.`, `_`, `-` (checked before any query: a NUL
    byte, say, is something PostgreSQL refuses outright)."""
    if not _IDENTIFIER.fullmatch(raw):
        raise BadRequest(f"{name}={raw[:100]!r} is not an id: letters, digits, '.', '_' and "
                         "'-', at most 100, starting with a letter or digit")
    return raw


def time_ms(name: str, raw: str | None, default: int) -> int:
    """Epoch milliseconds, or an ISO 8601 time (a time without offset is UTC)."""
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    if _EPOCH_MS.fullmatch(text):
        # More digits than any time in range can have: out of range, without int() (which
        # refuses strings above 4,300 digits with a ValueError).
        value = int(text) if len(text) <= 20 else MAX_TIME_MS + 1
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"{name}={raw!r} is neither epoch milliseconds nor an ISO 8601 "
                             "time (e.g. 1700000000000 or 2024-01-31T12:00:00Z)") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = int(parsed.timestamp() * 1000)
    if not 0 <= value <= MAX_TIME_MS:
        raise BadRequest(f"{name}={raw!r} is out of range: between 1970 and the year 3000")
    return value


def time_range(start: str | None, end: str | None) -> tuple[int, int]:
    lo = time_ms("start", start, 0)
    hi = time_ms("end", end, MAX_TIME_MS)
    if lo > hi:
        raise BadRequest(f"start ({lo}) is after end ({hi})")
    return lo, hi
