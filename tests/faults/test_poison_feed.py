"""Poison on the exchange WebSocket feed: the local fake Binance server plays a real day's trade
frames to a real `alphaplus produce --source binance` process, with one bad frame of each kind
injected between them. Every bad frame must reach the dead-letter topic with its reason, the
good trade right after it must reach `market.trades`, and the producer must still run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from core.kafka import ensure_topics, read_topic
from core.models import DeadLetter
from core.serde import decode_trade, raw_bytes
from core.settings import Settings
from producers.frames import MAX_FRAME_BYTES
from tests.faults.poison_corpus import (
    Case,
    CliProcess,
    dead_letters,
    ids,
    record,
    wait_until,
)
from tests.producers.fake_binance import TRADE_STREAMS, FakeBinance, Plan, recorded_frames

T = 1_723_161_255_395  # a trade time of the recorded day (2024-08-08)
NOW_MS = int(time.time() * 1000)


def frame(trade_id: int, stream: str = "btcusdt@trade", **data: Any) -> str:
    """A trade frame as Binance sends it, with `data` replacing fields (`...` drops one)."""
    base: dict[str, Any] = {"e": "trade", "E": T + 5, "s": "BTCUSDT", "t": trade_id,
                            "p": "61800.30", "q": "0.006", "T": T, "m": False, "M": True}
    base.update(data)
    # json, not orjson: orjson refuses integers beyond 64 bits, which are part of the corpus.
    return json.dumps({"stream": stream, "data": {k: v for k, v in base.items() if v is not ...}},
                      separators=(",", ":"))


def raw_frame(trade_id: int, fields: str) -> str:
    """A trade frame written by hand, for what a JSON encoder would never write."""
    return ('{"stream":"btcusdt@trade","data":{"e":"trade","E":' + str(T + 5)
            + ',"s":"BTCUSDT","t":' + str(trade_id) + "," + fields + ',"m":false,"M":true}}')


# Trade ids far from the recorded ones, one per case, so that no two raw frames are equal.
FEED: list[Case] = [
    Case("truncated-json", '{"stream":"btcusdt@trade","data":{"e":"tra', "bad_json"),
    Case("not-json", "hello exchange", "bad_json"),
    Case("empty-message", "", "bad_json"),
    Case("invalid-utf8-binary-frame", b'{"stream":"btcusdt@trade","data":"\xff\xfe"}',
         "bad_encoding"),
    Case("binary-garbage", b"\x00\x01\x02\x03garbage", "bad_json"),
    Case("json-array", "[1,2,3]", "bad_schema"),
    Case("json-null", "null", "bad_schema"),
    Case("no-stream-wrapper", '{"e":"trade","s":"BTCUSDT"}', "bad_schema"),
    Case("data-not-object", '{"stream":"btcusdt@trade","data":[1]}', "bad_schema"),
    Case("wrong-event-type", frame(9_000_001, e="kline"), "bad_schema"),
    Case("missing-price", frame(9_000_002, p=...), "bad_schema"),
    Case("unknown-symbol", frame(9_000_003, s="DOGEUSDT"), "unknown_symbol"),
    Case("sql-in-symbol", frame(9_000_004, s="BTCUSDT' OR 1=1; DROP TABLE trades;--"),
         "unknown_symbol"),
    Case("symbol-not-string", frame(9_000_005, s=5), "bad_schema"),
    Case("negative-trade-id", frame(-9_000_006), "bad_trade_id"),
    Case("trade-id-string", frame(9_000_007, t="9000007"), "bad_trade_id"),
    Case("trade-id-2pow70", frame(2**70), "bad_trade_id"),
    Case("trade-id-float", raw_frame(9_000_008, '"p":"1.0","q":"1.0","T":' + str(T))
         .replace('"t":9000008', '"t":9000008.0'), "bad_trade_id"),
    Case("negative-price", frame(9_000_009, p="-61800.30"), "bad_price"),
    Case("zero-price", frame(9_000_010, p="0.00000000"), "bad_price"),
    Case("nan-price-string", frame(9_000_011, p="NaN"), "bad_price"),
    Case("nan-literal", raw_frame(9_000_012, '"p":NaN,"q":"1","T":' + str(T)), "bad_json"),
    Case("infinity-price", frame(9_000_013, p="Infinity"), "bad_price"),
    Case("price-1e400-number", raw_frame(9_000_014, '"p":1e400,"q":"1","T":' + str(T)),
         "bad_json"),
    Case("price-400-digits", frame(9_000_015, p="9" * 400), "bad_price"),
    Case("price-exponent-string", frame(9_000_016, p="1e5"), "bad_price"),
    Case("price-json-number", frame(9_000_017, p=61800.3), "bad_price"),
    Case("sql-in-price", frame(9_000_018, p="1; DROP TABLE trades"), "bad_price"),
    Case("nul-byte-in-price", frame(9_000_019, p="1\x00"), "bad_price"),
    Case("zero-qty", frame(9_000_020, q="0"), "bad_qty"),
    Case("negative-qty", frame(9_000_021, q="-0.5"), "bad_qty"),
    Case("ts-far-past", frame(9_000_022, T=1_000), "bad_timestamp"),
    Case("ts-far-future", frame(9_000_023, T=NOW_MS + 2 * 86_400_000), "bad_timestamp"),
    Case("ts-2pow70", frame(9_000_024, T=2**70), "bad_timestamp"),
    Case("ts-string", frame(9_000_025, T=str(T)), "bad_timestamp"),
    Case("side-not-bool", frame(9_000_026, m="false"), "bad_side"),
    # Duplicate keys: the last value wins (as in every JSON parser used here).
    Case("duplicate-keys-last-bad",
         raw_frame(9_000_027, '"p":"61800.30","p":"-1","q":"1","T":' + str(T)), "bad_price"),
    Case("aggtrade-first-after-last", orjson.dumps({"stream": "btcusdt@aggTrade", "data": {
        "e": "aggTrade", "E": T, "s": "BTCUSDT", "a": 9_000_028, "p": "1.5", "q": "2",
        "f": 12, "l": 10, "T": T, "m": True, "M": True}}).decode(), "bad_trade_id"),
    Case("oversized-frame", '{"stream":"btcusdt@trade","data":"' + "x" * MAX_FRAME_BYTES + '"}',
         "oversized"),
    Case("deep-nesting", "[" * 5000 + "]" * 5000, "too_deep"),
    # The issue-12 frame: nesting inside a trade stream's data, which the typed decoder reached
    # (RecursionError) before any check did.
    Case("deep-nesting-in-trade-data",
         '{"stream":"btcusdt@trade","data":' + "[" * 5000 + "]" * 5000 + "}", "too_deep"),
    Case("deep-objects-in-other-stream",
         '{"stream":"btcusdt@depth","data":' + '{"a":' * 3000 + "1" + "}" * 3000 + "}",
         "too_deep"),
    Case("lone-surrogate-escape", frame(9_000_029, s="BTC\ud800USDT"), "bad_json"),
    Case("event-field-a-list", frame(9_000_030, e=["trade"]), "bad_schema"),
]
FIRST_AT = 20  # recorded frames before the first injection
SPACING = 25  # recorded frames between two injections


@dataclass
class FeedRun:
    producer: CliProcess
    letters: list[DeadLetter]
    kafka: set[tuple[str, int]]  # (symbol, trade id) of every trade in market.trades
    kafka_count: int
    trade_frames: list[str]  # the recorded frames served, in order


@pytest.fixture(scope="module")
def feed_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[FeedRun]:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=kafka_bootstrap, symbols=("BTCUSDT", "ETHUSDT"),
        topic_trades=f"test.trades.{suffix}", topic_deadletter=f"test.deadletter.{suffix}",
        topic_gaps=f"test.gaps.{suffix}", kafka_partitions=3)
    ensure_topics(kafka_bootstrap, [settings.topic_trades, settings.topic_deadletter,
                                    settings.topic_gaps], 3)
    injected: list[tuple[int, str | bytes]] = [(FIRST_AT + i * SPACING, c.raw)
                                               for i, c in enumerate(FEED)]
    log = tmp_path_factory.mktemp("poison-feed") / "produce.log"
    with FakeBinance(recorded_frames(), plans=[Plan(inject=injected)], fps=3000) as fake:
        trade_frames = fake.frames_for(TRADE_STREAMS)
        producer = CliProcess(["produce", "--source", "binance"],
                              settings.replace(binance_ws_url=fake.url), log)
        try:
            def complete() -> bool:
                producer.assert_alive()
                return len(dead_letters(settings)) >= len(FEED) and sum(
                    1 for _ in read_topic(kafka_bootstrap, settings.topic_trades)
                ) >= len(trade_frames)

            wait_until(complete, 90, "every trade and every dead letter", interval=0.5)
            trades = [decode_trade(m.value())
                      for m in read_topic(kafka_bootstrap, settings.topic_trades)]
            yield FeedRun(producer, dead_letters(settings),
                          {(t["symbol"], t["trade_id"]) for t in trades}, len(trades),
                          trade_frames)
        finally:
            producer.stop()


@pytest.mark.parametrize("case", FEED, ids=ids(FEED))
def test_bad_frame_is_dead_lettered_and_the_next_trade_flows(feed_run: FeedRun,
                                                             case: Case) -> None:
    feed_run.producer.assert_alive()
    mine = [d for d in feed_run.letters if raw_bytes(d) == case.raw_bytes]
    assert [(d["reason"], d["source"]) for d in mine] == [(case.outcome, "binance-ws")], (
        case.id, [(d["reason"], d["detail"]) for d in mine])
    assert mine[0]["detail"]
    record("feed", case.id, f'{mine[0]["reason"]}: {mine[0]["detail"]}')
    # The frame the server sent right after this one is a good trade: it must be in Kafka.
    following = orjson.loads(feed_run.trade_frames[FIRST_AT + FEED.index(case) * SPACING])
    assert (following["data"]["s"], following["data"]["t"]) in feed_run.kafka


def test_no_other_dead_letter_and_every_good_trade_once(feed_run: FeedRun) -> None:
    assert len(feed_run.letters) == len(FEED)
    want = {(d["s"], d["t"]) for d in (orjson.loads(f)["data"] for f in feed_run.trade_frames)}
    assert feed_run.kafka == want and feed_run.kafka_count == len(want)
