"""Kafka message (de)serialisation: compact JSON through orjson (dicts) and msgspec (structs)."""

from __future__ import annotations

import base64
from typing import cast

import msgspec
import orjson

from core.models import SCHEMA_VERSION, DeadLetter, Trade, TradeGap, TradeRecord


def encode_record(record: TradeRecord) -> bytes:
    return _struct_encoder.encode(record)


_struct_encoder = msgspec.json.Encoder()


def encode(record: Trade | DeadLetter | TradeGap) -> bytes:
    return orjson.dumps(record)


def _value(value: bytes | None) -> bytes:
    # Kafka allows null values (tombstones); none of our topics has a use for one.
    if value is None:
        raise ValueError("message has no value")
    return value


def decode_trade(value: bytes | None) -> Trade:
    return cast(Trade, orjson.loads(_value(value)))


def decode_deadletter(value: bytes | None) -> DeadLetter:
    return cast(DeadLetter, orjson.loads(_value(value)))


def decode_gap(value: bytes | None) -> TradeGap:
    return cast(TradeGap, orjson.loads(_value(value)))


def dead_letter(raw: bytes | str, reason: str, detail: str, source: str, ts: int) -> DeadLetter:
    """Keep the raw input whole: text when it is UTF-8, base64 otherwise."""
    if isinstance(raw, str):
        text, encoding = raw, "utf-8"
    else:
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {
        "v": SCHEMA_VERSION,
        "source": source,
        "reason": reason,
        "detail": detail,
        "ts": ts,
        "raw": text,
        "raw_encoding": "utf-8" if encoding == "utf-8" else "base64",
    }


def raw_bytes(letter: DeadLetter) -> bytes:
    """The original input of a dead letter, byte for byte."""
    if letter["raw_encoding"] == "base64":
        return base64.b64decode(letter["raw"])
    return letter["raw"].encode("utf-8")
