"""Kafka plumbing shared by producers, the stream stage, tests and the CLI (confluent-kafka)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it without declaring it

from core.exceptions import ServiceUnavailable

log = logging.getLogger(__name__)


def producer_config(bootstrap: str, compression: str = "lz4", **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all, compressed, batched. Retries are librdkafka's (unbounded within
    `delivery.timeout.ms`); a message that still fails is reported to the delivery callback."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "delivery.timeout.ms": 120_000,
        "delivery.report.only.error": True,
    }
    config.update(extra)
    return config


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_id(bootstrap: str, topic: str, timeout: float = 5.0) -> str | None:
    """The topic's id (KIP-516): a new one each time a topic of that name is created, which
    tells a re-created topic (offsets from 0 again) from the one a checkpoint was taken on.
    None when the broker does not say (or the topic does not exist)."""
    from confluent_kafka import TopicCollection

    client = admin(bootstrap)  # held until the answer: a dropped client cancels its request
    try:
        description = client.describe_topics(TopicCollection([topic]))[topic].result(timeout)
    except (KafkaException, TimeoutError, ValueError):
        return None
    value = description.topic_id
    return None if value is None else str(value)


class ProducerErrors:
    """A producer's `error_cb`: notes fatal errors and when every broker went down, for its
    owner to act on in its own thread (librdkafka calls it from poll and flush). Not a method
    of the owner: that would make owner and producer a reference cycle, keeping the producer
    and its broker connections alive after the owner is dropped. One per producer: a retired
    producer abandoned mid-close (`close_producer`) may still report errors from its closing
    thread, and they must not count against its replacement."""

    __slots__ = ("down_since", "fatal")

    def __init__(self) -> None:
        self.fatal: list[str] = []
        self.down_since: float | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal.append(f"fatal producer error: {err}")
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = time.monotonic()
        log.warning("kafka: %s", err)


CLOSE_TIMEOUT_S = 5.0


def retire_producer(producer: Producer, timeout: float = 1.0,
                    close_timeout: float = CLOSE_TIMEOUT_S) -> bool:
    """End a producer that failed for good, in bounded time: what it still holds is purged
    (each message comes back through its delivery callback, for the owner to produce again
    or let go), then it is closed by `close_producer`. Returns whether the close finished.

    Never call it from one of the producer's own callbacks: `close()` waits for the poll or
    flush that runs the callback, which waits for the callback. That deadlock is given up
    after `close_timeout`, but the close then goes on in its thread, running the producer's
    callbacks there."""
    deadline = time.monotonic() + timeout
    while True:
        producer.purge()
        # Serves the purge reports, in short slices: a callback may produce into this producer
        # again, and flush (then close) would wait for that message's delivery or timeout
        # where the next purge drops it.
        left = producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
        if left == 0 or time.monotonic() >= deadline:
            break
    return close_producer(producer, close_timeout)


def close_producer(producer: Producer, timeout: float = CLOSE_TIMEOUT_S) -> bool:
    """`producer.close()`, given up after `timeout` s with one warning; returns whether it
    finished. confluent-kafka's close() flushes with no timeout (every message still queued
    is waited for until delivered or past `delivery.timeout.ms`, and a delivery callback
    that produces again restarts the wait), then destroys the handle, joining librdkafka's
    threads. So it runs in a daemon thread: one that does not finish in time is abandoned,
    with the handle, its threads and connections, rather than stopping the owner for good.
    Purge first (`retire_producer`) so that only the destroy is left to wait for."""
    queued = len(producer)  # while closing, len() answers 0
    done = threading.Event()

    def close() -> None:
        # A RuntimeWarning is close()'s report of a flush that failed: nothing left to do.
        with contextlib.suppress(KafkaException, RuntimeError, RuntimeWarning):
            producer.close()
        done.set()

    threading.Thread(target=close, name="kafka-producer-close", daemon=True).start()
    if done.wait(timeout):
        return True
    log.warning("kafka producer did not close within %.0f s (%d messages were queued): "
                "abandoned, its threads and connections stay until the process ends",
                timeout, queued)
    return False


def broker_answers(producer: Producer, timeout: float = 0.5) -> bool:
    """Whether a broker answers this producer's metadata request within `timeout` s: after
    "all brokers down", the sign that the broker is back."""
    try:
        producer.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def recreate_topics(bootstrap: str, names: Iterable[str], partitions: int,
                    timeout: float = 60.0) -> list[str]:
    """Once the broker answers, the topics it lacks, with their partition count: a restarted
    in-memory broker has lost them all, and would otherwise auto-create them on a client's
    metadata request with its own default count."""
    wait_for_broker(bootstrap, timeout=timeout)
    return ensure_topics(bootstrap, names, partitions)


def wait_for_broker(bootstrap: str, timeout: float = 10.0) -> None:
    """Return once the broker answers a metadata request, else raise `ServiceUnavailable`."""
    deadline = time.monotonic() + timeout
    client = admin(bootstrap)
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise ServiceUnavailable(f"no Kafka broker answers at {bootstrap} ({last})")


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=10).topics)
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    futures = client.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=10,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # Metadata propagates asynchronously; wait until every topic is visible with its partitions.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        topics = client.list_topics(timeout=5).topics
        if all(n in topics and topics[n].partitions for n in wanted):
            break
        time.sleep(0.1)
    return created


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    low: int
    high: int


def partition_offsets(bootstrap: str, topic: str) -> list[PartitionOffsets]:
    """Low and high watermarks per partition (see docs/DESIGN.md: the embedded broker's high
    watermark can be wrong after batched produces; `read_topic` counts by EOF instead)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "alphaplus-inspect"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        out = []
        for pid in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
            out.append(PartitionOffsets(pid, low, high))
        return out
    finally:
        consumer.close()


def read_topic(
    bootstrap: str, topic: str, timeout: float = 30.0, batch: int = 10_000
) -> Iterator[Message]:
    """Every message of `topic` from the beginning, ending at EOF on all partitions.

    Uses manual assignment (no group join, no commits), so it is quick and side-effect free.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "alphaplus-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # EOF on an idle partition arrives only with an empty fetch response.
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no EOF on partitions {sorted(pending)}")
            for msg in consumer.consume(batch, 0.1):
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                else:
                    raise KafkaException(err)
    finally:
        consumer.close()
