"""The two-layer cache: MemoryCache alone, then CacheManager on real Redis (the machine's, in a
namespace of the test's own; or a redis-server of the test's own where it is stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import REGISTRY, generate_latest

from api.cache import CacheManager, MemoryCache
from api.redis_link import RedisLink
from api.updates import Update
from core import redis_keys
from infra.stack.redis import EmbeddedRedis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- MemoryCache


def test_lru_keeps_the_most_recently_used_within_its_size() -> None:
    cache = MemoryCache(3, ttl_s=60)
    for key in "abc":
        cache.set(key, key.encode())
    assert cache.get("a") == b"a"  # a is now the most recent
    cache.set("d", b"d")
    assert len(cache) == 3
    assert cache.get("b") is None
    assert list(cache) == ["c", "a", "d"]
    cache.set("c", b"c2")  # replacing makes it the most recent too
    cache.set("e", b"e")
    assert list(cache) == ["d", "c", "e"] and cache.get("c") == b"c2"


def test_entries_expire_after_their_ttl() -> None:
    cache = MemoryCache(10, ttl_s=0.05)
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    time.sleep(0.08)
    assert cache.get("k") is None
    assert len(cache) == 0
    cache.set("k", b"v2")  # a new entry gets a new lifetime
    assert cache.get("k") == b"v2"


def test_drop_tag_drops_only_the_entries_carrying_it() -> None:
    cache = MemoryCache(10, ttl_s=60)
    cache.set("m1", b"1", tags=["BTCUSDT:1m"])
    cache.set("m2", b"2", tags=["BTCUSDT:1m", "BTCUSDT:signals"])
    cache.set("s1", b"3", tags=["BTCUSDT:signals"])
    cache.set("e1", b"4", tags=["ETHUSDT:1m"])
    cache.set("plain", b"5")
    assert cache.drop_tag("BTCUSDT:1m") == 2
    assert cache.get("m1") is None and cache.get("m2") is None
    assert cache.drop_tag("BTCUSDT:signals") == 1  # m2 went already
    assert cache.drop_tag("BTCUSDT:1m") == 0
    assert sorted(cache) == ["e1", "plain"]


def test_a_replaced_or_evicted_entry_leaves_its_old_tags() -> None:
    cache = MemoryCache(2, ttl_s=60)
    cache.set("k", b"1", tags=["t1"])
    cache.set("k", b"2", tags=["t2"])
    assert cache.drop_tag("t1") == 0
    assert cache.get("k") == b"2"
    cache.set("x", b"x", tags=["t3"])
    cache.set("y", b"y", tags=["t3"])  # evicts k
    assert cache.drop_tag("t2") == 0
    assert cache.drop_tag("t3") == 2 and len(cache) == 0


def test_clear_all_or_by_key() -> None:
    cache = MemoryCache(10, ttl_s=60)
    for key in ("market:a", "market:b", "signals:a"):
        cache.set(key, b"v", tags=["t"])
    assert cache.clear(lambda k: k.startswith("market:")) == 2
    assert list(cache) == ["signals:a"]
    assert cache.clear() == 1 and len(cache) == 0 and cache.drop_tag("t") == 0
    with pytest.raises(ValueError):
        MemoryCache(0, 1.0)


# -- CacheManager


class Loader:
    """A load() that counts its calls, returns the next of `values` (the last repeats), and
    may wait for `gate` or raise."""

    def __init__(self, *values: bytes, delay: float = 0.0, error: Exception | None = None,
                 gate: asyncio.Event | None = None) -> None:
        self.values = list(values)
        self.delay = delay
        self.error = error
        self.gate = gate
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self) -> bytes:
        self.calls += 1
        n = self.calls
        self.started.set()
        if self.gate is not None and n == 1:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.values[min(n, len(self.values)) - 1]


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_url)
    await link.start()
    assert link.enabled
    yield link
    await link.close()


def manager(link: RedisLink, ns: str, ttl_s: float = 60.0) -> CacheManager:
    return CacheManager(link, ns, size=100, ttl_s=ttl_s, redis_ttl_s=30)


async def redis_value(link: RedisLink, ns: str, key: str) -> bytes | None:
    return cast(bytes | None, await link.client.get(redis_keys.api_cache(ns, key)))


@pytest.mark.anyio
async def test_a_miss_loads_once_and_fills_both_layers(link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    load = Loader(b'{"v":1}')
    assert await cache.get("k", load, tags=["BTCUSDT:1m"]) == b'{"v":1}'
    assert load.calls == 1
    assert cache.memory.get("k") == b'{"v":1}'
    assert await redis_value(link, namespace, "k") == b'{"v":1}'
    assert 0 < await link.client.ttl(redis_keys.api_cache(namespace, "k")) <= 30
    tagset = redis_keys.api_cache_tag(namespace, "BTCUSDT:1m")
    assert await link.client.smembers(tagset) == {redis_keys.api_cache(namespace, "k").encode()}
    assert 0 < await link.client.ttl(tagset) <= 30

    assert await cache.get("k", load, tags=["BTCUSDT:1m"]) == b'{"v":1}'
    assert load.calls == 1
    stats = cache.stats()
    assert set(stats) == {"memory_hits", "redis_hits", "misses", "hit_rate",
                          "avg_response_time_ms", "memory_cache_size", "redis_enabled"}
    assert (stats["memory_hits"], stats["redis_hits"], stats["misses"]) == (1, 0, 1)
    assert stats["hit_rate"] == 0.5 and stats["memory_cache_size"] == 1
    assert stats["redis_enabled"] is True
    assert isinstance(stats["avg_response_time_ms"], float) and stats["avg_response_time_ms"] > 0


@pytest.mark.anyio
async def test_a_redis_hit_fills_memory(link: RedisLink, namespace: str) -> None:
    first, second = manager(link, namespace), manager(link, namespace)  # two API processes
    await first.get("k", Loader(b"body"))
    load = Loader(b"other")
    assert await second.get("k", load) == b"body"
    assert load.calls == 0
    assert second.memory.get("k") == b"body"
    assert await second.get("k", load) == b"body"
    stats = second.stats()
    assert (stats["memory_hits"], stats["redis_hits"], stats["misses"]) == (1, 1, 0)
    assert stats["hit_rate"] == 1.0


@pytest.mark.anyio
async def test_without_the_redis_layer_only_memory_is_filled(link: RedisLink,
                                                             namespace: str) -> None:
    first, second = manager(link, namespace), manager(link, namespace)
    assert await first.get("live", Loader(b"1"), tags=["BTCUSDT:1m"], redis_layer=False) == b"1"
    assert first.memory.get("live") == b"1"
    assert await redis_value(link, namespace, "live") is None
    assert not await link.client.exists(redis_keys.api_cache_tag(namespace, "BTCUSDT:1m"))
    load = Loader(b"2")
    assert await second.get("live", load, redis_layer=False) == b"2" and load.calls == 1


@pytest.mark.anyio
async def test_concurrent_misses_share_one_load(link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    load = Loader(b"cold", delay=0.05)
    bodies = await asyncio.gather(*(cache.get("cold", load, tags=["BTCUSDT:1m"])
                                    for _ in range(50)))
    assert bodies == [b"cold"] * 50
    assert load.calls == 1
    assert cache.stats()["misses"] == 50
    assert await redis_value(link, namespace, "cold") == b"cold"


@pytest.mark.anyio
async def test_a_failed_load_reaches_every_waiter_and_caches_nothing(
        link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    load = Loader(delay=0.05, error=LookupError("db says no"))
    results = await asyncio.gather(*(cache.get("k", load) for _ in range(10)),
                                   return_exceptions=True)
    assert load.calls == 1
    assert all(isinstance(r, LookupError) and str(r) == "db says no" for r in results)
    assert cache.memory.get("k") is None and len(cache.memory) == 0
    assert await redis_value(link, namespace, "k") is None
    ok = Loader(b"fine")
    assert await cache.get("k", ok) == b"fine" and ok.calls == 1


@pytest.mark.anyio
async def test_a_load_in_flight_during_an_invalidation_is_not_cached(
        link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    gate = asyncio.Event()
    load = Loader(b"old", b"new", gate=gate)
    first = asyncio.create_task(cache.get("k", load, tags=["BTCUSDT:1m"]))
    await load.started.wait()
    await cache.invalidate("BTCUSDT:1m")
    # A get after the invalidation does not join the older load (which waits for the gate
    # still): it loads anew.
    assert await asyncio.wait_for(cache.get("k", load, tags=["BTCUSDT:1m"]), 2) == b"new"
    assert load.calls == 2
    gate.set()
    assert await first == b"old"  # its own caller still gets it...
    assert cache.memory.get("k") == b"new"  # ...but it replaces nothing
    assert await redis_value(link, namespace, "k") == b"new"


@pytest.mark.anyio
async def test_an_invalidated_load_alone_leaves_both_layers_empty(
        link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    gate = asyncio.Event()
    load = Loader(b"old", gate=gate)
    first = asyncio.create_task(cache.get("k", load, tags=["ETHUSDT:5m", "ETHUSDT:signals"]))
    await load.started.wait()
    await cache.invalidate("ETHUSDT:signals")
    gate.set()
    assert await first == b"old"
    assert cache.memory.get("k") is None
    assert await redis_value(link, namespace, "k") is None


@pytest.mark.anyio
async def test_invalidation_removes_the_redis_entry_for_every_process(
        link: RedisLink, namespace: str) -> None:
    first, second = manager(link, namespace), manager(link, namespace)
    await first.get("btc", Loader(b"btc"), tags=["BTCUSDT:1m"])
    await first.get("eth", Loader(b"eth"), tags=["ETHUSDT:1m"])
    await second.invalidate("BTCUSDT:1m")
    assert await redis_value(link, namespace, "btc") is None
    assert not await link.client.exists(redis_keys.api_cache_tag(namespace, "BTCUSDT:1m"))
    assert await redis_value(link, namespace, "eth") == b"eth"
    load = Loader(b"btc2")
    assert await second.get("btc", load, tags=["BTCUSDT:1m"]) == b"btc2" and load.calls == 1
    eth = Loader(b"never")
    assert await second.get("eth", eth) == b"eth" and eth.calls == 0


@pytest.mark.anyio
async def test_updates_invalidate_their_tags(link: RedisLink, namespace: str) -> None:
    cache, other = manager(link, namespace), manager(link, namespace)
    tags = {"m1": "BTCUSDT:1m", "m5": "BTCUSDT:5m", "sig": "BTCUSDT:signals",
            "eth": "ETHUSDT:1m"}
    for key, tag in tags.items():
        await cache.get(key, Loader(key.encode()), tags=[tag])

    def update(kind: str, symbol: str, tf: str) -> Update:
        return Update(kind, symbol, tf, b"{}", time.monotonic())

    async def left() -> set[str]:
        return {k for k in tags if cache.memory.get(k) is not None
                and await redis_value(link, namespace, k) is not None}

    await other.on_update(update("kline", "BTCUSDT", "1m"))  # Redis layer: another process
    await cache.on_update(update("kline", "BTCUSDT", "1m"))
    assert await left() == {"m5", "sig", "eth"}
    await cache.on_update(update("indicators", "ETHUSDT", "1m"))
    assert await left() == {"m5", "sig"}
    await cache.on_update(update("patterns", "BTCUSDT", "5m"))
    assert await left() == set()


@pytest.mark.anyio
async def test_clear_by_symbol_timeframe_pattern_and_all(link: RedisLink,
                                                         namespace: str) -> None:
    cache = manager(link, namespace)
    entries = {
        "market:BTCUSDT:1m": "BTCUSDT:1m", "market:BTCUSDT:5m": "BTCUSDT:5m",
        "signals:BTCUSDT": "BTCUSDT:signals", "market:ETHUSDT:1m": "ETHUSDT:1m",
        "market:ETHUSDT:5m": "ETHUSDT:5m", "signals:ETHUSDT": "ETHUSDT:signals",
    }

    async def fill(only_redis: Callable[[str], bool] = lambda k: False) -> None:
        for key, tag in entries.items():
            await cache.get(key, Loader(key.encode()), tags=[tag])
            if only_redis(key):
                cache.memory.clear(key.__eq__)

    async def present() -> set[str]:
        in_memory = {k for k in entries if cache.memory.get(k) is not None}
        in_redis = {k for k in entries if await redis_value(link, namespace, k) is not None}
        return in_memory | in_redis

    # Some entries only in Redis (as after this process restarted): still counted and dropped.
    await fill(only_redis=lambda k: k.startswith("signals:"))
    assert await cache.clear(symbol="btcusdt") == 3
    assert await present() == {"market:ETHUSDT:1m", "market:ETHUSDT:5m", "signals:ETHUSDT"}

    await fill()
    assert await cache.clear(timeframe="1m") == 2
    assert await present() == set(entries) - {"market:BTCUSDT:1m", "market:ETHUSDT:1m"}

    await fill()
    assert await cache.clear(symbol="ETHUSDT", timeframe="5m") == 1
    assert "market:ETHUSDT:5m" not in await present()

    await fill()
    assert await cache.clear(pattern="market:*USDT:5m") == 2
    assert await present() == set(entries) - {"market:BTCUSDT:5m", "market:ETHUSDT:5m"}

    await fill()
    assert await cache.clear() == 6
    assert await present() == set()
    assert not [k async for k in link.client.scan_iter(
        match=f"alphaplus:{namespace}:api-cache*")]
    assert await cache.clear() == 0

    await fill()  # criteria combine: this symbol's entries whose key matches too
    assert await cache.clear(symbol="BTCUSDT", pattern="market:*") == 2
    assert await present() == set(entries) - {"market:BTCUSDT:1m", "market:BTCUSDT:5m"}
    assert await cache.clear(timeframe="5m", pattern="*ETH*") == 1
    assert await present() == {"market:ETHUSDT:1m", "signals:BTCUSDT", "signals:ETHUSDT"}


@pytest.mark.anyio
async def test_prometheus_sees_the_counters(link: RedisLink, namespace: str) -> None:
    cache = manager(link, namespace)
    await cache.get("k", Loader(b"v"))
    await cache.get("k", Loader(b"v"))
    text = generate_latest(REGISTRY).decode()
    for line in (f'alphaplus_api_cache_requests_total{{layer="memory",ns="{namespace}"}} 1.0',
                 f'alphaplus_api_cache_requests_total{{layer="miss",ns="{namespace}"}} 1.0',
                 f'alphaplus_api_cache_size{{ns="{namespace}"}} 1.0',
                 f'alphaplus_api_cache_redis_enabled{{ns="{namespace}"}} 1.0'):
        assert line in text


# -- Redis away: a redis-server of the test's own, stopped and started again.


async def timed_get(cache: CacheManager, key: str, load: Loader,
                    tags: tuple[str, ...] = ()) -> bytes:
    started = time.perf_counter()
    body = await cache.get(key, load, tags=tags)
    assert time.perf_counter() - started < 1.0, "a request waited on a dead Redis"
    return body


async def wait_enabled(link: RedisLink, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not link.enabled:
        assert time.monotonic() < deadline, "the link did not come back"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_requests_answer_without_redis_and_the_layer_comes_back(tmp_path: Path) -> None:
    server = await asyncio.to_thread(EmbeddedRedis(tmp_path / "r1").start)
    link = RedisLink(server.url, retry_interval_s=0.2, op_timeout_s=0.5)
    await link.start()
    cache = manager(link, "down")
    try:
        await cache.get("a", Loader(b"a"), tags=["BTCUSDT:1m"])
        await asyncio.to_thread(server.stop)

        assert await timed_get(cache, "a", Loader(b"never")) == b"a"  # memory
        b = Loader(b"b")
        assert await timed_get(cache, "b", b, tags=("BTCUSDT:1m",)) == b"b" and b.calls == 1
        assert cache.stats()["redis_enabled"] is False
        cache.memory.clear()
        a = Loader(b"a-from-db")
        assert await timed_get(cache, "a", a) == b"a-from-db" and a.calls == 1
        started = time.perf_counter()
        await cache.invalidate("BTCUSDT:1m")  # cannot reach Redis: must not fail nor wait
        assert time.perf_counter() - started < 0.1
        c = Loader(b"c")
        bodies = await asyncio.gather(*(timed_get(cache, "c", c) for _ in range(20)))
        assert bodies == [b"c"] * 20 and c.calls == 1

        server = await asyncio.to_thread(
            EmbeddedRedis(tmp_path / "r2", port=server.port).start)
        await wait_enabled(link)
        assert cache.stats()["redis_enabled"] is True
        d = Loader(b"d")
        assert await timed_get(cache, "d", d) == b"d"
        assert await link.client.get(redis_keys.api_cache("down", "d")) == b"d"
        other = manager(link, "down")
        never = Loader(b"never")
        assert await other.get("d", never) == b"d" and never.calls == 0
        assert other.stats()["redis_hits"] == 1
    finally:
        await link.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.anyio
async def test_an_invalidation_missed_while_redis_hung_is_replayed(tmp_path: Path) -> None:
    """Redis keeps its data but stops answering (SIGSTOP) while an update arrives: the entry
    it holds must not be served once it answers again."""
    server = await asyncio.to_thread(EmbeddedRedis(tmp_path / "r").start)
    link = RedisLink(server.url, retry_interval_s=0.2, op_timeout_s=0.3)
    await link.start()
    cache, other = manager(link, "hung"), manager(link, "hung")
    assert server.pid is not None
    try:
        await cache.get("k", Loader(b"old"), tags=["BTCUSDT:1m"])
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.perf_counter()
            await cache.invalidate("BTCUSDT:1m")  # the first Redis call pays op_timeout_s
            assert time.perf_counter() - started < 1.0
            assert not link.enabled
            fresh = Loader(b"new")
            assert await timed_get(cache, "k", fresh, tags=("BTCUSDT:1m",)) == b"new"
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await wait_enabled(link)
        cache.memory.clear()
        again = Loader(b"newer")
        assert await cache.get("k", again, tags=["BTCUSDT:1m"]) == b"newer"
        assert again.calls == 1  # the old Redis entry was not served
        assert await link.client.get(redis_keys.api_cache("hung", "k")) == b"newer"
        never = Loader(b"never")
        assert await other.get("k", never, tags=["BTCUSDT:1m"]) == b"newer"
    finally:
        await link.close()
        await asyncio.to_thread(server.stop)
