from __future__ import annotations

import threading

import orjson

from core.kafka import read_topic
from core.serde import decode_trade
from core.settings import Settings
from producers.run import produce
from producers.sources.recording import RecordingSource, read_lines
from tests.conftest import HFT


def expected_trades(path: str) -> list[dict[str, object]]:
    out = []
    for _ns, frame in read_lines(path):
        obj = orjson.loads(frame)
        if isinstance(obj, dict) and str(obj.get("stream", "")).endswith("@trade"):
            out.append(obj["data"])
    return out


def test_recording_lands_in_kafka_in_order_per_symbol(settings: Settings) -> None:
    paths = [str(HFT / "spot" / "btcusdt_20240808.gz"), str(HFT / "spot" / "ethusdt_20240808.gz")]
    stats = produce(settings, RecordingSource(paths), threading.Event())

    want = {"BTCUSDT": expected_trades(paths[0]), "ETHUSDT": expected_trades(paths[1])}
    got: dict[str, list[tuple[int, str, str, int]]] = {"BTCUSDT": [], "ETHUSDT": []}
    for msg in read_topic(settings.kafka_bootstrap, settings.topic_trades):
        trade = decode_trade(msg.value())
        assert msg.key() == trade["symbol"].encode()
        assert msg.timestamp()[1] == trade["ts"]
        got[trade["symbol"]].append((trade["trade_id"], trade["price"], trade["qty"], trade["ts"]))
    for symbol, frames in want.items():
        assert got[symbol] == [(d["t"], d["p"], d["q"], d["T"]) for d in frames]
    assert stats.trades == sum(len(v) for v in want.values())
    assert stats.dead_letters == 0 and stats.gaps == 0 and stats.duplicates == 0
