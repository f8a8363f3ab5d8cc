"""The stream stage against a real broker and Redis: recorded Binance trades in, exact candles
out — to market.candles, to Redis (latest + pub/sub) and to Celery task queues."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson
import redis

from core import redis_keys
from core.candles import Candle
from core.kafka import read_topic
from core.settings import Settings
from tests.core.test_candles import ALL, assert_same, offline, recorded_trades
from workers.celery_app import make_app
from workers.stream.stage import StreamStage, drop_checkpoints


def run_stage(settings: Settings, ns: str, until_trades: int, timeout: float = 60.0
              ) -> StreamStage:
    stage = StreamStage(settings, make_app(settings), ns=ns)
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout
    while stage.stats.trades + stage.stats.duplicates < until_trades:
        assert thread.is_alive() and time.monotonic() < deadline, stage.stats
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    return stage


def closed_candles(settings: Settings) -> list[Candle]:
    return [msgspec.json.decode(m.value() or b"", type=Candle)
            for m in read_topic(settings.kafka_bootstrap, settings.topic_candles)]


def task_args(redis_url: str, queue: str) -> Iterator[Any]:
    """The args of every task waiting in a Celery queue (kombu's Redis message format)."""
    client = redis.Redis.from_url(redis_url)
    try:
        for raw in client.lrange(queue, 0, -1):
            body = orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))
            yield body[0]
    finally:
        client.close()


def expected(symbol: str) -> dict[str, list[Candle]]:
    trades = recorded_trades(symbol.lower())
    out = {}
    for tf in ALL:
        candles = offline(trades, symbol, tf)
        out[tf] = candles
    return out


def assert_closed_as_offline(got: list[Candle]) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for tf, want in expected(symbol).items():
            mine = sorted((c for c in got if c.symbol == symbol and c.timeframe == tf),
                          key=lambda c: c.open_time)
            # History is closed by its own trades only: the last range of each stays open.
            assert_same(mine, want[:-1])


def test_recorded_trades_become_exact_candles_everywhere(
    stage_settings: Settings, filled: int, namespace: str, redis_url: str
) -> None:
    stage = run_stage(stage_settings, namespace, filled)
    assert stage.stats.trades == filled and stage.stats.rejected == 0

    got = closed_candles(stage_settings)
    assert_closed_as_offline(got)
    client = redis.Redis.from_url(redis_url)
    try:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            for tf, want in expected(symbol).items():
                latest = client.get(redis_keys.candle(namespace, symbol, tf))
                forming = msgspec.json.decode(latest or b"", type=Candle)
                last = want[-1]
                last.closed = False
                assert_same([forming], [last])
    finally:
        client.close()

    rows = [row for ns, trades in task_args(redis_url, f"{namespace}.persist")
            for row in trades if ns == namespace]
    assert len(rows) == filled
    assert len({(r[1], r[2]) for r in rows}) == filled  # each trade once
    handed = [Candle(**c) for ns, cs in task_args(redis_url, f"{namespace}.indicators")
              for c in cs]
    assert sorted(handed, key=lambda c: (c.symbol, c.timeframe, c.open_time)) == sorted(
        got, key=lambda c: (c.symbol, c.timeframe, c.open_time))


def test_a_restarted_stage_resumes_from_its_checkpoint(
    stage_settings: Settings, filled: int, namespace: str, redis_url: str
) -> None:
    first = run_stage(stage_settings, namespace, filled // 3)
    second = run_stage(stage_settings, namespace, filled - first.stats.trades)
    assert first.stats.trades + second.stats.trades == filled
    assert_closed_as_offline(closed_candles(stage_settings))
    rows = [row for _, trades in task_args(redis_url, f"{namespace}.persist") for row in trades]
    assert len(rows) == filled
    # The counters the API's /api/pipeline/stats reads, saved with each checkpoint.
    client = redis.Redis.from_url(redis_url)
    try:
        counters = client.hgetall(redis_keys.stream_stats(namespace))
    finally:
        client.close()
    assert float(counters[b"trades"]) == filled
    assert float(counters[b"batches"]) == first.stats.batches + second.stats.batches


def test_checkpoints_of_a_recreated_topic_are_dropped(
    stage_settings: Settings, filled: int, namespace: str, redis_url: str
) -> None:
    run_stage(stage_settings, namespace, filled)
    client = redis.Redis.from_url(redis_url)
    try:
        def saved() -> list[bytes]:
            return list(client.scan_iter(match=f"alphaplus:{namespace}:stream:checkpoint:*"))

        assert saved()
        other = redis_keys.stream_checkpoint(namespace, "another-group", "t", 0)
        client.set(other, b"{}")
        dropped = drop_checkpoints(client, namespace, stage_settings.stream_group,
                                   stage_settings.topic_trades)
        assert dropped >= 1
        assert saved() == [other.encode()]  # only that group's, on that topic
    finally:
        client.close()


def test_a_message_that_is_not_a_trade_is_dead_lettered_and_the_partition_goes_on(
    stage_settings: Settings, namespace: str
) -> None:
    from confluent_kafka import Producer

    good = orjson.dumps({"v": 1, "exchange": "binance", "market": "spot", "symbol": "BTCUSDT",
                         "trade_id": 1, "price": "10.5", "qty": "1", "ts": 1723161600000,
                         "buyer_maker": False, "recv_ts": 1723161600001})
    p = Producer({"bootstrap.servers": stage_settings.kafka_bootstrap})
    for value in (b"not json", b'{"symbol": "BTCUSDT"}', good):
        p.produce(stage_settings.topic_trades, value, b"BTCUSDT", partition=0)
    p.flush(10)
    stage = run_stage(stage_settings, namespace, 1)
    assert stage.stats.rejected == 2
    letters = [orjson.loads(m.value() or b"")
               for m in read_topic(stage_settings.kafka_bootstrap,
                                   stage_settings.topic_deadletter)]
    assert [(d["reason"], d["raw"]) for d in letters] == [
        ("bad_schema", "not json"), ("bad_schema", '{"symbol": "BTCUSDT"}')]


def test_closed_candles_form_a_bounded_window_in_redis(
    stage_settings: Settings, filled: int, namespace: str, redis_url: str
) -> None:
    settings = stage_settings.replace(redis_window=5)
    run_stage(settings, namespace, filled)
    client = redis.Redis.from_url(redis_url)
    try:
        raw: list[bytes] = client.zrange(  # type: ignore[assignment]
            redis_keys.candle_window(namespace, "BTCUSDT", "1m"), 0, -1)
    finally:
        client.close()
    window = [msgspec.json.decode(r, type=Candle) for r in raw]
    want = expected("BTCUSDT")["1m"][:-1][-5:]
    assert_same(window, want)
