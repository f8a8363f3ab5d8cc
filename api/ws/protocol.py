"""The `/ws` protocol: Binance-style requests, stream names, pushed messages and errors.

Connecting
    `ws://<host>/ws`. When `ALPHAPLUS_WS_TOKEN` is set, the client gives it as `?token=<token>`
    or an `Authorization: Bearer <token>` header; without it the handshake is refused with
    HTTP 401 (body: the reason) and no WebSocket is opened. While the server shuts down, new
    connections are refused (HTTP 403). Per-message deflate is off (it doubles the server's
    cost per message).

Requests (text frames, JSON objects; binary frames holding the same JSON are accepted too)
    {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "btcusdt@signals"], "id": 1}
        -> {"result": null, "id": 1}
    {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 2}
        -> {"result": null, "id": 2}
    {"method": "LIST_SUBSCRIPTIONS", "id": 3}
        -> {"result": ["btcusdt@signals"], "id": 3}        (sorted)
    {"method": "PING", "id": 4}
        -> {"result": "PONG", "id": 4}                      (an application-level heartbeat)
    `id` is required and must be an integer or a string; it is echoed in the answer. Any other
    property is an error. SUBSCRIBE is all or nothing: one bad stream name and none of them is
    added. Subscribing to a stream twice or unsubscribing one never subscribed is not an error.
    Answers and pushed messages reach a client in order: a SUBSCRIBE's answer comes before the
    first message of its streams, an UNSUBSCRIBE's answer after the last one.

Streams (the symbol and timeframe must be configured; the symbol may be given in any case,
the server writes stream names in lower case)
    <symbol>@kline_<tf>        the forming candle, up to ten times a second, and the closed one
    <symbol>@indicators_<tf>   the indicator values when a candle closes
    <symbol>@signals           signals of every timeframe of the symbol (the payload says which)
    <symbol>@patterns          candlestick patterns of every timeframe of the symbol

Pushed messages
    {"stream": "btcusdt@kline_1m", "data": <the worker's JSON, untouched>, "sent_at": <ms>}
    `sent_at` is the server's wall clock (epoch milliseconds, fractional) when it fanned the
    update out: one serialisation per update, shared by every subscriber. kline and
    indicators streams are latest-wins: to a client that reads slower than they update (or
    from a server with more to send than it can) the newest state of a candle replaces the
    one still waiting, so intermediate states of a forming candle may be skipped, never an
    older state sent after a newer one, and the final state of every candle (the closed
    kline) always delivered. Signals and patterns are delivered in order, every one (a client
    too slow for them is closed, see below).

Errors: {"error": {"code": <code>, "msg": "<what and why>"}, "id": <the request's id or null>}
    1  invalid JSON: the message is not JSON (or not UTF-8)
    2  invalid request: not an object; `id` missing or not an integer or string; `method` not
       a string; an unknown property; `params` not a list of strings
    3  unknown method: not one of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, PING
    4  invalid params: no streams, or a malformed stream name (msg shows the accepted shapes)
    5  unknown symbol (msg lists the configured symbols)
    6  unknown timeframe (msg lists the configured timeframes)
    7  too many streams: the subscription would exceed `ALPHAPLUS_WS_MAX_STREAMS` (*)
    8  message too large: above `ALPHAPLUS_WS_MAX_MESSAGE_BYTES` (*); frames above 64 KiB
       are cut by the server itself (close 1009)
    9  too many requests: above `ALPHAPLUS_WS_REQUESTS_PER_S` (*), a token bucket whose
       burst is one second's worth; every message counts, valid or not

    (*) a limit violation. The 5th violation within 60 s closes the connection (1008).

Closes by the server (code, reason)
    1008 "too many violations: <the last one>"
    1008 "too slow: ..." a client whose queue stayed full (`ALPHAPLUS_WS_QUEUE_SIZE`) or whose
         socket accepted nothing for `ALPHAPLUS_WS_SLOW_CLOSE_S` seconds; the rest of the
         server never waits for it
    1001 "server shutting down"
    1011 "keepalive ping timeout": see heartbeats
    1009 a frame above 64 KiB (api/ws/serving.py)
    1007 a text frame that is not UTF-8 (the WebSocket protocol's own rule, applied before
         the request is read; the same bytes in a binary frame get error 1)

Heartbeats
    WebSocket ping frames, sent by the server (uvicorn) every `ALPHAPLUS_WS_PING_INTERVAL_S`;
    every WebSocket library and browser answers them by itself. A client that answers none
    for three intervals is closed (1011). Clients may send ping frames (answered with pongs)
    or the PING request above; neither is needed to stay connected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

SUBSCRIBE = "SUBSCRIBE"
UNSUBSCRIBE = "UNSUBSCRIBE"
LIST_SUBSCRIPTIONS = "LIST_SUBSCRIPTIONS"
PING = "PING"
METHODS = (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, PING)
_PROPERTIES = frozenset(("method", "params", "id"))

#: Stream kinds with a timeframe in their name, whose messages are latest-wins.
TIMEFRAME_KINDS = ("kline", "indicators")
#: Stream kinds per symbol, delivered in order.
EVENT_KINDS = ("signals", "patterns")

#: Categories of queued messages, as `queue_sizes` in the stats names them.
MARKET_DATA, SIGNALS, PATTERNS = 0, 1, 2
CATEGORY_NAMES = ("market_data", "signals", "patterns")
CATEGORY_OF_KIND = {"kline": MARKET_DATA, "indicators": MARKET_DATA, "signals": SIGNALS,
                    "patterns": PATTERNS}


class ErrorCode(IntEnum):
    INVALID_JSON = 1
    INVALID_REQUEST = 2
    UNKNOWN_METHOD = 3
    INVALID_PARAMS = 4
    UNKNOWN_SYMBOL = 5
    UNKNOWN_TIMEFRAME = 6
    TOO_MANY_STREAMS = 7
    MESSAGE_TOO_LARGE = 8
    TOO_MANY_REQUESTS = 9


#: Errors that count towards the violations that close a connection, by stats label.
LIMIT_NAMES = {ErrorCode.TOO_MANY_STREAMS: "too_many_streams",
               ErrorCode.MESSAGE_TOO_LARGE: "message_too_large",
               ErrorCode.TOO_MANY_REQUESTS: "too_many_requests"}

RequestId = int | str | None


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, msg: str, request_id: RequestId = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.request_id = request_id

    def encode(self) -> str:
        return error(self.code, self.msg, self.request_id)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    id: int | str
    streams: tuple[str, ...] = ()  # canonical names, without duplicates


class StreamCatalog:
    """Which stream names exist, from the configured symbols and timeframes."""

    def __init__(self, symbols: Iterable[str], timeframes: Iterable[str]) -> None:
        self.symbols = tuple(s.lower() for s in symbols)
        self.timeframes = tuple(timeframes)
        self._symbols = frozenset(self.symbols)
        self._timeframes = frozenset(self.timeframes)

    def canonical(self, name: str, request_id: RequestId = None) -> str:
        """The stream's name as the server writes it (symbol in lower case), or ProtocolError."""
        symbol, at, kind = name.partition("@")
        if not at or not symbol or not kind:
            raise self._malformed(name, request_id)
        symbol = symbol.lower()
        base, _, tf = kind.partition("_")
        if base in TIMEFRAME_KINDS and tf:
            self._check_symbol(symbol, request_id)
            if tf not in self._timeframes:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TIMEFRAME,
                    f"unknown timeframe {tf!r} in {name!r}; allowed: "
                    f"{', '.join(self.timeframes)}", request_id)
            return f"{symbol}@{base}_{tf}"
        if kind in EVENT_KINDS:
            self._check_symbol(symbol, request_id)
            return f"{symbol}@{kind}"
        raise self._malformed(name, request_id)

    def _check_symbol(self, symbol: str, request_id: RequestId) -> None:
        if symbol not in self._symbols:
            raise ProtocolError(
                ErrorCode.UNKNOWN_SYMBOL,
                f"unknown symbol {symbol!r}; configured: {', '.join(self.symbols)}", request_id)

    @staticmethod
    def _malformed(name: str, request_id: RequestId) -> ProtocolError:
        return ProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"invalid stream {name!r}: expected <symbol>@kline_<tf>, <symbol>@indicators_<tf>, "
            "<symbol>@signals or <symbol>@patterns", request_id)


def stream_name(kind: str, symbol: str, timeframe: str) -> str:
    """The stream an update of `kind` for `symbol` (upper case) and `timeframe` goes to."""
    if kind in TIMEFRAME_KINDS:
        return f"{symbol.lower()}@{kind}_{timeframe}"
    return f"{symbol.lower()}@{kind}"


def parse_request(raw: str | bytes, catalog: StreamCatalog) -> Request:
    """One client message -> Request, or ProtocolError carrying the request's id when known."""
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
    request_id = body.get("id")
    # bool is an int in Python, not in JSON.
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise ProtocolError(ErrorCode.INVALID_REQUEST,
                            "`id` is required and must be an integer or a string")
    unknown = sorted(set(body) - _PROPERTIES)
    if unknown:
        raise ProtocolError(ErrorCode.INVALID_REQUEST,
                            f"unknown property {unknown[0]!r}; a request has method, params "
                            "and id", request_id)
    method = body.get("method")
    if not isinstance(method, str):
        raise ProtocolError(ErrorCode.INVALID_REQUEST, "`method` must be a string", request_id)
    if method not in METHODS:
        raise ProtocolError(ErrorCode.UNKNOWN_METHOD,
                            f"unknown method {method[:40]!r}; expected one of "
                            f"{', '.join(METHODS)}", request_id)
    if method not in (SUBSCRIBE, UNSUBSCRIBE):
        return Request(method, request_id)
    params = body.get("params")
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ProtocolError(ErrorCode.INVALID_REQUEST,
                            "`params` must be a list of stream names", request_id)
    if not params:
        raise ProtocolError(ErrorCode.INVALID_PARAMS, "`params` names no stream", request_id)
    streams = dict.fromkeys(catalog.canonical(p, request_id) for p in params)
    return Request(method, request_id, tuple(streams))


def result(request_id: int | str, value: object) -> str:
    return orjson.dumps({"result": value, "id": request_id}).decode()


def error(code: ErrorCode, msg: str, request_id: RequestId) -> str:
    return orjson.dumps({"error": {"code": int(code), "msg": msg}, "id": request_id}).decode()


def push(stream: str, payload: str, sent_at_ms: float) -> str:
    """A pushed message, built by concatenation: the payload is the worker's JSON, embedded as
    it came (never parsed and re-encoded), and the stream name is one of ours (no quoting
    needed)."""
    return f'{{"stream":"{stream}","data":{payload},"sent_at":{sent_at_ms:.3f}}}'
