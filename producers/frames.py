"""Binance combined-stream frames → normalised trades.

A frame is `{"stream": "btcusdt@trade", "data": {...}}`. Trade and aggTrade frames become a
`Trade`; other streams (depth, bookTicker, kline), subscription replies, REST snapshots found in
recordings and control events are not trades and are skipped (the caller counts them). Anything
else raises `InvalidInput` with a reason, for the dead-letter topic.

This runs once per exchange frame. msgspec decodes straight into typed structs (types checked
in C, ~2x faster than orjson into dicts), the remaining value checks are one combined
expression, and only a frame that fails them is re-read field by field to name the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

import msgspec
import orjson

from core.exceptions import InvalidInput
from core.models import SCHEMA_VERSION, Trade, TradeRecord
from core.validation import (
    MAX_DECIMAL_LEN,
    MAX_FUTURE_MS,
    MAX_TRADE_ID,
    MIN_TS_MS,
    check_decimal,
    check_side,
    check_timestamp_ms,
    check_trade_id,
)

MAX_FRAME_BYTES = 64 * 1024
# Deepest nesting of arrays and objects a frame may have. Binance's deepest, a depth update, has
# 3; decoders recurse per level and stop with a RecursionError near Python's limit (~1,000).
MAX_NESTING = 32
# A JSON string (escapes included) or one bracket: what nesting_depth steps over.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")
# Timestamps at or above this are microseconds (`timeUnit=MICROSECOND`): 15+ digits.
US_THRESHOLD = 100_000_000_000_000
# Top-level objects that are not market data and not errors.
_NON_DATA_KEYS = ("result", "lastUpdateId")
# USD-M trade streams also report insurance-fund and ADL fills; klines count market trades only.
_MARKET_TRADE = "MARKET"
_INF = math.inf


class _Frame(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw


# Tagged by Binance's own event field "e", so one decode both routes and type-checks a frame.
class _TradeData(msgspec.Struct, tag_field="e", tag="trade", gc=False):
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    X: str = _MARKET_TRADE


class _AggTradeData(msgspec.Struct, tag_field="e", tag="aggTrade", gc=False):
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool


class _TradeFrame(msgspec.Struct, gc=False):
    stream: str
    data: _TradeData | _AggTradeData


_trade_frame_decoder = msgspec.json.Decoder(_TradeFrame)
_frame_decoder = msgspec.json.Decoder(_Frame)
_trade_decoder = msgspec.json.Decoder(_TradeData)
_agg_decoder = msgspec.json.Decoder(_AggTradeData)


_DECIMAL_CHARS = "0123456789."


def _load_json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "bad_encoding" if "utf-8" in str(exc).lower() else "bad_json"
        raise InvalidInput(reason, str(exc)[:200]) from None


def exceeds_nesting(raw: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether arrays and objects nest deeper than `limit` (brackets in strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # every frame of a trade stream: two objects
    depth = 0
    for match in _STRUCTURE.finditer(raw):
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif first != 0x22:  # a closing bracket, not a string
            depth -= 1
    return False


class FrameParser:
    """Parses frames for one market and a fixed set of symbols."""

    def __init__(self, market: str, symbols: Collection[str]) -> None:
        self.market = market
        self.symbols = frozenset(s.upper() for s in symbols)

    def parse(self, raw: bytes | str, recv_ts: int) -> Trade | None:
        """The trade in `raw` as a dict, None for a frame that holds no trade, or
        `InvalidInput`."""
        record = self.parse_record(raw, recv_ts)
        return None if record is None else record.as_dict()

    def parse_record(self, raw: bytes | str, recv_ts: int) -> TradeRecord | None:
        """The trade in `raw`, None for a frame that holds no trade, or `InvalidInput`.

        `recv_ts` (ms) is when the frame arrived; a trade time more than an hour after it is
        rejected as insane. Whatever else a frame makes the decoders raise is an `InvalidInput`
        too (`parser_error`, with the exception's type), so that no frame can end the
        connection it came on.
        """
        try:
            return self._parse_record(raw, recv_ts)
        except InvalidInput:
            raise
        except RecursionError:
            raise InvalidInput("too_deep", "nested beyond the decoder's recursion limit") from None
        except Exception as exc:
            raise InvalidInput("parser_error", f"{type(exc).__name__}: {exc}"[:200]) from None

    def _parse_record(self, raw: bytes | str, recv_ts: int) -> TradeRecord | None:
        if len(raw) > MAX_FRAME_BYTES:
            raise InvalidInput("oversized", f"{len(raw)} bytes > {MAX_FRAME_BYTES}")
        # A trade frame names its stream in the first bytes; one decode then does it all. A
        # failed decode costs more than a second one, so other frames go the general way.
        if type(raw) is bytes and (b'@trade"' in raw[:48] or b'@aggTrade"' in raw[:48]):
            try:
                data = _trade_frame_decoder.decode(raw).data
            except msgspec.DecodeError:
                pass  # the general path below names what is wrong
            else:
                if isinstance(data, _TradeData):
                    if data.X != _MARKET_TRADE:
                        return None
                    record = self._build(data, data.t, recv_ts)
                else:
                    record = self._build(data, data.a, recv_ts)
                    if record is not None and 0 <= data.f <= data.l <= MAX_TRADE_ID:
                        record.first_trade_id = data.f
                        record.last_trade_id = data.l
                    else:
                        record = None
                if record is not None:
                    return record
        return self._parse_general(raw, recv_ts)

    def _parse_general(self, raw: bytes | str, recv_ts: int) -> TradeRecord | None:
        # Checked here, off the trade frames' fast path: skipping a nested value (the `data`
        # read as Raw, an unknown field) recurses once per level. The fast path's typed
        # decode stops at the first value of the wrong type; a nested unknown field there
        # ends in parse_record's RecursionError handler.
        if exceeds_nesting(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")):
            raise InvalidInput("too_deep", f"arrays/objects nested deeper than {MAX_NESTING}")
        try:
            frame = _frame_decoder.decode(raw)
        except msgspec.DecodeError:
            return self._not_a_stream_frame(raw)
        stream = frame.stream
        if stream.endswith("@trade"):
            try:
                data = _trade_decoder.decode(frame.data)
            except msgspec.DecodeError:
                return self._explain(frame.data, "trade", "t", recv_ts)
            if data.X != _MARKET_TRADE:
                return None
            trade = self._build(data, data.t, recv_ts)
            return trade if trade is not None else self._explain(frame.data, "trade", "t",
                                                                 recv_ts)
        if stream.endswith("@aggTrade"):
            try:
                agg = _agg_decoder.decode(frame.data)
            except msgspec.DecodeError:
                return self._explain(frame.data, "aggTrade", "a", recv_ts)
            trade = self._build(agg, agg.a, recv_ts)
            if trade is None:
                return self._explain(frame.data, "aggTrade", "a", recv_ts)
            if not 0 <= agg.f <= agg.l <= MAX_TRADE_ID:
                raise InvalidInput("bad_trade_id", f"aggTrade f={agg.f} l={agg.l}")
            trade.first_trade_id = agg.f
            trade.last_trade_id = agg.l
            return trade
        return None

    def _build(
        self, data: _TradeData | _AggTradeData, trade_id: int, recv_ts: int
    ) -> TradeRecord | None:
        """The trade when every value is valid, else None (never raises)."""
        ts = data.T
        ts_us = None
        if ts >= US_THRESHOLD:
            ts_us, ts = ts, ts // 1000
        price = data.p
        qty = data.q
        try:
            price_f = float(price)
            qty_f = float(qty)
        except ValueError:
            return None
        # float() alone would also take "1e3", "1_000", " 5" and "+5": only digits and dots
        # may remain after strip (a second dot already failed float()).
        if not (
            data.s in self.symbols
            and 0 <= trade_id <= MAX_TRADE_ID
            and MIN_TS_MS <= ts <= recv_ts + MAX_FUTURE_MS
            and 0.0 < price_f < _INF
            and 0.0 < qty_f < _INF
            and len(price) <= MAX_DECIMAL_LEN
            and len(qty) <= MAX_DECIMAL_LEN
            and not (price + qty).strip(_DECIMAL_CHARS)
        ):
            return None
        return TradeRecord(
            SCHEMA_VERSION, "binance", self.market, data.s, trade_id, price, qty, ts, data.m,
            recv_ts, ts_us,
        )

    def _explain(
        self, raw_data: msgspec.Raw, event: str, id_field: str, recv_ts: int
    ) -> TradeRecord:
        """Find the first invalid field of a frame that failed the fast path, and raise."""
        data = _load_json(bytes(raw_data))
        if type(data) is not dict:
            raise InvalidInput("bad_schema", f"{event} data is not an object")
        if data.get("e") != event:
            raise InvalidInput("bad_schema", f"{event} stream without e={event!r}")
        fields = ("s", id_field, "p", "q", "T", "m") + (("f", "l") if event == "aggTrade" else ())
        missing = [k for k in fields if k not in data]
        if missing:
            raise InvalidInput("bad_schema", f"{event} field(s) {', '.join(missing)} missing")
        symbol = data["s"]
        if type(symbol) is not str:
            raise InvalidInput("bad_schema", "field 's' (symbol) is not a string")
        if symbol not in self.symbols:
            raise InvalidInput("unknown_symbol", f"{symbol[:40]!r} is not configured")
        for name in fields[1:2] + fields[6:]:
            check_trade_id(data[name])
        check_decimal(data["p"], "bad_price")
        check_decimal(data["q"], "bad_qty")
        check_side(data["m"])
        ts = data["T"]
        if type(ts) is not int or ts <= 0:
            raise InvalidInput("bad_timestamp", f"must be a positive integer: {ts!r:.60}")
        check_timestamp_ms(ts // 1000 if ts >= US_THRESHOLD else ts, recv_ts)
        if event == "trade" and type(data.get("X", _MARKET_TRADE)) is not str:
            raise InvalidInput("bad_schema", "field 'X' is not a string")
        raise InvalidInput("bad_schema", f"{event} fields of unexpected types")

    @staticmethod
    def _not_a_stream_frame(raw: bytes | str) -> None:
        """Skip the non-data objects a stream or recording may hold; name what else is wrong."""
        frame = _load_json(raw)
        if type(frame) is not dict:
            raise InvalidInput("bad_schema", f"frame is a JSON {type(frame).__name__}")
        if any(k in frame for k in _NON_DATA_KEYS) or frame.get("e") == "serverShutdown":
            return None
        raise InvalidInput("bad_schema", "expected {'stream': str, 'data': object}")
