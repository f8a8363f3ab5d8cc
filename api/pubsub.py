"""The API's Redis pub/sub listener: every update the workers publish, to the handlers in order.

One PSUBSCRIBE on `redis_keys.channel_pattern(ns)` per API process. Each message becomes an
`Update` stamped with `time.monotonic()` on arrival (the start of the hub's latency figure) and
is awaited through the handlers in order: the cache first, then the hub (see api/updates.py).

Redis may be away at start or go away later: the listener never raises for it. It reconnects
in the background with capped exponential backoff and subscribes again; what was published
meanwhile is lost (pub/sub keeps nothing), which the cache's TTL and the next live update
cover. A connection that goes silent without closing (a network cut) is found by a PING when
nothing arrived for `ping_interval_s` and dropped when that PING stays unanswered.

Each update's correlation id (the `cid` field the workers append, core/logs.py) is logged with
its push: every one at DEBUG, one per `log_every_s` at INFO (with how many went by since), so
a trace can be followed into this process without a log line per update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.updates import Update, UpdateHandler, parse_channel
from core import logs, redis_keys
from core.secrets import redact

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
#: How long `start()` waits for the first subscription before leaving it to the background.
START_WAIT_S = 3.0
#: A handler failing on every message would flood the log: one line per this many seconds.
ERROR_LOG_EVERY_S = 10.0


class SilentConnection(ConnectionError):
    """Redis answered nothing, not even a PING, for too long."""


class UpdateListener:
    def __init__(self, redis_url: str, ns: str, handlers: Sequence[UpdateHandler],
                 ping_interval_s: float = 5.0, log_every_s: float = 10.0) -> None:
        # A malformed URL is a configuration error, said at once (Redis being away is not).
        aioredis.ConnectionPool.from_url(redis_url)
        self.redis_url = redis_url
        self.ns = ns
        self.handlers = tuple(handlers)
        self.ping_interval_s = ping_interval_s
        self._pattern = redis_keys.channel_pattern(ns)
        self._prefix = self._pattern.removesuffix("*")
        self.received = 0  # messages from Redis on our channels
        self.ignored = 0  # of which not an update channel
        self.handler_errors = 0
        self.reconnects = 0  # connections after the first
        self._connected = False
        self._ever_connected = False
        self._task: asyncio.Task[None] | None = None
        self._last_error_log = float("-inf")
        self._progress = logs.Every(log_every_s)
        self._pushed_logged = 0

    @property
    def connected(self) -> bool:
        """Subscribed, as confirmed by Redis."""
        return self._connected

    async def start(self) -> None:
        """Subscribe; when Redis is up this returns once the subscription is confirmed, else
        after the first attempt failed, retrying in the background. Never raises for Redis."""
        if self._task is not None:
            return
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(first))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), START_WAIT_S)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self._connected = False

    def stats(self) -> dict[str, object]:
        return {"connected": self._connected, "received": self.received,
                "ignored": self.ignored, "handler_errors": self.handler_errors,
                "reconnects": self.reconnects}

    async def _run(self, first: asyncio.Future[None]) -> None:
        delay = BACKOFF_MIN_S
        attempts = 0
        while True:
            # No retries inside redis-py: this loop is the one place that reconnects.
            # socket_timeout bounds the connection handshake's replies (a hung server);
            # reading messages uses its own timeout below.
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0,
                                             socket_timeout=5.0, retry=Retry(NoBackoff(), 0))
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                await self._consume(pubsub, first)
            except (RedisError, OSError) as exc:
                if self._connected or attempts == 0:
                    log.warning("Redis pub/sub at %s: %s; reconnecting in the background",
                                redact(self.redis_url), exc or type(exc).__name__)
            except Exception:
                # Not Redis being away (that is above): still never the end of the listener.
                log.exception("Redis pub/sub at %s failed; reconnecting", redact(self.redis_url))
            finally:
                if self._connected:
                    delay = BACKOFF_MIN_S
                self._connected = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            if not first.done():
                first.set_result(None)
            attempts += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _consume(self, pubsub: aioredis.client.PubSub, first: asyncio.Future[None]) -> None:
        ping_sent: float | None = None
        last_seen = time.monotonic()
        poll = min(1.0, self.ping_interval_s)
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=poll)
            now = time.monotonic()
            if message is None:
                if ping_sent is not None and now - ping_sent > 2 * self.ping_interval_s:
                    raise SilentConnection(f"no answer to PING for {now - ping_sent:.1f} s")
                if ping_sent is None and now - last_seen >= self.ping_interval_s:
                    await pubsub.ping()
                    ping_sent = now
                continue
            last_seen, ping_sent = now, None
            kind = message["type"]
            if kind == "pmessage":
                await self._dispatch(message["channel"], message["data"], now)
            elif kind == "psubscribe":
                if self._ever_connected:
                    self.reconnects += 1
                    log.info("Redis pub/sub at %s: subscribed again", redact(self.redis_url))
                self._connected = self._ever_connected = True
                if not first.done():
                    first.set_result(None)

    async def _dispatch(self, channel: bytes, data: bytes, received: float) -> None:
        self.received += 1
        parsed = parse_channel(channel.decode(errors="replace"), self._prefix)
        if parsed is None:
            self.ignored += 1
            return
        update = Update(parsed[0], parsed[1], parsed[2], data, received)
        for handler in self.handlers:
            try:
                await handler(update)
            except Exception:
                self.handler_errors += 1
                if received - self._last_error_log >= ERROR_LOG_EVERY_S:
                    self._last_error_log = received
                    log.exception("update handler %r failed (%d failures so far)", handler,
                                  self.handler_errors)
        if self._progress.due(received):
            pushed = self.received - self.ignored
            log.info("pushed %s %s %s (%d updates since the last line)", update.kind,
                     update.symbol, update.timeframe, pushed - self._pushed_logged,
                     extra={"cid": logs.cid_in(data)})
            self._pushed_logged = pushed
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("pushed %s %s %s", update.kind, update.symbol, update.timeframe,
                      extra={"cid": logs.cid_in(data)})
