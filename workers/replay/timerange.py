"""Where a time range starts in a Kafka topic: the broker's offset-by-time answer, verified
against the timestamps of the messages it points at, or the earliest offset when it does not
verify.

Kafka's ListOffsets by timestamp answers, per partition, the earliest offset whose message
timestamp is at or after the time asked (or the end when there is none). Two neighbours
check an answer: the message at the offset must be at or after the time (or be the end) and
the one before it, when there is one, must be before it. The embedded broker (Tansu) answers 0
for every time (docs/DESIGN.md), which fails the check for any time after the first message; a scan
from the earliest offset, skipping what is before the range, is then the exact fallback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from core.exceptions import AlphaPlusError

BROKER = "broker"  # the broker's answer, verified
SCAN = "scan"  # the earliest offset; messages before the range are skipped
# Epoch milliseconds below this are before 1973: almost surely seconds given by mistake.
_MIN_EPOCH_MS = 100_000_000_000


class BadTime(AlphaPlusError):
    """A replay time that is neither epoch milliseconds nor ISO 8601."""


def parse_time(text: str) -> int:
    """Epoch milliseconds, or ISO 8601 (`2024-08-08`, `2024-08-08T22:00`, with `Z` or an
    offset; a time without a zone is UTC)."""
    raw = text.strip()
    if re.fullmatch(r"\d+", raw):
        value = int(raw)
        if value < _MIN_EPOCH_MS:
            raise BadTime(f"{raw!r}: epoch milliseconds expected (this looks like seconds)")
        return value
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadTime(f"{raw!r}: expected epoch milliseconds or ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Start:
    partition: int
    offset: int
    source: str  # BROKER or SCAN
    why: str = ""  # for SCAN: why the broker's answer was not used


class TopicTimes:
    """Single-message reads of one topic by offset (a manually assigned consumer: no group
    join, no commits)."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0,
                 read_timeout: float = 2.0) -> None:
        self.topic = topic
        self.timeout = timeout
        # A fetch answers in milliseconds; past the end of the log a real Kafka answers "out
        # of range" but Tansu answers nothing at all, so silence this long means "no".
        self.read_timeout = read_timeout
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "alphaplus-replay-lookup",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # An offset outside the log is an error here, not a silent jump to one end.
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 10,
            # One message per partition is wanted: fetch little (with the defaults Tansu sent
            # ~130,000 messages of one partition ahead of the others' EOF, and a read took
            # ~0.3 s; with these 1-20 ms). fetch.max.bytes may not be below message.max.bytes,
            # which only matters to producers. With the default backoffs a fetch that follows
            # a full local queue or races an unassign waits 0.5-1 s (measured on Tansu).
            "queued.min.messages": 10,
            "max.partition.fetch.bytes": 65_536,
            "fetch.max.bytes": 100_000,
            "message.max.bytes": 100_000,
            "fetch.queue.backoff.ms": 10,
            "fetch.error.backoff.ms": 10,
        })

    def __enter__(self) -> TopicTimes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.consumer.close()

    def partitions(self) -> list[int]:
        meta = self.consumer.list_topics(self.topic, timeout=self.timeout).topics[self.topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        return sorted(meta.partitions)

    def low(self, partition: int) -> int:
        """The earliest offset (the low watermark is right on every broker we know)."""
        low, _high = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=self.timeout)
        return int(low)

    def high(self, partition: int) -> int:
        _low, high = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=self.timeout)
        return int(high)

    def broker_offsets(self, ts_ms: int) -> dict[int, int]:
        """The broker's answer per partition: the earliest offset at or after `ts_ms`
        (-1: none is, the end)."""
        asked = [TopicPartition(self.topic, p, ts_ms) for p in self.partitions()]
        answers = self.consumer.offsets_for_times(asked, timeout=self.timeout)
        return {tp.partition: int(tp.offset) for tp in answers if tp.error is None}

    def messages_at(self, offsets: Mapping[int, int]) -> dict[int, Read]:
        """Per partition, (offset, timestamp) of the first message at or after its offset;
        None at the end; an error text when the offset cannot be read (outside the log).
        All partitions are read at once: one round trip, not one per partition."""
        if not offsets:
            return {}
        # Partitions are not paused once read: pausing made every fourth read wait a second
        # on Tansu; the few messages that follow the first are skipped instead.
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in offsets.items()])
        out: dict[int, Read] = {}
        deadline = time.monotonic() + self.read_timeout
        try:
            while len(out) < len(offsets) and time.monotonic() < deadline:
                msg = self.consumer.poll(0.05)
                partition = None if msg is None else msg.partition()
                if msg is None or partition is None or partition in out:
                    continue
                err = msg.error()
                if err is None:
                    got = msg.offset()
                    assert got is not None
                    out[partition] = (got, int(msg.timestamp()[1]))
                elif err.code() == KafkaError._PARTITION_EOF:
                    out[partition] = None
                else:
                    out[partition] = f"offset {offsets[partition]} cannot be read: {err}"
        finally:
            self.consumer.unassign()
        for partition, offset in offsets.items():
            out.setdefault(partition, f"offset {offset} cannot be read: nothing within "
                                      f"{self.read_timeout:g} s")
        return out

    def message_at(self, partition: int, offset: int) -> Read:
        return self.messages_at({partition: offset})[partition]


# What a read of one offset gives: (offset, timestamp) of the message there (or the next one),
# None at the end of the partition, or why it could not be read.
Read = tuple[int, int] | None | str


def check_answers(times: TopicTimes, answers: Mapping[int, int], ts_ms: int,
                  lows: Mapping[int, int]) -> dict[int, str]:
    """Per partition, why its answer is not the first offset at or after `ts_ms`; "" when it
    checks out. `answers` are resolved offsets (no OFFSET_END)."""
    why = {p: f"answer {a} is before the earliest offset {lows[p]}"
           for p, a in answers.items() if a < lows[p]}
    at = times.messages_at({p: a for p, a in answers.items() if p not in why})
    for p, read in at.items():
        if isinstance(read, str):
            why[p] = read
        elif read is not None and read[1] < ts_ms:
            why[p] = f"the message at {read[0]} is at {read[1]}, before {ts_ms}"
    before = times.messages_at({p: a - 1 for p, a in answers.items()
                                if p not in why and a > lows[p]})
    for p, read in before.items():
        if isinstance(read, str):
            why[p] = read
        elif read is None or read[0] >= answers[p]:
            why[p] = f"no message just before {answers[p]} to check against"
        elif read[1] >= ts_ms:
            why[p] = f"the message at {read[0]} is at {read[1]}, not before {ts_ms}"
    return {p: why.get(p, "") for p in answers}


def check_answer(times: TopicTimes, partition: int, answer: int, ts_ms: int,
                 low: int) -> str:
    """Why `answer` is not the first offset at or after `ts_ms`; "" when it checks out."""
    if answer == OFFSET_END:
        answer = times.high(partition)
    return check_answers(times, {partition: answer}, ts_ms, {partition: low})[partition]


def start_offsets(times: TopicTimes, ts_ms: int,
                  answers: Mapping[int, int] | None = None) -> dict[int, Start]:
    """Per partition, where reading from `ts_ms` starts. `answers` stands in for the broker's
    (tests give wrong ones on purpose)."""
    if answers is None:
        answers = times.broker_offsets(ts_ms)
    partitions = times.partitions()
    lows = {p: times.low(p) for p in partitions}
    resolved = {p: times.high(p) if answers[p] == OFFSET_END else answers[p]
                for p in partitions if p in answers}
    why = check_answers(times, resolved, ts_ms, lows)
    starts = {}
    for partition in partitions:
        problem = why.get(partition, "no answer")
        if problem:
            starts[partition] = Start(partition, lows[partition], SCAN, problem)
        else:
            starts[partition] = Start(partition, resolved[partition], BROKER)
    return starts
