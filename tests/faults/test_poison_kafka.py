"""Poison written straight onto the trades topic (raw bytes, bypassing the producer's checks),
read by a real `alphaplus stream` process. Each bad message must reach the dead-letter topic
with its reason; the good trade right after it (the case's own symbol, so no case can disturb
another) must become exactly the candle it makes alone; and the stage must still run, and
start again from the checkpoint the corpus left.

This corpus found that the stage checked a message's types but not its values (a NaN price
went into candles and into a checkpoint that could not be loaded again) and that two messages
stopped it, again after every restart (bad UTF-8 inside a JSON string; a trade id beyond 64
bits): `core.validation.record_problem` and workers/stream/partition.py now refuse them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis
from confluent_kafka import Producer

from core import redis_keys
from core.kafka import ensure_topics
from core.models import DeadLetter
from core.serde import raw_bytes
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.faults.poison_corpus import Case, CliProcess, dead_letters, record, wait_until

TS = 1_723_161_600_000  # 2024-08-09 00:00 UTC: history, so no wall clock closes its candles
GOOD_PRICE = "100.5"


def trade(symbol: str, trade_id: int, over: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"v": 1, "exchange": "binance", "market": "spot", "symbol": symbol,
                            "trade_id": trade_id, "price": GOOD_PRICE, "qty": "2", "ts": TS,
                            "buyer_maker": False, "recv_ts": TS + 1}
    body.update(over or {})
    # json, not orjson: orjson refuses integers beyond 64 bits, which are part of the corpus.
    return json.dumps({k: v for k, v in body.items() if v is not ...},
                      separators=(",", ":")).encode()


def symbol_of(number: int) -> str:
    return f"P{number:02d}USDT"


# (case, extra marks). `{sym}` in a raw value is the case's own symbol.
KAFKA: list[tuple[Case, tuple[pytest.MarkDecorator, ...]]] = [
    (Case("not-json", b"not json at all", "bad_schema"), ()),
    (Case("truncated-json", b'{"v":1,"exchange":"binance","market":"sp', "bad_schema"), ()),
    (Case("tombstone-null-value", b"<None>", "bad_schema"), ()),
    (Case("invalid-utf8-bytes", b"\xff\xfe\xfd", "bad_schema"), ()),
    (Case("json-array", b"[1,2,3]", "bad_schema"), ()),
    (Case("deep-nesting", b"[" * 5000 + b"]" * 5000, "bad_schema"), ()),
    (Case("oversized-500kb", b'{"v":1,"pad":"' + b"x" * 500_000 + b'"}', "bad_schema"), ()),
    (Case("missing-fields", b'{"symbol":"{sym}","trade_id":1}', "bad_schema"), ()),
    (Case("price-json-number", b"price=61800.3", "bad_schema"), ()),
    (Case("ts-float", b"ts=1.7e12", "bad_schema"), ()),
    (Case("trade-id-string", b'trade_id="7"', "bad_schema"), ()),
    (Case("buyer-maker-string", b'buyer_maker="false"', "bad_schema"), ()),
    (Case("duplicate-keys-last-bad", b'dup:"ts":"soon"', "bad_schema"), ()),
    (Case("price-text", b'price="abc"', "bad_schema"), ()),
    (Case("sql-in-price", b"price=\"1; DROP TABLE trades;--\"", "bad_schema"), ()),
    (Case("nan-price", b'price="NaN"', "bad_price"), ()),
    (Case("infinity-price", b'price="Infinity"', "bad_price"), ()),
    (Case("price-1e400", b'price="1e400"', "bad_price"), ()),
    (Case("negative-price", b'price="-100.5"', "bad_price"), ()),
    (Case("zero-qty", b'qty="0"', "bad_qty"), ()),
    (Case("ts-far-future", b"ts=9999999999999", "bad_timestamp"), ()),
    (Case("ts-negative", b"ts=-5", "bad_timestamp"), ()),
    (Case("unknown-symbol-sql", b"symbol=\"X'; DROP TABLE trades;--\"", "unknown_symbol"),
     ()),
    (Case("invalid-utf8-in-string",
          b'{"v":1,"exchange":"binance","market":"spot","symbol":"\xff\xfe"}', "bad_schema"),
     ()),
    (Case("trade-id-2pow70", b"trade_id=1180591620717411303424", "bad_trade_id"), ()),
]
CASES = [case for case, _ in KAFKA]


def poison(case: Case, number: int) -> bytes | None:
    """The message value of a case: raw bytes, or a trade of the case's symbol (trade id 1)
    with one field replaced (`field=json`), or with a duplicate key (`dup:"key":json`)."""
    raw = case.raw_bytes
    sym = symbol_of(number)
    if raw == b"<None>":
        return None
    if raw.startswith(b"dup:"):
        good = trade(sym, 1)
        return good[:-1] + b"," + raw[4:] + b"}"
    key, eq, value = raw.partition(b"=")
    if eq and key.decode().isidentifier():
        return trade(sym, 1, {key.decode(): json.loads(value)})
    return raw.replace(b"{sym}", sym.encode())


def stage_settings(kafka_bootstrap: str, redis_url: str) -> tuple[Settings, str]:
    """Settings with topics, a consumer group and a Redis namespace of their own."""
    suffix = uuid.uuid4().hex[:10]
    ns = f"test-{suffix}"
    settings = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, celery_queue_prefix=ns,
        stream_group=f"{ns}-stream", timeframes=("1m",), symbols=("BTCUSDT",),
        topic_trades=f"test.trades.{suffix}", topic_candles=f"test.candles.{suffix}",
        topic_deadletter=f"test.deadletter.{suffix}", topic_gaps=f"test.gaps.{suffix}",
        kafka_partitions=1)
    ensure_topics(kafka_bootstrap, [settings.topic_trades, settings.topic_deadletter,
                                    settings.topic_candles], 1)
    return settings, ns


def write(settings: Settings, messages: list[tuple[str, bytes | None]]) -> None:
    """(symbol, value) messages onto partition 0 of the trades topic, in order."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "message.max.bytes": 2_000_000})
    for symbol, value in messages:
        producer.produce(settings.topic_trades, value, symbol.encode(), partition=0)
    assert producer.flush(30) == 0


class Candles:
    """The latest 1m candle of a symbol in a namespace, as the stage leaves it in Redis."""

    def __init__(self, redis_url: str, ns: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.ns = ns

    def latest(self, symbol: str) -> dict[str, Any] | None:
        """As a dict: a poisoned candle may not even decode as a `Candle` (NaN is null)."""
        raw = self.client.get(redis_keys.candle(self.ns, symbol, "1m"))
        return None if raw is None else cast(dict[str, Any], orjson.loads(raw))

    def close(self) -> None:
        self.client.close()


def only_the_good_trade(candle: dict[str, Any] | None) -> bool:
    """The candle holds one trade at the good price: nothing of a poison message leaked in."""
    return candle is not None and [candle[k] for k in (
        "trades", "open", "high", "low", "close", "volume", "open_time")] == [
        1, 100.5, 100.5, 100.5, 100.5, 2.0, TS]


@dataclass
class KafkaRun:
    settings: Settings
    ns: str
    stage: CliProcess
    log_dir: Path
    letters: list[DeadLetter]
    sent: dict[str, bytes | None]  # case id -> the value written
    candles: dict[str, dict[str, Any] | None]  # case id -> the latest 1m candle of its symbol


@pytest.fixture(scope="module")
def kafka_run(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[KafkaRun]:
    settings, ns = stage_settings(kafka_bootstrap, redis_url)
    # Written before the stage starts: it reads the topic from the start.
    sent: dict[str, bytes | None] = {}
    messages: list[tuple[str, bytes | None]] = []
    for number, case in enumerate(CASES):
        sent[case.id] = value = poison(case, number)
        messages += [(symbol_of(number), value), (symbol_of(number), trade(symbol_of(number), 2))]
    write(settings, messages)
    log_dir = tmp_path_factory.mktemp("poison-kafka")
    stage = CliProcess(["stream", "--namespace", ns], settings, log_dir / "stream.log")
    candles = Candles(redis_url, ns)
    run = KafkaRun(settings, ns, stage, log_dir, [], sent, {})
    try:
        # The last case's good trade is the last message: once its candle is out, all is read.
        def done() -> bool:
            run.stage.assert_alive()
            return candles.latest(symbol_of(len(CASES) - 1)) is not None

        wait_until(done, 60, "the stage to read the whole topic", interval=0.2)
        wait_until(lambda: len(dead_letters(settings)) >= sum(
            1 for _, marks in KAFKA if not marks), 20, "the dead letters")
        run.letters = dead_letters(settings)
        run.candles = {c.id: candles.latest(symbol_of(n)) for n, c in enumerate(CASES)}
        yield run
    finally:
        run.stage.stop()
        candles.close()
        delete_keys(redis_url, [redis_keys.namespace_pattern(ns),
                                *redis_keys.celery_queue_patterns(ns)])


@pytest.mark.parametrize("case", [pytest.param(c, marks=m, id=c.id) for c, m in KAFKA])
def test_bad_message_is_dead_lettered_and_the_next_trade_is_a_clean_candle(
    kafka_run: KafkaRun, case: Case
) -> None:
    kafka_run.stage.assert_alive()
    sent = kafka_run.sent[case.id] or b""
    mine = [d for d in kafka_run.letters if raw_bytes(d) == sent]
    record("kafka", case.id, "; ".join(f'{d["reason"]}: {d["detail"]}' for d in mine)
           or f"no dead letter; candle {kafka_run.candles[case.id]}")
    # The stage names itself and its consumer group: "stream:<group>".
    assert [(d["reason"], d["source"].partition(":")[0]) for d in mine] == [
        (case.outcome, "stream")], [(d["reason"], d["detail"]) for d in mine]
    assert only_the_good_trade(kafka_run.candles[case.id]), kafka_run.candles[case.id]


def test_a_restarted_stage_resumes_from_the_checkpoint_the_corpus_left(
    kafka_run: KafkaRun, redis_url: str
) -> None:
    """Runs after the corpus: the partition's stored checkpoint holds whatever it let in."""
    assert kafka_run.stage.stop() == 0, kafka_run.stage.log()[-3000:]
    write(kafka_run.settings, [("AFTERUSDT", trade("AFTERUSDT", 1))])
    kafka_run.stage = CliProcess(["stream", "--namespace", kafka_run.ns], kafka_run.settings,
                                 kafka_run.log_dir / "stream-restarted.log")
    candles = Candles(redis_url, kafka_run.ns)
    try:
        def done() -> bool:
            kafka_run.stage.assert_alive()
            return candles.latest("AFTERUSDT") is not None

        wait_until(done, 60, "the restarted stage to read the next trade", interval=0.2)
        assert only_the_good_trade(candles.latest("AFTERUSDT"))
    finally:
        candles.close()
