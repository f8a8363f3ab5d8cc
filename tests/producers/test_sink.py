"""The Kafka sink never drops a message silently: failures are counted, retried, and reported."""

from __future__ import annotations

import threading
import time

import pytest

from core.exceptions import DeliveryError
from core.kafka import ensure_topics, read_topic, wait_for_broker
from core.models import TradeRecord
from core.serde import decode_trade
from infra.stack.kafka import EmbeddedKafka
from infra.stack.ports import free_port
from producers.sink import KafkaSink


def record(trade_id: int) -> TradeRecord:
    return TradeRecord(1, "binance", "spot", "BTCUSDT", trade_id, "1.5", "2", 1723161255000,
                       False, 1723161255000)


def test_undeliverable_messages_are_retried_then_reported() -> None:
    port = free_port()  # nothing listens here
    sink = KafkaSink(f"127.0.0.1:{port}", "t", "dl", "gaps", max_attempts=3,
                     producer_overrides={"delivery.timeout.ms": 300})
    for i in range(5):
        sink.trade_record(record(i))
    with pytest.raises(DeliveryError, match="5 messages not delivered"):
        sink.flush(timeout=30)
    assert sink.delivery_errors == 5 * 3  # every message tried three times, each failure counted


def test_a_broker_that_comes_back_gets_every_message() -> None:
    port = free_port()
    sink = KafkaSink(f"127.0.0.1:{port}", "late.trades", "dl", "gaps", max_attempts=20,
                     producer_overrides={"delivery.timeout.ms": 500,
                                         "reconnect.backoff.max.ms": 200})
    for i in range(100):
        sink.trade_record(record(i))

    broker = EmbeddedKafka(port=port)
    starter = threading.Timer(1.5, broker.start)
    starter.start()
    try:
        starter.join()
        wait_for_broker(broker.bootstrap, 20)
        ensure_topics(broker.bootstrap, ["late.trades"], 1)
        sink.flush(timeout=60)
        ids = [decode_trade(m.value())["trade_id"]
               for m in read_topic(broker.bootstrap, "late.trades")]
        assert sorted(ids) == list(range(100))
        assert sink.delivery_errors > 0  # they did fail first, and were produced again
    finally:
        broker.stop()


@pytest.mark.timeout(60)
def test_a_sink_that_keeps_replacing_its_producer_stops_at_its_flush_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A broker that answers metadata requests but takes no message in time (one just back and
    # overloaded): every delivery fails and every check finds the broker back, so the sink
    # replaces its producer while failed messages are produced again. Replacing it from inside
    # a delivery callback (as the sink did, on its periodic poll) closed the producer under
    # its own flush: a deadlock.
    port = free_port()  # nothing listens here
    sink = KafkaSink(f"127.0.0.1:{port}", "t", "dl", "gaps", max_attempts=20,
                     producer_overrides={"delivery.timeout.ms": 300})
    monkeypatch.setattr(sink, "_broker_back", lambda: True)
    for i in range(500):
        sink.trade_record(record(i))
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="still unacknowledged"):
        sink.flush(timeout=8)
    assert time.monotonic() - started < 30
    assert sink.resets > 0
