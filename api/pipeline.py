"""What the API can tell about the rest of the pipeline without importing it: the stream stage's
counters (Redis), Celery queue depths and live workers (the broker), Kafka consumer lag.

Each probe is bounded in time and answers `None` fields with an `error` when its system is away;
the slow ones (Kafka, Celery's worker ping) are cached for a few seconds, so a dashboard polling
/api/system/overview does not turn into a load on the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from confluent_kafka import Consumer, KafkaException, TopicPartition
from redis.asyncio import Redis

from api.redis_link import RedisDown, RedisLink
from core import redis_keys
from core.settings import Settings

CELERY_KINDS = ("indicators", "persist", "jobs")
SLOW_PROBE_TTL_S = 5.0
# librdkafka logs every failed connection attempt; the probe reports its own error instead.
_PROBE_LOG = logging.getLogger("alphaplus.api.kafka_probe")
_PROBE_LOG.setLevel(logging.CRITICAL + 1)


class Cached:
    """The last result of a slow probe, recomputed at most every `ttl_s`."""

    def __init__(self, probe: Callable[[], Awaitable[dict[str, Any]]], ttl_s: float) -> None:
        self.probe = probe
        self.ttl_s = ttl_s
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    async def get(self) -> dict[str, Any]:
        if self._value is None or time.monotonic() - self._at > self.ttl_s:
            try:
                self._value = await self.probe()
            except Exception as exc:  # an overview must answer whatever a probe meets
                self._value = {"error": f"{type(exc).__name__}: {exc}"}
            self._at = time.monotonic()
        return self._value


async def stream_counters(link: RedisLink, ns: str) -> dict[str, float] | None:
    """The stream stage's counters summed over its processes (None when Redis is away)."""

    async def read(r: Redis) -> dict[bytes, bytes]:
        raw: dict[bytes, bytes] = await r.hgetall(  # type: ignore[assignment]
            redis_keys.stream_stats(ns))
        return raw

    try:
        raw = await link.call(read)
    except RedisDown:
        return None
    return {k.decode(): float(v) for k, v in raw.items()}


async def celery_queues(link: RedisLink, settings: Settings) -> dict[str, int] | None:
    """Tasks waiting per queue. The Redis transport keeps a queue as a list named after it
    (plus one list per priority step, `<name>\\x06\\x16<n>`, which AlphaPlus does not use)."""
    names = {kind: f"{settings.celery_queue_prefix}.{kind}" for kind in CELERY_KINDS}

    async def read(r: Redis) -> list[int]:
        pipe = r.pipeline(transaction=False)
        for name in names.values():
            pipe.llen(name)
        return list(await pipe.execute())

    if settings.celery_broker_url and settings.celery_broker_url != settings.redis_url:
        client = Redis.from_url(settings.celery_broker_url, socket_timeout=1,
                                socket_connect_timeout=1)
        try:
            depths = await read(client)
        except OSError:
            return None
        finally:
            await client.aclose()
    else:
        try:
            depths = await link.call(read)
        except RedisDown:
            return None
    return dict(zip(names, depths, strict=True))


def _kafka_lag(settings: Settings, group: str, timeout_s: float) -> dict[str, Any]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False, "socket.timeout.ms": int(timeout_s * 1000),
                         "logger": _PROBE_LOG})
    try:
        meta = consumer.list_topics(settings.topic_trades, timeout=timeout_s)
        topic = meta.topics.get(settings.topic_trades)
        if topic is None or topic.error is not None:
            return {"error": f"topic {settings.topic_trades} not found"}
        parts = [TopicPartition(settings.topic_trades, p) for p in sorted(topic.partitions)]
        committed = consumer.committed(parts, timeout=timeout_s)
        per_partition = {}
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            done = tp.offset if tp.offset >= 0 else 0
            per_partition[str(tp.partition)] = max(high - done, 0)
        return {"group": group, "topic": settings.topic_trades,
                "partitions": per_partition, "total": sum(per_partition.values())}
    except KafkaException as exc:
        return {"error": f"Kafka at {settings.kafka_bootstrap}: {exc.args[0]}"}
    finally:
        consumer.close()


async def kafka_lag(settings: Settings, group: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """Consumer lag of the stream group on the trades topic, per partition.

    Lag is the high watermark minus the committed offset. The embedded broker (Tansu) can report
    a wrong high watermark after batched produces (docs/DESIGN.md), so there it is an estimate.
    """
    return await anyio.to_thread.run_sync(_kafka_lag, settings, group, timeout_s)


def _celery_workers(settings: Settings, timeout_s: float) -> dict[str, Any]:
    from celery import Celery

    import celeryconfig

    app = Celery("alphaplus-api-probe")
    app.config_from_object(celeryconfig.from_settings(settings))
    try:
        replies = app.control.ping(timeout=timeout_s) or []
    except OSError as exc:
        return {"workers": None, "error": f"Celery broker: {exc}"}
    finally:
        app.close()
    names = sorted(name for reply in replies for name in reply)
    return {"workers": len(names), "names": names}


async def celery_workers(settings: Settings, timeout_s: float = 1.0) -> dict[str, Any]:
    """Workers that answer a ping on the broker within `timeout_s`."""
    return await anyio.to_thread.run_sync(_celery_workers, settings, timeout_s)
