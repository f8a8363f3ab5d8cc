"""`alphaplus topics list|create|describe`: the Kafka topics, as aligned tables.

`describe` reads the high watermark from a fetch response rather than ListOffsets: the embedded
broker answers ListOffsets with a wrong high watermark after batched produces, while a fetch
reports the right one (docs/DESIGN.md). `--count` counts by reading every message to EOF.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from core.exceptions import ServiceUnavailable
from core.kafka import admin, ensure_topics, partition_offsets, read_topic
from core.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("topics", help="list, create or describe "
                                                     "the Kafka topics")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers; overrides "
                        "ALPHAPLUS_KAFKA_BOOTSTRAP")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="topic names and partition counts")
    listing.add_argument("--all", action="store_true", help="include internal topics (__*)")
    listing.set_defaults(func=run_list)
    actions.add_parser(
        "create", help="create the configured topics (trades, candles, deadletter, gaps) with "
        "ALPHAPLUS_KAFKA_PARTITIONS partitions; existing ones are left as they are",
    ).set_defaults(func=run_create)
    describe = actions.add_parser("describe", help="per partition: watermarks, message count, "
                                  "latest message time")
    describe.add_argument("topics", nargs="*", metavar="TOPIC",
                          help="topics to describe (default: the configured ones)")
    describe.add_argument("--count", action="store_true",
                          help="count messages by reading each topic to its end")
    describe.set_defaults(func=run_describe)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def connect(args: argparse.Namespace) -> Settings:
    from infra.stack.resolve import kafka_answers

    settings = Settings.from_env()
    if args.bootstrap:
        settings = settings.replace(kafka_bootstrap=args.bootstrap)
    if not kafka_answers(settings.kafka_bootstrap, timeout=5):
        raise ServiceUnavailable(f"no Kafka broker answers at {settings.kafka_bootstrap} "
                                 "(`alphaplus up` starts one)")
    return settings


def configured_topics(settings: Settings) -> list[str]:
    return [settings.topic_trades, settings.topic_candles, settings.topic_deadletter,
            settings.topic_gaps]


def partition_counts(bootstrap: str) -> dict[str, int]:
    topics = admin(bootstrap).list_topics(timeout=10).topics
    return {name: len(meta.partitions) for name, meta in topics.items() if meta.error is None}


def run_list(args: argparse.Namespace) -> int:
    settings = connect(args)
    counts = partition_counts(settings.kafka_bootstrap)
    rows = [(n, c) for n, c in sorted(counts.items()) if args.all or not n.startswith("__")]
    print(table(("TOPIC", "PARTITIONS"), rows))
    return 0


def run_create(args: argparse.Namespace) -> int:
    settings = connect(args)
    names = configured_topics(settings)
    created = set(ensure_topics(settings.kafka_bootstrap, names, settings.kafka_partitions))
    counts = partition_counts(settings.kafka_bootstrap)
    rows = [(n, counts.get(n, "?"), "created" if n in created else "exists") for n in names]
    print(table(("TOPIC", "PARTITIONS", "STATUS"), rows))
    return 0


@dataclass
class PartitionView:
    partition: int
    low: int
    high: int
    messages: int
    #: Timestamp (ms) of the partition's last message; None when it has none.
    latest_ts: int | None


def position(msg: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message or partition-EOF event; both always carry
    them, though the client's types allow None."""
    part, offset = msg.partition(), msg.offset()
    assert part is not None and offset is not None
    return part, offset


def inspect_partitions(bootstrap: str, topic: str, timeout: float = 15.0) -> list[PartitionView]:
    """Watermarks and the last message's time per partition, reading at most a few batches.

    Starts just before the listed end; the first fetch response brings the real high
    watermark, and the consumer seeks to the message before it. Partition EOF alone cannot
    end the search: while a producer is writing, every fetch brings new messages and EOF
    never comes.
    """
    listed = partition_offsets(bootstrap, topic)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "alphaplus-inspect",
        "enable.auto.commit": False, "enable.partition.eof": True,
        # A start past the real end (never seen, but cheap to allow) resets to the end.
        "auto.offset.reset": "latest",
        # An empty partition answers EOF only when the broker's fetch wait ends.
        "fetch.wait.max.ms": 100,
    })
    done: dict[int, tuple[int, int | None]] = {}  # partition -> (high, latest timestamp)
    target: dict[int, int] = {}  # partition -> offset of the last message when first fetched
    try:
        consumer.assign([TopicPartition(topic, p.partition, max(p.high - 1, p.low))
                         for p in listed])
        deadline = time.monotonic() + timeout
        while len(done) < len(listed):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partition ends not found within {timeout:g}s")
            for msg in consumer.consume(1000, 0.5):
                (part, offset), err = position(msg), msg.error()
                if part in done:
                    continue
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    if offset == 0 or target.get(part) == offset - 1:
                        done[part] = (offset, None)  # empty, or nothing more to find
                    else:  # at the end without having seen the last message
                        target[part] = offset - 1
                        consumer.seek(TopicPartition(topic, part, offset - 1))
                    continue
                high = consumer.get_watermark_offsets(TopicPartition(topic, part),
                                                      cached=True)[1]
                if part not in target:
                    target[part] = high - 1
                    if offset < high - 1:
                        consumer.seek(TopicPartition(topic, part, high - 1))
                        continue
                if offset >= target[part]:
                    done[part] = (max(high, offset + 1), msg.timestamp()[1])
    finally:
        consumer.close()
    return [PartitionView(p.partition, p.low, done[p.partition][0],
                          done[p.partition][0] - p.low, done[p.partition][1]) for p in listed]


def count_partitions(bootstrap: str, topic: str) -> list[PartitionView]:
    """Message counts by reading every message up to the ends `inspect_partitions` finds
    (a topic being written to has no final end, so the read stops there)."""
    views = inspect_partitions(bootstrap, topic)
    ends = {v.partition: v.high for v in views}
    counts = dict.fromkeys(ends, 0)
    latest: dict[int, int] = {}
    pending = {p for p, end in ends.items() if end > 0}
    if pending:
        for msg in read_topic(bootstrap, topic, timeout=600):
            part, offset = position(msg)
            if offset >= ends[part]:
                continue  # written after the snapshot
            counts[part] += 1
            if offset == ends[part] - 1:
                latest[part] = msg.timestamp()[1]
                pending.discard(part)
                if not pending:
                    break
    return [PartitionView(v.partition, v.low, v.high, counts[v.partition],
                          latest.get(v.partition, v.latest_ts)) for v in views]


def show_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def run_describe(args: argparse.Namespace) -> int:
    settings = connect(args)
    names = args.topics or configured_topics(settings)
    existing = partition_counts(settings.kafka_bootstrap)
    rows: list[tuple[object, ...]] = []
    for name in names:
        if name not in existing:
            rows.append((name, "-", "-", "-", "-", "no such topic"))
            continue
        views = (count_partitions if args.count else inspect_partitions)(
            settings.kafka_bootstrap, name)
        rows += [(name, v.partition, v.low, v.high, v.messages, show_time(v.latest_ts))
                 for v in views]
        if len(views) > 1:
            total = sum(v.messages for v in views)
            latest = max((v.latest_ts for v in views if v.latest_ts is not None), default=None)
            rows.append((name, "all", "", "", total, show_time(latest)))
    print(table(("TOPIC", "PARTITION", "LOW", "HIGH", "MESSAGES", "LATEST"), rows))
    return 0
