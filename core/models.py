"""The records that cross process boundaries (the Kafka contracts of docs/DESIGN.md)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict, cast

import msgspec

SCHEMA_VERSION = 1

Market = Literal["spot", "usdm"]


class Trade(TypedDict):
    """One normalised trade: the value of a `market.trades` message, key = symbol.

    Prices and quantities stay the exchange's decimal strings, so nothing is rounded on the way
    in; consumers parse them once. `ts` is the trade time in ms; `ts_us` is present when the
    source gave microseconds. An aggregate trade also carries `first_trade_id`/`last_trade_id`
    so candle trade counts stay exact.
    """

    v: int
    exchange: str
    market: str
    symbol: str
    trade_id: int
    price: str
    qty: str
    ts: int
    buyer_maker: bool
    recv_ts: int
    ts_us: NotRequired[int]
    first_trade_id: NotRequired[int]
    last_trade_id: NotRequired[int]


class TradeRecord(msgspec.Struct, omit_defaults=True, gc=False):
    """The same trade as `Trade`, as a struct: what the hot ingest path builds, because msgspec
    encodes it about twice as fast as orjson encodes the dict. The JSON is identical (same keys,
    same order, optional fields omitted when absent)."""

    v: int
    exchange: str
    market: str
    symbol: str
    trade_id: int
    price: str
    qty: str
    ts: int
    buyer_maker: bool
    recv_ts: int
    ts_us: int | None = None
    first_trade_id: int | None = None
    last_trade_id: int | None = None

    def as_dict(self) -> Trade:
        # omit_defaults makes to_builtins leave out the absent optional fields, as the JSON does.
        return cast(Trade, msgspec.to_builtins(self))


class DeadLetter(TypedDict):
    """A rejected input: the value of a `market.deadletter` message, key = source."""

    v: int
    source: str
    reason: str
    detail: str
    ts: int
    raw: str
    raw_encoding: Literal["utf-8", "base64"]


class TradeGap(TypedDict):
    """Trade ids that never arrived for a symbol: a `market.gaps` message, key = symbol."""

    v: int
    exchange: str
    market: str
    symbol: str
    first_missing: int
    last_missing: int
    missing: int
    detected_ts: int
    source: str
