"""The /ws protocol without a server: request parsing, stream names, every error code's
shape, the pushed message, and the rate and violation limits."""

from __future__ import annotations

import orjson
import pytest

from api.ws import protocol
from api.ws.limits import TokenBucket, Violations
from api.ws.protocol import ErrorCode, ProtocolError, StreamCatalog, parse_request

CATALOG = StreamCatalog(("BTCUSDT", "ETHUSDT"), ("1m", "5m", "1h"))


def error_of(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(raw, CATALOG)
    return info.value


def test_subscribe_is_parsed_to_canonical_streams_without_duplicates() -> None:
    raw = orjson.dumps({"method": "SUBSCRIBE", "id": 1, "params": [
        "btcusdt@kline_1m", "BTCUSDT@indicators_5m", "ethusdt@signals", "btcusdt@patterns",
        "btcusdt@kline_1m"]})
    request = parse_request(raw, CATALOG)
    assert request == protocol.Request("SUBSCRIBE", 1, (
        "btcusdt@kline_1m", "btcusdt@indicators_5m", "ethusdt@signals", "btcusdt@patterns"))


def test_other_methods_and_string_ids() -> None:
    assert parse_request('{"method":"UNSUBSCRIBE","params":["ethusdt@kline_1h"],"id":"a"}',
                         CATALOG) == protocol.Request("UNSUBSCRIBE", "a", ("ethusdt@kline_1h",))
    assert parse_request(b'{"method":"LIST_SUBSCRIPTIONS","id":7}', CATALOG) == \
        protocol.Request("LIST_SUBSCRIPTIONS", 7)
    assert parse_request('{"method":"PING","id":0}', CATALOG) == protocol.Request("PING", 0)


def test_invalid_json() -> None:
    exc = error_of('{"method": "SUBSCRIBE",')
    assert exc.code == ErrorCode.INVALID_JSON and int(exc.code) == 1
    assert exc.request_id is None
    assert error_of(b"\xff\xfe").code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize(("raw", "request_id", "needle"), [
    ("[1, 2]", None, "JSON object"),
    ('{"method":"PING"}', None, "`id` is required"),
    ('{"method":"PING","id":null}', None, "`id` is required"),
    ('{"method":"PING","id":true}', None, "`id` is required"),
    ('{"method":"PING","id":1.5}', None, "`id` is required"),
    ('{"method":"PING","id":{"a":1}}', None, "`id` is required"),
    ('{"method":"PING","id":3,"param":[]}', 3, "unknown property 'param'"),
    ('{"method":5,"id":4}', 4, "`method` must be a string"),
    ('{"id":4}', 4, "`method` must be a string"),
    ('{"method":"SUBSCRIBE","id":5}', 5, "`params` must be a list"),
    ('{"method":"SUBSCRIBE","params":"btcusdt@kline_1m","id":5}', 5, "`params` must be a list"),
    ('{"method":"SUBSCRIBE","params":[1],"id":5}', 5, "`params` must be a list"),
])
def test_invalid_request(raw: str, request_id: object, needle: str) -> None:
    exc = error_of(raw)
    assert exc.code == ErrorCode.INVALID_REQUEST and int(exc.code) == 2
    assert exc.request_id == request_id
    assert needle in exc.msg


def test_unknown_method_lists_the_methods() -> None:
    exc = error_of('{"method":"subscribe","id":9}')
    assert (exc.code, exc.request_id) == (ErrorCode.UNKNOWN_METHOD, 9)
    assert "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, PING" in exc.msg


@pytest.mark.parametrize("stream", ["btcusdt", "btcusdt@", "@kline_1m", "btcusdt@kline",
                                    "btcusdt@kline_", "btcusdt@signals_1m", "btcusdt@trade",
                                    "btcusdt@depth"])
def test_malformed_stream_names(stream: str) -> None:
    exc = error_of(orjson.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 2}))
    assert (exc.code, exc.request_id) == (ErrorCode.INVALID_PARAMS, 2)
    assert "<symbol>@kline_<tf>" in exc.msg


def test_no_streams_is_invalid_params() -> None:
    exc = error_of('{"method":"UNSUBSCRIBE","params":[],"id":2}')
    assert exc.code == ErrorCode.INVALID_PARAMS


def test_unknown_symbol_lists_configured_symbols() -> None:
    exc = error_of('{"method":"SUBSCRIBE","params":["btcusdt@kline_1m","xrpusdt@signals"],"id":3}')
    assert (exc.code, exc.request_id) == (ErrorCode.UNKNOWN_SYMBOL, 3)
    assert "'xrpusdt'" in exc.msg and "btcusdt, ethusdt" in exc.msg


def test_unknown_timeframe_lists_allowed_ones() -> None:
    exc = error_of('{"method":"SUBSCRIBE","params":["ethusdt@indicators_4h"],"id":"x"}')
    assert (exc.code, exc.request_id) == (ErrorCode.UNKNOWN_TIMEFRAME, "x")
    assert "'4h'" in exc.msg and "1m, 5m, 1h" in exc.msg


def test_error_and_result_encoding() -> None:
    exc = error_of('{"method":"NOPE","id":12}')
    assert orjson.loads(exc.encode()) == {
        "error": {"code": 3, "msg": exc.msg}, "id": 12}
    assert orjson.loads(protocol.error(ErrorCode.TOO_MANY_REQUESTS, "slow down", None)) == {
        "error": {"code": 9, "msg": "slow down"}, "id": None}
    assert orjson.loads(protocol.result(1, None)) == {"result": None, "id": 1}
    assert orjson.loads(protocol.result("q", ["a@b"])) == {"result": ["a@b"], "id": "q"}


def test_every_error_code_is_documented_in_the_module_docstring() -> None:
    doc = protocol.__doc__ or ""
    for code in ErrorCode:
        words = code.name.lower().split("_")
        line = next((ln for ln in doc.splitlines() if ln.strip().startswith(f"{int(code)} ")),
                    None)
        assert line is not None, code
        assert " ".join(words[:2]) in line.replace("JSON", "json"), (code, line)


def test_push_embeds_the_payload_untouched() -> None:
    payload = '{"symbol":"BTCUSDT","close":1.10000000001,"x":"\\u00e9"}'
    text = protocol.push("btcusdt@kline_1m", payload, 1700000000123.456)
    assert text == ('{"stream":"btcusdt@kline_1m","data":' + payload
                    + ',"sent_at":1700000000123.456}')
    assert orjson.loads(text)["data"] == orjson.loads(payload)


def test_stream_names_of_updates() -> None:
    assert protocol.stream_name("kline", "BTCUSDT", "1m") == "btcusdt@kline_1m"
    assert protocol.stream_name("indicators", "ETHUSDT", "1h") == "ethusdt@indicators_1h"
    assert protocol.stream_name("signals", "BTCUSDT", "5m") == "btcusdt@signals"
    assert protocol.stream_name("patterns", "BTCUSDT", "1m") == "btcusdt@patterns"


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=4, burst=4, now=100.0)
    assert [bucket.take(100.0) for _ in range(5)] == [True] * 4 + [False]
    assert not bucket.take(100.125)  # half a token
    assert bucket.take(100.25)
    assert not bucket.take(100.25)
    # Idle time refills up to the burst, no more.
    assert sum(bucket.take(200.0) for _ in range(20)) == 4


def test_token_bucket_below_one_a_second_still_allows_one() -> None:
    bucket = TokenBucket(rate=0.5, burst=0.5, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(1.0)
    assert bucket.take(2.0)


def test_violations_close_at_the_limit_within_the_window() -> None:
    v = Violations(limit=3, window=10.0)
    assert not v.add(0.0)
    assert not v.add(1.0)
    assert v.add(2.0)
    v = Violations(limit=3, window=10.0)
    assert not v.add(0.0)
    assert not v.add(1.0)
    assert not v.add(11.5)  # the first two are out of the window
    assert not v.add(12.0)
    assert v.add(13.0)
