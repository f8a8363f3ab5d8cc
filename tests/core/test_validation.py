"""The record check the stream stage runs on what it reads from `market.trades`."""

from __future__ import annotations

import pytest

from core.models import SCHEMA_VERSION, TradeRecord
from core.validation import MAX_TRADE_ID, MIN_TS_MS, record_problem

NOW = 1_723_161_600_000


def record(**over: object) -> TradeRecord:
    fields: dict[str, object] = {
        "v": SCHEMA_VERSION, "exchange": "binance", "market": "spot", "symbol": "BTCUSDT",
        "trade_id": 7, "price": "61800.30", "qty": "0.5", "ts": NOW - 5, "buyer_maker": False,
        "recv_ts": NOW}
    fields.update(over)
    return TradeRecord(**fields)  # type: ignore[arg-type]


def problem(**over: object) -> str | None:
    trade = record(**over)
    found = record_problem(trade, float(trade.price), float(trade.qty), set(), NOW)
    return None if found is None else found[0]


def test_a_good_record_passes_and_its_symbol_is_remembered() -> None:
    known: set[str] = set()
    trade = record(symbol="1000SATSUSDT", trade_id=MAX_TRADE_ID, ts=MIN_TS_MS)
    assert record_problem(trade, 61800.3, 0.5, known, NOW) is None
    assert known == {"1000SATSUSDT"}


@pytest.mark.parametrize(("over", "reason"), [
    ({"price": "NaN"}, "bad_price"), ({"price": "Infinity"}, "bad_price"),
    ({"price": "1e400"}, "bad_price"), ({"price": "-1"}, "bad_price"),
    ({"price": "0"}, "bad_price"), ({"qty": "0"}, "bad_qty"), ({"qty": "-inf"}, "bad_qty"),
    ({"trade_id": -1}, "bad_trade_id"), ({"trade_id": 2**70}, "bad_trade_id"),
    ({"ts": -5}, "bad_timestamp"), ({"ts": MIN_TS_MS - 1}, "bad_timestamp"),
    ({"ts": NOW + 3_600_001}, "bad_timestamp"), ({"symbol": "btc usdt"}, "unknown_symbol"),
    ({"symbol": "X'; DROP TABLE trades;--"}, "unknown_symbol"), ({"symbol": ""}, "unknown_symbol"),
])
def test_a_bad_value_gets_its_reason(over: dict[str, object], reason: str) -> None:
    assert problem(**over) == reason
