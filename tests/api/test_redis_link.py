"""RedisLink against real redis-servers: one that answers, none at all, one that stops and comes
back on the same port, and a socket that accepts but never answers (a hung server)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from api.redis_link import RedisDown, RedisLink
from infra.stack.ports import free_port
from infra.stack.redis import EmbeddedRedis

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def ping(r: Redis) -> bool:
    return bool(await r.ping())


async def wait_until(predicate: object, timeout: float) -> float:
    """Seconds it took for `predicate()` to hold; fails the test past `timeout`."""
    assert callable(predicate)
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis").start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_live_server_enables_the_link(redis_url: str) -> None:
    link = RedisLink(redis_url)
    assert not link.enabled and link.latency_ms() is None
    await link.start()
    try:
        assert link.enabled
        assert await link.call(ping) is True
        ms = await link.ping()
        assert 0 < ms < 500
        assert link.latency_ms() == ms
        assert await link.client.ping()
    finally:
        await link.close()
    assert not link.enabled


async def test_start_without_redis_is_disabled_and_fails_fast() -> None:
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", retry_interval_s=0.1)
    await link.start()  # must not raise
    try:
        assert not link.enabled
        assert link.latency_ms() is None
        started = time.perf_counter()
        for _ in range(100):
            with pytest.raises(RedisDown):
                await link.call(ping)
        # Disabled: no connection attempt per call at all.
        assert time.perf_counter() - started < 0.05
        with pytest.raises(RedisDown):
            await link.ping()
    finally:
        await link.close()


async def test_the_link_goes_down_and_comes_back_on_the_same_port(
        own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    link = RedisLink(own_redis.url, retry_interval_s=0.2, op_timeout_s=0.5)
    await link.start()
    try:
        assert link.enabled and await link.call(ping)
        await asyncio.to_thread(own_redis.stop)

        started = time.perf_counter()
        with pytest.raises(RedisDown):
            await link.call(ping)
        assert time.perf_counter() - started < 1.0
        assert not link.enabled and link.outages == 1
        started = time.perf_counter()
        with pytest.raises(RedisDown):
            await link.call(ping)
        assert time.perf_counter() - started < 0.01  # no wait on a dead server per request

        again = EmbeddedRedis(tmp_path / "redis2", port=own_redis.port)
        await asyncio.to_thread(again.start)
        try:
            took = await wait_until(lambda: link.enabled, timeout=5.0)
            assert took < 2.0  # retried every 0.2 s
            assert await link.call(ping) is True
            assert link.latency_ms() is not None
            assert link.outages == 1
        finally:
            await asyncio.to_thread(again.stop)
    finally:
        await link.close()


async def test_a_hung_server_costs_at_most_the_operation_timeout(
        own_redis: EmbeddedRedis) -> None:
    """A stopped (SIGSTOP) server accepts connections and never answers: each call is cut at
    op_timeout_s, after the first the link is disabled so the next ones fail at once, and it
    comes back when the server resumes."""
    link = RedisLink(own_redis.url, retry_interval_s=0.2, op_timeout_s=0.3)
    await link.start()
    assert own_redis.pid is not None
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        assert link.enabled
        started = time.perf_counter()
        with pytest.raises(RedisDown):
            await link.call(ping)
        assert 0.25 < time.perf_counter() - started < 0.9
        assert not link.enabled
        started = time.perf_counter()
        with pytest.raises(RedisDown):
            await link.call(ping)
        assert time.perf_counter() - started < 0.01
        # Starting against the hung server is bounded too.
        other = RedisLink(own_redis.url, op_timeout_s=0.3)
        started = time.perf_counter()
        await other.start()
        assert time.perf_counter() - started < 0.9 and not other.enabled
        await other.close()
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    try:
        await wait_until(lambda: link.enabled, timeout=5.0)
        assert await link.call(ping) is True
    finally:
        await link.close()
