"""The API's two-layer cache of response bodies: process memory, then Redis, then the loader.

Values are the JSON bytes a route returns, so neither layer re-encodes them.

Layers. `CacheManager.get(key, load, tags=..., redis_layer=...)` looks in the in-process LRU
(`MemoryCache`), then in Redis (`redis_keys.api_cache(ns, key)`, shared by every API process,
`redis_ttl_s`), then calls `load()`. A hit fills the layers above it. `redis_layer=False` skips
Redis for data whose source already is Redis (the live candle, latest indicators): a copy there
would only add a second round trip and a second thing to invalidate.

Single flight. Concurrent gets of one key that miss share one `load()` (a task per key, which
every caller awaits shielded, so a caller that goes away does not cancel it for the others); if
it raises, every waiter gets the exception and nothing is cached.

Tags (the routes use these; `on_update` invalidates them as the workers publish):
    f"{SYMBOL}:{timeframe}"         live values of that symbol and timeframe (never in Redis)
    f"{SYMBOL}:{timeframe}:closed"  closed history of it (may be in the Redis layer)
    f"{SYMBOL}:signals"             signals and patterns of a symbol (any timeframe)
    a forming kline -> SYMBOL:tf (memory only); a closed kline or indicators -> SYMBOL:tf and
    SYMBOL:tf:closed; signals or patterns -> those and SYMBOL:signals

Staleness. `invalidate(tag)` drops memory entries with the tag, detaches in-flight loads that
carry it (a get arriving afterwards starts a new load instead of joining an older one) and bumps
the tag's generation, which a load compares before it fills a layer, so a result read before the
invalidation is returned to its own callers but never cached. Redis-layer entries are found
through a set per tag (`redis_keys.api_cache_tag(ns, tag)`, same TTL) and deleted with it in one
Lua script, atomic against a concurrent fill (SET + SADD in MULTI). The fence (bump + detach)
is raised again once Redis is done, so nothing read from Redis during the deletion is kept.
The script deletes keys it was not passed: fine on one Redis server, not on a Cluster.

Redis away. Every Redis operation goes through `RedisLink.call`; on `RedisDown` (or any other
Redis error) the cache skips that layer and a request never fails for it. An invalidation that
could not reach Redis is remembered and replayed once Redis answers (at the next invalidation or
Redis-layer miss), and until then reads of those tags skip the Redis layer; entries written by
another process in the meantime are bounded by the Redis-layer TTL, which is what bounds any
staleness a lost invalidation can cause.

Metrics. The hot path only bumps plain ints (a prometheus Counter.inc costs twice a memory hit);
a collector reads them at scrape time as `alphaplus_api_cache_requests_total{ns,layer}`
(layer memory|redis|miss), `alphaplus_api_cache_size{ns}` and
`alphaplus_api_cache_redis_enabled{ns}`.
"""

from __future__ import annotations

import asyncio
import builtins
import fnmatch
import functools
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.redis_link import RedisDown, RedisLink
from api.updates import Update
from core import redis_keys

log = logging.getLogger(__name__)

_now = time.monotonic
_clock = time.perf_counter
# How a closed candle shows in the stream stage's msgspec JSON (no spaces): finding it in the
# bytes is far cheaper than decoding every live update.
CLOSED_MARK = b'"closed":true'
T = TypeVar("T")
#: A clear SCANs the keyspace: more than one command's time, still bounded.
_CLEAR_TIMEOUT_S = 10.0

# KEYS: tag sets. Deletes every member key, then the sets; returns the keys that existed.
_INVALIDATE_LUA = """
local gone = {}
for _, tagset in ipairs(KEYS) do
  for _, key in ipairs(redis.call('SMEMBERS', tagset)) do
    if redis.call('DEL', key) == 1 then gone[#gone + 1] = key end
  end
  redis.call('DEL', tagset)
end
return gone
"""


class MemoryCache:
    """An LRU of `size` entries, each living `ttl_s`, with tags to drop entries by. Expired
    entries are removed when met (get, or eviction as the oldest), so `len` may count some."""

    def __init__(self, size: int, ttl_s: float) -> None:
        if size < 1:
            raise ValueError(f"cache size must be at least 1: {size}")
        self.size = size
        self.ttl_s = ttl_s
        # key -> (expires at, value, tags); order = recency, oldest first.
        self._data: OrderedDict[str, tuple[float, bytes, tuple[str, ...]]] = OrderedDict()
        self._tagged: dict[str, set[str]] = {}

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= _now():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return item[1]

    def set(self, key: str, value: bytes, tags: Iterable[str] = ()) -> None:
        tags = tuple(tags)
        if key in self._data:
            self._remove(key)
        self._data[key] = (_now() + self.ttl_s, value, tags)
        for tag in tags:
            self._tagged.setdefault(tag, set()).add(key)
        while len(self._data) > self.size:
            old, (_, _, old_tags) = self._data.popitem(last=False)
            self._unindex(old, old_tags)

    def drop_tag(self, tag: str) -> int:
        keys = self._tagged.pop(tag, None)
        if not keys:
            return 0
        for key in keys:
            self._remove(key)
        return len(keys)

    def tagged(self, match: Callable[[str], bool]) -> builtins.set[str]:
        """The keys of the entries carrying any tag for which `match` is true."""
        return {k for tag, keys in self._tagged.items() if match(tag) for k in keys}

    def clear(self, match: Callable[[str], bool] | None = None) -> int:
        """Drop every entry, or those whose key `match`es; returns how many."""
        if match is None:
            count = len(self._data)
            self._data.clear()
            self._tagged.clear()
            return count
        keys = [k for k in self._data if match(k)]
        for key in keys:
            self._remove(key)
        return len(keys)

    def __iter__(self) -> Iterator[str]:
        """The keys, oldest first (a copy: the cache may change while it is walked)."""
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def _remove(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._unindex(key, item[2])

    def _unindex(self, key: str, tags: tuple[str, ...]) -> None:
        for tag in tags:
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]


@dataclass(slots=True)
class _Flight:
    task: asyncio.Task[tuple[bytes, str]]
    tags: frozenset[str]


class CacheManager:
    def __init__(self, link: RedisLink, ns: str, *, size: int, ttl_s: float,
                 redis_ttl_s: int) -> None:
        self.link = link
        self.ns = ns
        self.redis_ttl_s = redis_ttl_s
        self.memory = MemoryCache(size, ttl_s)
        self._memory_get = self.memory.get  # bound once: the hit path is all lookups
        self._prefix = redis_keys.api_cache(ns, "")  # also checks ns
        self._script = link.client.register_script(_INVALIDATE_LUA)
        self._flights: dict[str, _Flight] = {}
        # Loads still running, detached ones included: the loop holds tasks only weakly.
        self._running: set[asyncio.Task[tuple[bytes, str]]] = set()
        self._generation: dict[str, int] = {}  # per tag; bumped by every invalidation
        self._epoch = 0  # bumped by clear()
        self._missed: set[str] = set()  # tags whose Redis-layer invalidation is owed
        self._memory_hits = 0
        self._redis_hits = 0
        self._misses = 0
        self._time_s = 0.0
        _MANAGERS.add(self)

    async def get(self, key: str, load: Callable[[], Awaitable[bytes]], *,
                  tags: Iterable[str] = (), redis_layer: bool = True) -> bytes:
        started = _clock()
        value = self._memory_get(key)
        if value is not None:
            self._memory_hits += 1
            self._time_s += _clock() - started
            return value
        flight = self._flights.get(key)
        if flight is None:
            tagset = frozenset((tags,) if isinstance(tags, str) else tags)
            task = asyncio.get_running_loop().create_task(
                self._fetch(key, load, tagset, redis_layer))
            flight = self._flights[key] = _Flight(task, tagset)
            self._running.add(task)
            task.add_done_callback(functools.partial(self._landed, key, flight))
        layer = "miss"
        try:
            body, layer = await asyncio.shield(flight.task)
            return body
        finally:
            if layer == "redis":
                self._redis_hits += 1
            else:
                self._misses += 1
            self._time_s += _clock() - started

    async def invalidate(self, *tags: str, redis_layer: bool = True) -> None:
        """Drop what carries any of `tags`; `redis_layer=False` for tags that are never cached
        in Redis (saves the listener a Redis round trip per live update)."""
        if not tags:
            return
        for tag in tags:
            self.memory.drop_tag(tag)
        self._fence(tags)
        if redis_layer:
            await self._redis_invalidate(tags)
            self._fence(tags)

    async def on_update(self, update: Update) -> None:
        """An UpdateHandler: drops what the update makes stale (see the module docstring)."""
        live = f"{update.symbol}:{update.timeframe}"
        if update.kind == "kline" and CLOSED_MARK not in update.payload:
            # A forming candle: only live entries change; history (in Redis too) stays valid.
            await self.invalidate(live, redis_layer=False)
            return
        tags = [live, f"{live}:closed"]
        if update.kind in ("signals", "patterns"):
            tags.append(f"{update.symbol}:signals")
        await self.invalidate(*tags)

    async def clear(self, *, symbol: str | None = None, timeframe: str | None = None,
                    pattern: str | None = None) -> int:
        """The admin clear, in both layers: everything, or the entries of a symbol and/or a
        timeframe (by their tags), and/or those whose key matches the glob `pattern`; given
        criteria must all hold. Returns how many distinct keys were dropped from either layer.
        A Redis that is away keeps its entries (their TTL bounds them)."""
        self._epoch += 1  # no load in flight now may fill anything
        self._flights.clear()
        sym = symbol.upper() if symbol else None
        tag_match = _tag_matcher(sym, timeframe) if sym or timeframe else None

        def wanted(key: str) -> bool:
            return pattern is None or fnmatch.fnmatchcase(key, pattern)

        chosen = {k for k in (self.memory.tagged(tag_match) if tag_match else self.memory)
                  if wanted(k)}
        self.memory.clear(chosen.__contains__)
        tag_glob = (f"{_glob_escape(sym) if sym else '*'}:"
                    f"{_glob_escape(timeframe) if timeframe else '*'}")
        return len(chosen | await self._redis_clear(tag_glob, tag_match, pattern, wanted))

    def stats(self) -> dict[str, object]:
        total = self._memory_hits + self._redis_hits + self._misses
        return {
            "memory_hits": self._memory_hits,
            "redis_hits": self._redis_hits,
            "misses": self._misses,
            "hit_rate": (self._memory_hits + self._redis_hits) / total if total else 0.0,
            "avg_response_time_ms": self._time_s * 1000 / total if total else 0.0,
            "memory_cache_size": len(self.memory),
            "redis_enabled": self.link.enabled,
        }

    # -- internals

    async def _fetch(self, key: str, load: Callable[[], Awaitable[bytes]],
                     tags: frozenset[str], redis_layer: bool) -> tuple[bytes, str]:
        snap = self._snapshot(tags)
        if redis_layer and self._missed and self.link.enabled:
            await self._redis_invalidate(())  # replay what Redis missed before trusting it
        if redis_layer and not (self._missed & tags):
            cached = await self._redis_get(key)
            if cached is not None:
                if self._snapshot(tags) == snap:
                    self.memory.set(key, cached, tags)
                return cached, "redis"
        value = await load()
        if redis_layer and self._snapshot(tags) == snap:
            await self._redis_fill(key, value, tags)
            if self._snapshot(tags) != snap:
                await self._redis_drop(key)  # an invalidation ran while we wrote
        if self._snapshot(tags) == snap:
            self.memory.set(key, value, tags)
        return value, "miss"

    def _landed(self, key: str, flight: _Flight, task: asyncio.Task[tuple[bytes, str]]) -> None:
        self._running.discard(task)
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # the callers have it; keeps asyncio from logging it again

    def _snapshot(self, tags: frozenset[str]) -> tuple[int, ...]:
        return (self._epoch, *(self._generation.get(t, 0) for t in tags))

    def _fence(self, tags: Iterable[str]) -> None:
        """Loads that started before now must not fill a layer, nor be joined by new gets."""
        tagset = frozenset(tags)
        for tag in tagset:
            self._generation[tag] = self._generation.get(tag, 0) + 1
        for key in [k for k, f in self._flights.items() if f.tags & tagset]:
            del self._flights[key]

    async def _redis_get(self, key: str) -> bytes | None:
        async def read(r: Redis) -> bytes | None:
            return cast(bytes | None, await r.get(self._prefix + key))

        return await self._redis(read, f"read of {key}")

    async def _redis_fill(self, key: str, value: bytes, tags: frozenset[str]) -> None:
        async def write(r: Redis) -> bool:
            pipe = r.pipeline(transaction=True)  # atomic against the invalidation script
            pipe.set(self._prefix + key, value, ex=self.redis_ttl_s)
            for tag in tags:
                tagset = redis_keys.api_cache_tag(self.ns, tag)
                pipe.sadd(tagset, self._prefix + key)
                pipe.expire(tagset, self.redis_ttl_s)
            await pipe.execute()
            return True

        await self._redis(write, f"fill of {key}")

    async def _redis_drop(self, key: str) -> None:
        async def drop(r: Redis) -> bool:
            await r.delete(self._prefix + key)
            return True

        await self._redis(drop, f"drop of {key}")

    async def _redis_invalidate(self, tags: Iterable[str]) -> None:
        owed = set(tags) | self._missed
        if not owed:
            return
        tagsets = [redis_keys.api_cache_tag(self.ns, t) for t in owed]

        async def run(r: Redis) -> bool:
            await self._script(keys=tagsets, client=r)
            return True

        if await self._redis(run, f"invalidation of {sorted(owed)}"):
            self._missed -= owed
        else:
            self._missed |= owed

    async def _redis_clear(self, tag_glob: str, tag_match: Callable[[str], bool] | None,
                           pattern: str | None, wanted: Callable[[str], bool]) -> set[str]:
        """The Redis side of clear(): returns the cache keys it deleted."""
        ns = _glob_escape(self.ns)
        tag_prefix = redis_keys.api_cache_tag(self.ns, "")

        async def candidates(r: Redis) -> tuple[set[bytes], list[bytes]]:
            """(entries that may go, tag sets that go with them)."""
            if tag_match is None:
                entries = {k async for k in r.scan_iter(
                    match=redis_keys.api_cache(ns, pattern or "*"), count=1000)}
                tagsets = [] if pattern else [k async for k in r.scan_iter(
                    match=redis_keys.api_cache_tag(ns, "*"), count=1000)]
                return entries, tagsets
            tagsets = [k async for k in r.scan_iter(
                match=redis_keys.api_cache_tag(ns, tag_glob), count=1000)
                if tag_match(k.decode()[len(tag_prefix):])]
            pipe = r.pipeline(transaction=False)
            for tagset in tagsets:
                pipe.smembers(tagset)
            members: list[set[bytes]] = await pipe.execute() if tagsets else []
            return set().union(*members), [] if pattern else tagsets

        async def run(r: Redis) -> set[str]:
            entries, tagsets = await candidates(r)
            keys = [k for k in entries if wanted(_cache_key(k, self._prefix))]
            gone: set[str] = set()
            for i in range(0, len(keys), 1000):
                pipe = r.pipeline(transaction=False)
                for k in keys[i:i + 1000]:
                    pipe.delete(k)
                for k, n in zip(keys[i:i + 1000], await pipe.execute(), strict=True):
                    if n:
                        gone.add(_cache_key(k, self._prefix))
            for i in range(0, len(tagsets), 1000):
                await r.delete(*tagsets[i:i + 1000])
            return gone

        return await self._redis(run, "clear", timeout_s=_CLEAR_TIMEOUT_S) or set()

    async def _redis(self, fn: Callable[[Redis], Awaitable[T]], what: str, *,
                     timeout_s: float | None = None) -> T | None:
        """Run a Redis-layer operation; None on failure (logged unless Redis is simply away),
        so the request goes on without that layer."""
        try:
            return await self.link.call(fn, timeout_s=timeout_s)
        except RedisDown:
            return None
        except RedisError as exc:
            log.warning("API cache: Redis %s failed: %r", what, exc)
            return None


def _cache_key(redis_key: bytes, prefix: str) -> str:
    key = redis_key.decode()
    return key[len(prefix):] if key.startswith(prefix) else ""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _tag_matcher(symbol: str | None, timeframe: str | None) -> Callable[[str], bool]:
    """Tags of a symbol (`SYM:tf`, `SYM:signals`), of a timeframe (`*:tf`), or exactly `SYM:tf`."""
    def match(tag: str) -> bool:
        sym, _, rest = tag.partition(":")
        return (symbol is None or sym == symbol) and (timeframe is None or rest == timeframe)
    return match


# -- Prometheus: read from the live managers at scrape time (summed per namespace).
_MANAGERS: weakref.WeakSet[CacheManager] = weakref.WeakSet()


class _CacheCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily("alphaplus_api_cache_requests",
                                       "API cache gets by the layer that answered",
                                       labels=["ns", "layer"])
        size = GaugeMetricFamily("alphaplus_api_cache_size",
                                 "Entries in the API's in-process cache", labels=["ns"])
        enabled = GaugeMetricFamily("alphaplus_api_cache_redis_enabled",
                                    "1 while the API's Redis layer is reachable", labels=["ns"])
        per_ns: dict[str, list[CacheManager]] = {}
        for m in list(_MANAGERS):
            per_ns.setdefault(m.ns, []).append(m)
        for ns, ms in per_ns.items():
            requests.add_metric([ns, "memory"], sum(m._memory_hits for m in ms))
            requests.add_metric([ns, "redis"], sum(m._redis_hits for m in ms))
            requests.add_metric([ns, "miss"], sum(m._misses for m in ms))
            size.add_metric([ns], sum(len(m.memory) for m in ms))
            enabled.add_metric([ns], float(all(m.link.enabled for m in ms)))
        yield requests
        yield size
        yield enabled


REGISTRY.register(_CacheCollector())
