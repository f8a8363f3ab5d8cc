"""Retiring a Kafka producer ends in bounded time, whatever became of its broker."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import KafkaError, Message, Producer

from core.kafka import close_producer, ensure_topics, producer_config, retire_producer
from infra.stack.kafka import EmbeddedKafka
from infra.stack.ports import free_port


@pytest.mark.timeout(60)
def test_retiring_a_producer_whose_broker_went_away_returns_in_bounded_time(
        caplog: pytest.LogCaptureFixture) -> None:
    broker = EmbeddedKafka(port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap, ["retire.me"], 1)
        producer = Producer(producer_config(broker.bootstrap, "none",
                                            **{"delivery.timeout.ms": 500}))
        producer.produce("retire.me", b"before")
        assert producer.flush(20) == 0  # connected, with a producer id from this broker
    finally:
        broker.stop()

    retrying = True

    def again(err: KafkaError | None, msg: Message) -> None:
        # An owner that produces every failed message again from its delivery callback (as
        # the sink did): Producer.close() then waits for a queue that keeps refilling.
        if err is not None and retrying:
            producer.produce("retire.me", msg.value(), on_delivery=again)

    for i in range(100):
        producer.produce("retire.me", b"%d" % i, on_delivery=again)
    time.sleep(1.0)  # past delivery.timeout.ms: their failures wait for the next poll

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="core.kafka"):
        closed = retire_producer(producer)
    elapsed = time.monotonic() - started
    retrying = False  # the abandoned close can end now, in its own thread

    assert elapsed < 10
    assert closed is False
    assert "kafka producer did not close within" in caplog.text


def test_a_producer_with_nothing_left_closes_in_time(kafka_bootstrap: str) -> None:
    producer = Producer(producer_config(kafka_bootstrap))
    started = time.monotonic()
    assert close_producer(producer) is True
    assert time.monotonic() - started < 5
