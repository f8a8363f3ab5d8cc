"""The pub/sub listener against real Redis servers: the machine's (the test's namespace) and
embedded redis-servers the tests start, stop and start again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from api.pubsub import UpdateListener
from api.updates import Update
from core import redis_keys
from core.candles import Candle
from infra.stack.ports import free_port
from infra.stack.redis import EmbeddedRedis

pytestmark = pytest.mark.anyio


def candle_json(close: float, trades: int = 1, symbol: str = "BTCUSDT", tf: str = "1m") -> bytes:
    return msgspec.json.encode(Candle(symbol, tf, 1_700_000_040_000, 1_700_000_099_999, 100.0,
                                      close + 1, 99.0, close, 1.5, 150.0, trades, 0.5, 50.0))


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Recorder:
    def __init__(self, name: str, calls: list[tuple[str, Update]],
                 fail_on: set[int] | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail_on = fail_on or set()
        self.seen = 0

    async def __call__(self, update: Update) -> None:
        self.seen += 1
        self.calls.append((self.name, update))
        if self.seen in self.fail_on:
            raise RuntimeError(f"{self.name} fails on update {self.seen}")


async def test_updates_reach_the_handlers_in_order_and_a_failing_handler_kills_nothing(
        redis_url: str, namespace: str) -> None:
    calls: list[tuple[str, Update]] = []
    cache = Recorder("cache", calls, fail_on={2})
    hub = Recorder("hub", calls)
    listener = UpdateListener(redis_url, namespace, [cache, hub])
    publisher = aioredis.Redis.from_url(redis_url)
    try:
        await listener.start()
        assert listener.connected  # start() returns once Redis confirmed the subscription
        published = [
            ("kline", "BTCUSDT", "1m", candle_json(101.5)),
            ("indicators", "ETHUSDT", "5m", b'{"values":{"rsi_14":55.5}}'),
            ("signals", "BTCUSDT", "1h", b'{"name":"rsi_oversold","direction":"buy"}'),
            ("patterns", "BTCUSDT", "1m", b'{"name":"hammer"}'),
        ]
        before = time.monotonic()
        for kind, symbol, tf, payload in published:
            assert await publisher.publish(redis_keys.channel(namespace, kind, symbol, tf),
                                           payload) == 1
        # Not updates: another namespace's channel is not ours; a malformed one of ours is
        # counted and ignored.
        await publisher.publish(redis_keys.channel("other-ns", "kline", "BTCUSDT", "1m"), b"{}")
        await publisher.publish(f"alphaplus:{namespace}:pub:trades:BTCUSDT", b"{}")
        await until(lambda: len(calls) == 2 * len(published) and listener.ignored == 1)

        assert [name for name, _ in calls] == ["cache", "hub"] * len(published)
        updates = [u for name, u in calls if name == "hub"]
        assert [(u.kind, u.symbol, u.timeframe, u.payload) for u in updates] == published
        assert all(u is c for u, (_, c) in zip(updates, calls[0::2], strict=True))
        assert all(before <= u.received <= time.monotonic() for u in updates)
        assert [u.received for u in updates] == sorted(u.received for u in updates)
        # The cache failed on the second update: counted, and the hub still got it.
        assert listener.handler_errors == 1
        assert listener.received == len(published) + 1
        assert listener.stats()["connected"] is True
    finally:
        await listener.close()
        await publisher.aclose()
    assert not listener.connected


async def test_start_with_redis_down_then_it_comes_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    calls: list[tuple[str, Update]] = []
    listener = UpdateListener(url, "live", [Recorder("hub", calls)])
    server: EmbeddedRedis | None = None
    try:
        t0 = time.monotonic()
        await listener.start()  # must not raise
        assert time.monotonic() - t0 < 2.5
        assert not listener.connected
        await asyncio.sleep(0.3)
        assert not listener.connected

        server = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis", port=port).start)
        await until(lambda: listener.connected)
        publisher = aioredis.Redis.from_url(url)
        try:
            await publisher.publish(redis_keys.channel("live", "kline", "ETHUSDT", "1m"),
                                    candle_json(5.0, symbol="ETHUSDT"))
            await until(lambda: len(calls) == 1)
        finally:
            await publisher.aclose()
        assert calls[0][1].symbol == "ETHUSDT"
        assert listener.reconnects == 0  # the first connection, not a reconnect
    finally:
        await listener.close()
        if server is not None:
            server.stop()


@pytest.mark.slow
async def test_reconnects_and_resubscribes_after_redis_restarts(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port, url = server.port, server.url
    calls: list[tuple[str, Update]] = []
    listener = UpdateListener(url, "live", [Recorder("hub", calls)])
    channel = redis_keys.channel("live", "kline", "BTCUSDT", "1m")
    try:
        await listener.start()
        assert listener.connected
        publisher = aioredis.Redis.from_url(url)
        await publisher.publish(channel, candle_json(1.0, trades=1))
        await until(lambda: len(calls) == 1)
        await publisher.aclose()

        await asyncio.to_thread(server.stop)
        await until(lambda: not listener.connected, timeout=5)
        await asyncio.sleep(0.5)  # a few failed attempts while it is down
        assert not listener.connected

        server = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis2", port=port).start)
        await until(lambda: listener.connected, timeout=10)
        assert listener.reconnects == 1
        publisher = aioredis.Redis.from_url(url)
        try:
            # Subscribed again, on the new server: it counts one subscriber.
            assert await publisher.publish(channel, candle_json(2.0, trades=2)) == 1
            await until(lambda: len(calls) == 2)
        finally:
            await publisher.aclose()
        assert msgspec.json.decode(calls[1][1].payload, type=Candle).close == 2.0
        assert listener.handler_errors == 0
    finally:
        await listener.close()
        server.stop()


async def test_a_silent_connection_is_dropped_and_reopened(tmp_path: Path) -> None:
    """A Redis that stops answering without closing the socket (SIGSTOP: like a network cut)
    is detected by the PING and reconnected to once it answers again."""
    import os
    import signal

    server = EmbeddedRedis(tmp_path / "redis").start()
    pid = server.pid
    assert pid is not None
    calls: list[tuple[str, Update]] = []
    listener = UpdateListener(server.url, "live", [Recorder("hub", calls)], ping_interval_s=0.3)
    try:
        await listener.start()
        assert listener.connected
        os.kill(pid, signal.SIGSTOP)
        try:
            # Nothing arrives for 0.3 s -> PING; no answer for 0.6 s more -> dropped.
            await until(lambda: not listener.connected, timeout=5)
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(lambda: listener.connected, timeout=10)
        assert listener.reconnects == 1
        publisher = aioredis.Redis.from_url(server.url)
        try:
            await publisher.publish(redis_keys.channel("live", "signals", "BTCUSDT", "1m"),
                                    b'{"name":"x"}')
            await until(lambda: len(calls) == 1)
        finally:
            await publisher.aclose()
    finally:
        await listener.close()
        server.stop()


def test_a_malformed_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError):
        UpdateListener("http://127.0.0.1:6379", "live", [])
