"""The API's connection to Redis, built to fail fast and come back by itself.

Redis is the API's cache and live-data store, not its only source: when it is away a request
must answer from memory or the database without waiting on a dead server. So every operation
goes through `RedisLink.call`, which bounds it by `op_timeout_s` and, on a connection error,
marks the link disabled; while disabled, calls raise `RedisDown` at once and a background task
PINGs every `retry_interval_s` until Redis answers, then flips the link back on. While enabled
the same task PINGs every `health_interval_s`, which also keeps `latency_ms()` fresh for the
health endpoint.

redis-py's own retries are off (one attempt per command): retrying a dead server inside a
request is exactly the wait this module exists to avoid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.exceptions import ServiceUnavailable
from core.secrets import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What means "Redis is not there" (builtin TimeoutError, from asyncio.timeout, is an OSError).
_DOWN_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisDown(ServiceUnavailable):
    """Redis cannot be reached now; the caller should skip what needs it."""


class RedisLink:
    def __init__(self, url: str, *, retry_interval_s: float = 1.0, op_timeout_s: float = 0.5,
                 health_interval_s: float = 5.0) -> None:
        self.url = url
        # What messages, logs and /api/health show: never the password.
        self.shown = redact(url)
        self._retry_interval_s = retry_interval_s
        self._op_timeout_s = op_timeout_s
        self._health_interval_s = health_interval_s
        pool = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=op_timeout_s,
            socket_connect_timeout=op_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._enabled = False
        self._latency_ms: float | None = None
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        #: How often the link went down since start (for stats and tests).
        self.outages = 0

    async def start(self) -> None:
        """Connect, or start disabled when Redis is away; never raises for a missing Redis."""
        if self._watcher is not None:
            return
        with contextlib.suppress(RedisDown):
            await self.ping()
        if not self._enabled:
            log.warning("Redis at %s is not answering: starting without it, retrying every "
                        "%.1fs", self.shown, self._retry_interval_s)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(),
                                                               name="redis-link-watch")

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._enabled = False
        await self._client.aclose(close_connection_pool=True)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def client(self) -> aioredis.Redis:
        """The raw client, for callers that handle errors (and timeouts) themselves."""
        return self._client

    def latency_ms(self) -> float | None:
        """The last PING round trip; None while disabled or before the first PING."""
        return self._latency_ms if self._enabled else None

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]], *,
                   timeout_s: float | None = None) -> T:
        """Run `fn(client)` within `timeout_s` (default op_timeout_s). Raises RedisDown at once
        while the link is disabled, and when `fn` meets a connection error or the deadline
        (then the link goes disabled until the watcher sees Redis answer again)."""
        if not self._enabled:
            raise RedisDown(f"Redis at {self.shown} is unavailable")
        try:
            async with asyncio.timeout(timeout_s or self._op_timeout_s):
                return await fn(self._client)
        except _DOWN_ERRORS as exc:
            self._mark_down(exc)
            raise RedisDown(f"Redis at {self.shown} is unavailable: {exc!r}") from exc

    async def ping(self) -> float:
        """PING round trip in ms; a success enables the link, a failure disables it."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await self._client.ping()
        except _DOWN_ERRORS as exc:
            self._mark_down(exc)
            raise RedisDown(f"Redis at {self.shown} is unavailable: {exc!r}") from exc
        self._latency_ms = (time.perf_counter() - started) * 1000
        if not self._enabled:
            self._enabled = True
            log.info("Redis at %s answers again (PING %.2f ms)", self.shown, self._latency_ms)
        return self._latency_ms

    def _mark_down(self, exc: BaseException) -> None:
        if self._enabled:
            self._enabled = False
            self.outages += 1
            log.warning("Redis at %s went away (%r): running without it", self.shown, exc)
            # Only on the transition: while disabled the watcher keeps its own pace.
            self._wake.set()

    async def _watch(self) -> None:
        while True:
            await self._sleep(self._health_interval_s if self._enabled
                              else self._retry_interval_s)
            with contextlib.suppress(RedisDown):
                await self.ping()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short when a caller saw Redis fail, so the retry starts at once."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()
