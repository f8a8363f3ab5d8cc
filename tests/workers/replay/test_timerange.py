"""Where a time range starts: the broker's answer is used only when the timestamps of the
messages around it confirm it. A real topic holds messages with chosen timestamps; wrong
answers are given on purpose and must be detected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_END, Producer

from core.settings import Settings
from workers.replay.timerange import (
    BROKER,
    SCAN,
    BadTime,
    TopicTimes,
    check_answer,
    format_time,
    parse_time,
    start_offsets,
)

T0 = 1_723_154_400_000  # 2024-08-08T22:00:00Z
N = 100  # messages in partition 0, one a second; partition 1 stays empty
# Partition 2 is out of order, as trades of several symbols can be: 10, 30, 20, 40 s.
DISORDERED = (10_000, 30_000, 20_000, 40_000)


@pytest.fixture
def times(settings: Settings) -> Iterator[TopicTimes]:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    for i in range(N):
        producer.produce(settings.topic_trades, b"%d" % i, b"k", partition=0,
                         timestamp=T0 + i * 1000)
    for offset_ms in DISORDERED:
        producer.produce(settings.topic_trades, b"d", b"k", partition=2,
                         timestamp=T0 + offset_ms)
    assert producer.flush(10) == 0
    with TopicTimes(settings.kafka_bootstrap, settings.topic_trades) as t:
        yield t


def first_at_or_after(partition: int, ts: int) -> int:
    """The right answer, from what was produced."""
    stamps = ([T0 + i * 1000 for i in range(N)] if partition == 0 else
              [] if partition == 1 else [T0 + d for d in DISORDERED])
    return next((i for i, s in enumerate(stamps) if s >= ts), len(stamps))


def test_parse_time_takes_epoch_ms_and_iso_8601() -> None:
    assert parse_time("1723154400000") == T0
    assert parse_time("2024-08-08T22:00:00Z") == T0
    assert parse_time("2024-08-08T22:00:00") == T0  # no zone: UTC
    assert parse_time("2024-08-09T00:00:00+02:00") == T0
    assert parse_time("2024-08-08T22:00:00.250Z") == T0 + 250
    assert parse_time("2024-08-09") == T0 + 2 * 3_600_000
    assert format_time(T0 + 250) == "2024-08-08T22:00:00.250+00:00"
    with pytest.raises(BadTime, match="seconds"):
        parse_time("1723154400")
    with pytest.raises(BadTime):
        parse_time("yesterday")


def test_a_right_answer_is_verified_and_used(times: TopicTimes) -> None:
    ts = T0 + 50_000
    starts = start_offsets(times, ts, answers={0: 50, 1: 0, 2: 4})
    assert (starts[0].source, starts[0].offset) == (BROKER, 50)
    assert (starts[1].source, starts[1].offset) == (BROKER, 0)  # empty: the end is the start
    assert (starts[2].source, starts[2].offset) == (BROKER, 4)  # every message is before


def test_a_time_before_every_message_starts_at_the_first(times: TopicTimes) -> None:
    starts = start_offsets(times, T0 - 5_000, answers={0: 0, 1: 0, 2: 0})
    assert {p: (s.source, s.offset) for p, s in starts.items()} == {
        0: (BROKER, 0), 1: (BROKER, 0), 2: (BROKER, 0)}


@pytest.mark.parametrize(("answer", "why"), [
    (0, "the message at 0 is at"),  # what the embedded broker answers for any time
    (30, "the message at 30 is at"),  # too early
    (51, "the message at 50 is at"),  # too late: the message before it is in the range
    (N + 50, "cannot be read"),  # past the end of the log
])
def test_a_wrong_answer_is_detected_and_the_partition_is_scanned(
        times: TopicTimes, answer: int, why: str) -> None:
    ts = T0 + 50_000
    starts = start_offsets(times, ts, answers={0: answer, 1: 0, 2: 4})
    assert starts[0].source == SCAN
    assert starts[0].offset == 0  # the earliest: the replay skips what is before the range
    assert why in starts[0].why


def test_an_answer_of_the_end_is_checked_too(times: TopicTimes) -> None:
    # Every message of partition 0 is before the end of its last second: "the end" is right,
    # unless the broker's high watermark is wrong, in which case the check must refuse it.
    ts = T0 + N * 1000
    start = start_offsets(times, ts, answers={0: OFFSET_END, 1: 0, 2: 4})[0]
    assert (start.source, start.offset) in ((BROKER, N), (SCAN, 0))
    # "The end" for a time in the middle is wrong whatever the watermark says.
    assert check_answer(times, 0, OFFSET_END, T0 + 50_000, low=0) != ""


def test_a_missing_answer_means_a_scan(times: TopicTimes) -> None:
    starts = start_offsets(times, T0 + 50_000, answers={1: 0, 2: 4})
    assert (starts[0].source, starts[0].offset, starts[0].why) == (SCAN, 0, "no answer")


def test_out_of_order_messages_are_judged_by_their_neighbours(times: TopicTimes) -> None:
    # The first at or after 25 s is offset 1 (30 s): right, and verified.
    assert check_answer(times, 2, 1, T0 + 25_000, low=0) == ""
    # Offset 2 (20 s) is before the time: refused.
    assert "the message at 2 is at" in check_answer(times, 2, 2, T0 + 25_000, low=0)


def test_the_brokers_own_answer_is_never_a_wrong_start(times: TopicTimes) -> None:
    """Whatever broker runs the tests: a start taken from its answer is the right offset;
    otherwise the partition is scanned from the earliest offset (the embedded broker answers
    0 for every time, so partition 0 is scanned there)."""
    for ts in (T0 - 1, T0 + 50_000, T0 + 50_500, T0 + 25_000):
        for partition, start in start_offsets(times, ts).items():
            if start.source == BROKER:
                assert start.offset == first_at_or_after(partition, ts), (ts, partition)
            else:
                assert start.offset == 0, (ts, partition)
