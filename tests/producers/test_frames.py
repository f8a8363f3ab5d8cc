from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from core.exceptions import InvalidInput
from producers.frames import MAX_FRAME_BYTES, FrameParser
from producers.sources.recording import read_lines
from tests.conftest import HFT
from tests.producers.adversarial import frames

RECV = 1_723_161_255_400
parser = FrameParser("spot", ["BTCUSDT", "ETHUSDT"])


def frame(stream: str = "btcusdt@trade", **data: Any) -> bytes:
    base: dict[str, Any] = {"e": "trade", "E": RECV, "s": "BTCUSDT", "t": 100,
                            "p": "61800.30", "q": "0.006", "T": RECV - 5, "m": False, "M": True}
    base.update(data)
    return orjson.dumps({"stream": stream, "data": {k: v for k, v in base.items()
                                                    if v is not ...}})


def test_trade_frame_becomes_contract_trade() -> None:
    assert parser.parse(frame(), RECV) == {
        "v": 1, "exchange": "binance", "market": "spot", "symbol": "BTCUSDT",
        "trade_id": 100, "price": "61800.30", "qty": "0.006", "ts": RECV - 5,
        "buyer_maker": False, "recv_ts": RECV,
    }


def test_microsecond_timestamps_keep_both_units() -> None:
    trade = parser.parse(frame(T=(RECV - 5) * 1000 + 123), RECV)
    assert trade is not None
    assert trade["ts"] == RECV - 5 and trade["ts_us"] == (RECV - 5) * 1000 + 123


def test_agg_trade_carries_trade_id_range() -> None:
    raw = orjson.dumps({"stream": "btcusdt@aggTrade", "data": {
        "e": "aggTrade", "E": RECV, "s": "BTCUSDT", "a": 7, "p": "1.5", "q": "2", "f": 10,
        "l": 12, "T": RECV, "m": True, "M": True}})
    trade = parser.parse(raw, RECV)
    assert trade is not None
    assert (trade["trade_id"], trade["first_trade_id"], trade["last_trade_id"]) == (7, 10, 12)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","b":[],"a":[]}}',
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1"}}',
        b'{"lastUpdateId":5,"bids":[],"asks":[]}',
        b'{"result":null,"id":1}',
        b'{"e":"serverShutdown","E":1723161255400}',
    ],
)
def test_non_trade_frames_are_skipped(raw: bytes) -> None:
    assert parser.parse(raw, RECV) is None


def test_usdm_non_market_fills_are_skipped() -> None:
    usdm = FrameParser("usdm", ["BTCUSDT"])
    assert usdm.parse(frame(X="INSURANCE_FUND"), RECV) is None
    assert usdm.parse(frame(X="MARKET"), RECV) is not None


# Each malformed input and the reason it must be rejected with.
BAD: list[tuple[str, bytes | str, str]] = [
    ("truncated json", b'{"stream":"btcusdt@trade","data":{"e":"tra', "bad_json"),
    ("not json", b"hello", "bad_json"),
    ("invalid utf-8", b'{"stream":"btcusdt@trade","data":"\xff\xfe"}', "bad_encoding"),
    ("json array", b"[1,2,3]", "bad_schema"),
    ("no stream wrapper", b'{"e":"trade","s":"BTCUSDT"}', "bad_schema"),
    ("data not object", b'{"stream":"btcusdt@trade","data":[1]}', "bad_schema"),
    ("wrong event type", frame(e="kline"), "bad_schema"),
    ("missing price", frame(p=...), "bad_schema"),
    ("unknown symbol", frame(s="DOGEUSDT"), "unknown_symbol"),
    ("symbol not string", frame(s=5), "bad_schema"),
    ("negative trade id", frame(t=-1), "bad_trade_id"),
    ("trade id string", frame(t="100"), "bad_trade_id"),
    ("negative price", frame(p="-1.0"), "bad_price"),
    ("zero price", frame(p="0.000"), "bad_price"),
    ("NaN price", frame(p="NaN"), "bad_price"),
    ("Infinity price", frame(p="Infinity"), "bad_price"),
    ("huge price", frame(p="9" * 400), "bad_price"),
    ("exponent price", frame(p="1e5"), "bad_price"),
    ("price as number", frame(p=61800.3), "bad_price"),
    ("SQL in price", frame(p="1; DROP TABLE trades"), "bad_price"),
    ("zero quantity", frame(q="0"), "bad_qty"),
    ("timestamp far past", frame(T=1_000), "bad_timestamp"),
    ("timestamp far future", frame(T=RECV + 86_400_000), "bad_timestamp"),
    ("timestamp string", frame(T="1723161255000"), "bad_timestamp"),
    ("side not bool", frame(m="false"), "bad_side"),
    ("oversized", b'{"stream":"btcusdt@trade","data":"' + b"x" * MAX_FRAME_BYTES + b'"}',
     "oversized"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "too_deep"),
]


@pytest.mark.parametrize(("raw", "reason"), [(r, why) for _, r, why in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_input_is_rejected_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parser.parse(raw, RECV)
    assert info.value.reason == reason


def test_every_recorded_trade_frame_parses() -> None:
    count = 0
    for path in sorted(HFT.glob("*/*.gz")):
        market = path.parent.name
        p = FrameParser(market, ["BTCUSDT", "ETHUSDT"])
        for recv_ns, raw in read_lines(path):
            assert recv_ns is not None
            trade = p.parse(raw, recv_ns // 1_000_000)
            if b"@trade" in raw[:40]:
                assert trade is not None
                data = orjson.loads(raw)["data"]
                assert (trade["trade_id"], trade["price"], trade["qty"], trade["ts"]) == (
                    data["t"], data["p"], data["q"], data["T"])
                count += 1
            else:
                assert trade is None
    assert count > 60_000


@hypothesis_settings(max_examples=600, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
@given(raw=frames)
def test_no_frame_makes_the_parser_raise_anything_but_invalid_input(raw: bytes | str) -> None:
    try:
        record = parser.parse_record(raw, RECV)
    except InvalidInput as exc:
        assert exc.reason and exc.reason == exc.reason.strip()
        return
    if record is not None:  # a frame that stayed valid: a sane trade
        assert record.symbol == "BTCUSDT" and record.trade_id >= 0
        assert float(record.price) > 0 and float(record.qty) > 0
