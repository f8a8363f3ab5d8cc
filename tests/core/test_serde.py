from __future__ import annotations

import orjson

from core.models import TradeRecord
from core.serde import dead_letter, decode_trade, encode, encode_record, raw_bytes


def test_struct_and_dict_encode_to_the_same_json() -> None:
    plain = TradeRecord(1, "binance", "spot", "BTCUSDT", 7, "1.5", "2", 1723161255000, True,
                        1723161255001)
    agg = TradeRecord(1, "binance", "usdm", "ETHUSDT", 8, "2.5", "3", 1723161255000, False,
                      1723161255001, 1723161255000123, 40, 42)
    for record in (plain, agg):
        assert encode_record(record) == encode(record.as_dict())
        assert decode_trade(encode_record(record)) == record.as_dict()
    assert "ts_us" not in plain.as_dict()
    assert orjson.loads(encode_record(agg))["last_trade_id"] == 42


def test_dead_letter_keeps_raw_bytes_whole() -> None:
    for raw in (b'{"ok": "text"}', b"\xff\xfe not utf-8", "already text"):
        letter = dead_letter(raw, "bad_json", "detail", "test", 1)
        expected = raw.encode() if isinstance(raw, str) else raw
        assert raw_bytes(letter) == expected
    assert dead_letter(b"\xff", "r", "d", "s", 1)["raw_encoding"] == "base64"
