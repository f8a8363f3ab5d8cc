"""The API cache's layers per second, beside the baselines of the same run.

Memory layer (target >= 1,000,000 gets/s), over `--keys` cached entries, hits only:
  1. MemoryCache.get, beside a plain dict.get and a functools.lru_cache hit (same key loop);
  2. CacheManager.get's memory-hit path (a coroutine per get, awaited in one task), beside an
     `async def` that only returns a dict value (the floor of any awaited call).
Redis layer (target >= 100,000 ops/s with pipelining), on the same entries stored under
`redis_keys.api_cache(ns, key)` by CacheManager fills:
  3. one pipeline of GETs per batch of `--batch` keys, and one MGET per batch, through the
     link's client; beside redis-py asyncio GETs one after another (the plain baseline), and
     with 50 concurrent tasks;
  4. CacheManager.get's Redis-hit path (memory TTL 0, so every get goes to Redis), one after
     another and 50 concurrent.
redis-py parses each reply of a pipeline under its own asyncio timeout (~25 us a reply here),
so a pipeline of GETs stays far below what Redis serves; MGET returns one reply. With the
`hiredis` package installed redis-py parses in C (the header line says which parser ran).
Each contender runs `--runs` times, interleaved; medians are reported with every run's figure.
The namespace is the script's own (`bench-...`) and only its keys are deleted at the end.

    .venv/bin/python benchmarks/api_cache.py [--redis-url redis://127.0.0.1:6379/0]
        [--keys 10000] [--gets 1000000] [--redis-ops 20000] [--batch 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.utils import HIREDIS_AVAILABLE

from api.cache import CacheManager, MemoryCache
from api.redis_link import RedisLink
from core import redis_keys

CONCURRENCY = 50


def body(i: int) -> bytes:
    return b'{"symbol":"BTCUSDT","timeframe":"1m","candles":[' + str(i).encode() + b"]}"


# -- memory layer


def memory_runs(keys: list[str], gets: int) -> dict[str, Callable[[], float]]:
    n = len(keys)
    loop_keys = (keys * (gets // n + 1))[:gets]
    cache = MemoryCache(n, ttl_s=3600)
    plain: dict[str, bytes] = {}
    for i, k in enumerate(keys):
        cache.set(k, body(i), tags=(f"S{i % 20}:1m",))
        plain[k] = body(i)

    @functools.lru_cache(maxsize=n)
    def cached(key: str) -> bytes:
        return plain[key]

    for k in keys:
        cached(k)

    def rate(get: Callable[[str], bytes | None]) -> float:
        started = time.perf_counter()
        for k in loop_keys:
            get(k)
        return gets / (time.perf_counter() - started)

    return {"memory": lambda: rate(cache.get), "dict": lambda: rate(plain.get),
            "lru_cache": lambda: rate(cached)}


async def manager_hit_rate(cache: CacheManager, keys: list[str], gets: int) -> float:
    async def never() -> bytes:
        raise AssertionError("a memory hit was expected")

    loop_keys = (keys * (gets // len(keys) + 1))[:gets]
    get = cache.get
    started = time.perf_counter()
    for k in loop_keys:
        await get(k, never)
    return gets / (time.perf_counter() - started)


async def async_floor_rate(plain: dict[str, bytes], keys: list[str], gets: int) -> float:
    async def get(key: str) -> bytes | None:
        return plain.get(key)

    loop_keys = (keys * (gets // len(keys) + 1))[:gets]
    started = time.perf_counter()
    for k in loop_keys:
        await get(k)
    return gets / (time.perf_counter() - started)


# -- Redis layer


async def timed(ops: int, run: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run()
    return ops / (time.perf_counter() - started)


def redis_runs(link: RedisLink, ns: str, keys: list[str], ops: int,
               batch: int) -> dict[str, Callable[[], Awaitable[float]]]:
    client = link.client
    rkeys = [redis_keys.api_cache(ns, k) for k in (keys * (ops // len(keys) + 1))[:ops]]
    expected = len(rkeys)

    async def pipelined() -> None:
        got = 0
        for i in range(0, expected, batch):
            pipe = client.pipeline(transaction=False)
            for k in rkeys[i:i + batch]:
                pipe.get(k)
            got += sum(v is not None for v in await pipe.execute())
        assert got == expected, f"{got} of {expected} keys found"

    async def mget() -> None:
        got = 0
        for i in range(0, expected, batch):
            got += sum(v is not None for v in await client.mget(rkeys[i:i + batch]))
        assert got == expected, f"{got} of {expected} keys found"

    seq_keys = rkeys[: max(ops // 10, 1)]  # ~7k/s: a tenth of the keys keeps runs short

    async def sequential() -> None:
        for k in seq_keys:
            assert await client.get(k) is not None

    async def concurrent() -> None:
        async def worker(part: list[str]) -> None:
            for k in part:
                assert await client.get(k) is not None

        await asyncio.gather(*(worker(seq_keys[j::CONCURRENCY]) for j in range(CONCURRENCY)))

    return {
        "pipeline": lambda: timed(expected, pipelined),
        "mget": lambda: timed(expected, mget),
        "get_seq": lambda: timed(len(seq_keys), sequential),
        "get_50": lambda: timed(len(seq_keys), concurrent),
    }


def manager_redis_runs(cache: CacheManager, keys: list[str],
                       ops: int) -> dict[str, Callable[[], Awaitable[float]]]:
    seq_keys = (keys * (ops // len(keys) + 1))[: max(ops // 10, 1)]

    async def never() -> bytes:
        raise AssertionError("a Redis-layer hit was expected")

    async def sequential() -> None:
        for k in seq_keys:
            await cache.get(k, never)

    async def concurrent() -> None:
        async def worker(part: list[str]) -> None:
            for k in part:
                await cache.get(k, never)

        await asyncio.gather(*(worker(seq_keys[j::CONCURRENCY]) for j in range(CONCURRENCY)))

    return {"mgr_redis_seq": lambda: timed(len(seq_keys), sequential),
            "mgr_redis_50": lambda: timed(len(seq_keys), concurrent)}


async def delete_namespace(link: RedisLink, ns: str) -> None:
    keys = [k async for k in link.client.scan_iter(match=f"alphaplus:{ns}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await link.client.delete(*keys[i:i + 1000])


def report(title: str, results: dict[str, list[float]], labels: dict[str, str],
           base: str) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    print(title)
    for key, label in labels.items():
        runs = ", ".join(f"{v:,.0f}" for v in results[key])
        print(f"  {label:52s} {med[key]:>13,.0f}/s  x{med[key] / med[base]:5.2f}   ({runs})")


async def run(args: argparse.Namespace) -> None:
    keys = [f"market:S{i % 20}:1m:{i}:{i + 60_000}:500:0" for i in range(args.keys)]
    mem = memory_runs(keys, args.gets)
    results: dict[str, list[float]] = {k: [] for k in mem}
    for _ in range(args.runs):
        for name, fn in mem.items():
            results[name].append(fn())
    report(f"Memory layer: {args.keys:,} entries, {args.gets:,} hits per run, {args.runs} runs "
           "(median, ratio to MemoryCache.get, every run)",
           results, {"memory": "MemoryCache.get", "dict": "dict.get (baseline)",
                     "lru_cache": "functools.lru_cache hit (baseline)"}, "memory")

    ns = f"bench-{uuid.uuid4().hex[:10]}"
    link = RedisLink(args.redis_url, op_timeout_s=5.0)
    await link.start()
    if not link.enabled:
        raise SystemExit(f"no Redis answers at {args.redis_url}")
    try:
        cache = CacheManager(link, ns, size=args.keys, ttl_s=3600, redis_ttl_s=600)
        plain: dict[str, bytes] = {}
        for i, k in enumerate(keys):  # fills memory and the Redis layer, as requests would
            value = body(i)
            plain[k] = value

            async def load(v: bytes = value) -> bytes:
                return v

            await cache.get(k, load, tags=(f"S{i % 20}:1m",))
        assert len(cache.memory) == len(keys)
        results = {"mgr_memory": [], "async_floor": []}
        for _ in range(args.runs):
            results["mgr_memory"].append(await manager_hit_rate(cache, keys, args.gets // 2))
            results["async_floor"].append(await async_floor_rate(plain, keys, args.gets // 2))
        report(f"\nCacheManager.get, memory hits, {args.gets // 2:,} awaited gets per run",
               results, {"mgr_memory": "CacheManager.get (memory hit)",
                         "async_floor": "async def returning dict.get (floor)"}, "mgr_memory")

        redis_only = CacheManager(link, ns, size=16, ttl_s=0, redis_ttl_s=600)
        contenders = {**redis_runs(link, ns, keys, args.redis_ops, args.batch),
                      **manager_redis_runs(redis_only, keys, args.redis_ops)}
        results = {k: [] for k in contenders}
        for _ in range(args.runs):
            for name, afn in contenders.items():
                results[name].append(await afn())
        assert redis_only.stats()["misses"] == 0
        parser = "hiredis" if HIREDIS_AVAILABLE else "redis-py's Python parser (no hiredis)"
        report(f"\nRedis layer at {args.redis_url}, {parser}: {args.redis_ops:,} keys per "
               f"batched run (batches of {args.batch:,}), a tenth of that per one-by-one run",
               results, {
                   "pipeline": f"pipeline of {args.batch} GETs (link.client)",
                   "mget": f"MGET of {args.batch} keys (link.client)",
                   "get_seq": "redis-py asyncio GET, sequential (baseline)",
                   "get_50": f"redis-py asyncio GET, {CONCURRENCY} tasks",
                   "mgr_redis_seq": "CacheManager.get Redis hit, sequential",
                   "mgr_redis_50": f"CacheManager.get Redis hit, {CONCURRENCY} tasks",
               }, "get_seq")
    finally:
        await delete_namespace(link, ns)
        await link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=1_000_000)
    parser.add_argument("--redis-ops", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
