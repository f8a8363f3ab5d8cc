"""Field checks shared by every source and by the stream stage: a value either passes or
raises `InvalidInput` (or, for a decoded record, gets a reason).

These run once per trade on the hot path, so each check is a few comparisons, not a schema
library call. Reasons are short codes (they become dead-letter `reason` and a metric label).
The producers check what the exchange sends; the stream stage checks again what it reads from
`market.trades`, because anything can write to a Kafka topic.
"""

from __future__ import annotations

import math
import re
import time

from core.exceptions import InvalidInput
from core.models import TradeRecord

# Binance launched in July 2017; nothing older is a real trade.
MIN_TS_MS = 1_499_990_400_000
# Tolerated clock difference between the exchange and this machine.
MAX_FUTURE_MS = 60 * 60 * 1000
MAX_DECIMAL_LEN = 40
# PostgreSQL's bigint, and what every consumer of the trades topic can hold: a larger id would
# also pass every later id of its symbol off as a duplicate (continuity keeps the largest).
MAX_TRADE_ID = 2**63 - 1
# Exchange symbols: BTCUSDT, 1000SATSUSDT. Anything else cannot name a Redis key or a row.
SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
# Plain decimals only: float() would also accept "1e3", "1_000", " 5", "nan" and "inf".
_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,20})?")

REASONS = (
    "bad_json",
    "bad_schema",
    "unknown_symbol",
    "bad_trade_id",
    "bad_price",
    "bad_qty",
    "bad_timestamp",
    "bad_side",
    "bad_encoding",
    "oversized",
)


def check_decimal(value: object, reason: str) -> str:
    """A positive, finite decimal string such as "61800.30"."""
    if (
        type(value) is not str
        or len(value) > MAX_DECIMAL_LEN
        or _DECIMAL.fullmatch(value) is None
    ):
        raise InvalidInput(reason, f"not a plain positive decimal string: {value!r:.60}")
    number = float(value)
    if not 0.0 < number < math.inf:
        raise InvalidInput(reason, f"must be > 0 and finite: {value!r:.60}")
    return value


def check_trade_id(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TRADE_ID:
        raise InvalidInput("bad_trade_id",
                           f"must be an integer from 0 to 2**63-1: {value!r:.60}")
    return value


def check_timestamp_ms(value: int, now_ms: int | None = None) -> int:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if not MIN_TS_MS <= value <= now + MAX_FUTURE_MS:
        raise InvalidInput(
            "bad_timestamp", f"{value} ms is before 2017-07-15 or more than 1 h in the future"
        )
    return value


def split_timestamp(value: object) -> tuple[int, int | None]:
    """Binance sends ms by default and µs with `timeUnit=MICROSECOND`: tell them by size.

    Returns (ms, µs or None). Anything before year 2286 in ms has at most 13 digits; µs
    timestamps of our era have 16.
    """
    if type(value) is not int or value <= 0:
        raise InvalidInput("bad_timestamp", f"must be a positive integer: {value!r:.60}")
    if value >= 100_000_000_000_000:  # 15+ digits: microseconds
        ms = value // 1000
        check_timestamp_ms(ms)
        return ms, value
    check_timestamp_ms(value)
    return value, None


def check_side(value: object) -> bool:
    if type(value) is not bool:
        raise InvalidInput("bad_side", f"buyer-maker flag must be true/false: {value!r:.60}")
    return value


def record_problem(trade: TradeRecord, price: float, qty: float, known: set[str],
                   now_ms: int) -> tuple[str, str] | None:
    """Why a decoded `market.trades` record cannot be counted, or None. `price` and `qty` are
    its decimals as floats; `known` caches the symbols already found well formed (the check
    of a symbol runs once per process)."""
    if not 0.0 < price < math.inf:
        return "bad_price", f"must be > 0 and finite: {trade.price!r:.60}"
    if not 0.0 < qty < math.inf:
        return "bad_qty", f"must be > 0 and finite: {trade.qty!r:.60}"
    if not 0 <= trade.trade_id <= MAX_TRADE_ID:
        return "bad_trade_id", f"must be an integer from 0 to 2**63-1: {trade.trade_id}"
    if not MIN_TS_MS <= trade.ts <= now_ms + MAX_FUTURE_MS:
        return "bad_timestamp", f"{trade.ts} ms is before 2017-07-15 or more than 1 h ahead"
    symbol = trade.symbol
    if symbol not in known:
        if SYMBOL.fullmatch(symbol) is None:
            return "unknown_symbol", f"not an exchange symbol: {symbol!r:.60}"
        known.add(symbol)
    return None
