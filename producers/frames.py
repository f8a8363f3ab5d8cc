"""Binance combined-stream frames → normalised trades.

A frame is `{"stream": "btcusdt@trade", "data": {...}}`. Trade and aggTrade frames become a
`Trade`; other streams (depth, bookTicker, kline), subscription replies, REST snapshots found in
recordings and control events are not trades and are skipped (the caller counts them). Anything
else raises `InvalidInput` with a reason, for the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Collection

import orjson

from core.exceptions import InvalidInput
from core.models import SCHEMA_VERSION, Trade
from producers.validation import (
    check_decimal,
    check_side,
    check_trade_id,
    split_timestamp,
)

MAX_FRAME_BYTES = 64 * 1024
# Top-level objects that are not market data and not errors.
_NON_DATA_KEYS = ("result", "lastUpdateId")
# USD-M trade streams also report insurance-fund and ADL fills; klines count market trades only.
_MARKET_TRADE = "MARKET"


class FrameParser:
    """Parses frames for one market and a fixed set of symbols."""

    def __init__(self, market: str, symbols: Collection[str]) -> None:
        self.market = market
        self.symbols = frozenset(s.upper() for s in symbols)

    def parse(self, raw: bytes | str, recv_ts: int) -> Trade | None:
        """The trade in `raw`, None for a frame that holds no trade, or `InvalidInput`."""
        if len(raw) > MAX_FRAME_BYTES:
            raise InvalidInput("oversized", f"{len(raw)} bytes > {MAX_FRAME_BYTES}")
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = "bad_encoding" if "utf-8" in str(exc).lower() else "bad_json"
            raise InvalidInput(reason, str(exc)[:200]) from None
        if type(frame) is not dict:
            raise InvalidInput("bad_schema", f"frame is a JSON {type(frame).__name__}")
        stream = frame.get("stream")
        data = frame.get("data")
        if type(stream) is not str or type(data) is not dict:
            if any(k in frame for k in _NON_DATA_KEYS) or frame.get("e") == "serverShutdown":
                return None
            raise InvalidInput("bad_schema", "expected {'stream': str, 'data': object}")
        kind = stream.rpartition("@")[2]
        if kind == "trade":
            return self._trade(data, recv_ts)
        if kind == "aggTrade":
            return self._agg_trade(data, recv_ts)
        return None

    def _symbol(self, data: dict[str, object]) -> str:
        symbol = data.get("s")
        if type(symbol) is not str:
            raise InvalidInput("bad_schema", "field 's' (symbol) missing or not a string")
        if symbol not in self.symbols:
            raise InvalidInput("unknown_symbol", f"{symbol[:40]!r} is not configured")
        return symbol

    def _trade(self, data: dict[str, object], recv_ts: int) -> Trade | None:
        if data.get("e") != "trade":
            raise InvalidInput("bad_schema", "trade stream without e='trade'")
        if data.get("X", _MARKET_TRADE) != _MARKET_TRADE:
            return None
        try:
            return self._build(data, data["t"], recv_ts)
        except KeyError as exc:
            raise InvalidInput("bad_schema", f"trade field {exc} missing") from None

    def _agg_trade(self, data: dict[str, object], recv_ts: int) -> Trade:
        if data.get("e") != "aggTrade":
            raise InvalidInput("bad_schema", "aggTrade stream without e='aggTrade'")
        try:
            trade = self._build(data, data["a"], recv_ts)
            first = check_trade_id(data["f"])
            last = check_trade_id(data["l"])
        except KeyError as exc:
            raise InvalidInput("bad_schema", f"aggTrade field {exc} missing") from None
        if last < first:
            raise InvalidInput("bad_trade_id", f"last trade id {last} < first {first}")
        trade["first_trade_id"] = first
        trade["last_trade_id"] = last
        return trade

    def _build(self, data: dict[str, object], trade_id: object, recv_ts: int) -> Trade:
        ts, ts_us = split_timestamp(data["T"])
        trade: Trade = {
            "v": SCHEMA_VERSION,
            "exchange": "binance",
            "market": self.market,
            "symbol": self._symbol(data),
            "trade_id": check_trade_id(trade_id),
            "price": check_decimal(data["p"], "bad_price"),
            "qty": check_decimal(data["q"], "bad_qty"),
            "ts": ts,
            "buyer_maker": check_side(data["m"]),
            "recv_ts": recv_ts,
        }
        if ts_us is not None:
            trade["ts_us"] = ts_us
        return trade
