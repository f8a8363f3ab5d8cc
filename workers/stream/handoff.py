"""What leaves the stream stage besides live candles: closed candles to `market.candles` and to
Celery, trade batches to the persistence task, bad input to the dead-letter topic.

Celery tasks are sent by name, so the stream process needs the broker settings only, not the
task code. One task per kind per poll batch, never one per trade.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from confluent_kafka import KafkaException, Producer

from core.candles import Candle, LateTrade
from core.kafka import (
    ProducerErrors,
    broker_answers,
    producer_config,
    recreate_topics,
    retire_producer,
)
from core.models import TradeRecord
from core.serde import dead_letter, encode
from core.settings import Settings
from workers.stream.outbox import TaskOutbox

# Task names: the contract between this stage and workers/tasks.
TASK_CANDLES = "alphaplus.candles_closed"
TASK_TRADES = "alphaplus.persist_trades"
TASK_LATE = "alphaplus.amend_late_trades"

# How long queued messages may stay stuck once the broker answers again after being down.
STUCK_AFTER_BACK_S = 5.0

_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


def trade_rows(trades: list[TradeRecord]) -> list[list[Any]]:
    """Compact rows for the persistence task: about half the size of trade dicts."""
    return [[t.market, t.symbol, t.trade_id, t.price, t.qty, t.ts, t.buyer_maker]
            for t in trades]


class Handoff:
    """`produce_candles` False: closed candles go to Celery only, not to `market.candles`;
    `dead_letters` False: rejected input is only counted (by the stage); `persist_trades`
    False: no trade batches. A replay turns the topics off, so it never writes to live ones."""

    def __init__(self, settings: Settings, outbox: TaskOutbox, ns: str, source: str, *,
                 produce_candles: bool = True, dead_letters: bool = True,
                 persist_trades: bool = True) -> None:
        self.settings = settings
        self.outbox = outbox
        self.ns = ns
        self.source = source
        self.produce_candles = produce_candles
        self.dead_letters = dead_letters
        self.persist_trades = persist_trades
        self._config = producer_config(settings.kafka_bootstrap, settings.kafka_compression,
                                       **{"linger.ms": 5})
        self.producer = self._new_producer()
        self.tasks_sent = 0
        self.cid: str | None = None  # of the batch being handled; set by the stage

    def _new_producer(self) -> Producer:
        # An error tracker per producer: a retired one abandoned mid-close may still report.
        self._errors = ProducerErrors()
        return Producer({**self._config, "error_cb": self._errors})

    def candles(self, candles: list[Candle]) -> str | None:
        """Returns the id of the Celery task that carries them."""
        if not candles:
            return None
        if self.produce_candles:
            topic = self.settings.topic_candles
            for c in candles:
                self._produce(topic, _encode(c), f"{c.symbol}:{c.timeframe}".encode(),
                              c.open_time)
        return self._send(TASK_CANDLES, [msgspec.to_builtins(c) for c in candles])

    def trades(self, trades: list[TradeRecord]) -> None:
        if trades and self.persist_trades:
            self._send(TASK_TRADES, trade_rows(trades))

    def late(self, late: list[tuple[bytes, LateTrade]]) -> None:
        """Trades older than every held candle: persisted, and amending the stored candles."""
        if late:
            trades = [msgspec.json.decode(raw, type=TradeRecord) for raw, _ in late]
            self._send(TASK_LATE, trade_rows(trades))

    def rejected(self, raw: bytes, reason: str, detail: str) -> None:
        if not self.dead_letters:
            return
        letter = dead_letter(raw, reason, detail, self.source, int(time.time() * 1000))
        self._produce(self.settings.topic_deadletter, encode(letter), self.source.encode(),
                      letter["ts"])

    def _produce(self, topic: str, value: bytes, key: bytes, timestamp: int) -> None:
        try:
            self.producer.produce(topic, value, key, timestamp=timestamp)
        except KafkaException as exc:
            if not exc.args[0].fatal():
                raise
            self._replace(str(exc.args[0]))
            self.producer.produce(topic, value, key, timestamp=timestamp)

    def _replace(self, reason: str) -> None:
        """A fatal producer error (a restarted embedded broker no longer knows the idempotent
        producer's id) ends a librdkafka producer for good: a new one, once the topics are
        back with their partition count. What the old one still held is gone with the
        broker's log it was meant for; the candles themselves are in Redis and the database."""
        log.warning("kafka producer failed for good (%s): replacing it", reason)
        retire_producer(self.producer)  # bounded: see core/kafka.py close_producer
        recreate_topics(self.settings.kafka_bootstrap,
                        [self.settings.topic_candles, self.settings.topic_deadletter],
                        self.settings.kafka_partitions)
        self.producer = self._new_producer()

    def _send(self, task: str, rows: list[Any], *extra: Any) -> str:
        # Queues come from celeryconfig.task_routes, by task name.
        task_id = self.outbox.send(task, (self.ns, rows, *extra), self.cid)
        self.tasks_sent += 1
        return task_id

    def close(self) -> None:
        try:
            self.flush()
        finally:
            # Bounded, unlike Producer.close(): after a flush that raised, what is left (which
            # its error reported) is purged rather than waited for.
            retire_producer(self.producer)

    def flush(self, timeout: float = 30.0) -> None:
        """Everything produced is acknowledged: called before a checkpoint is stored.

        In slices, so that a producer that can no longer deliver is replaced instead of waited
        for: after a fatal error, and when every broker was down, the broker answers again and
        what is queued still does not go within STUCK_AFTER_BACK_S — a restarted embedded
        broker, which answers the old producer's id with UNKNOWN_PRODUCER_ID for ever (a real
        Kafka coming back takes the idempotent producer's retries, and they drain)."""
        deadline = time.monotonic() + timeout
        back_since: float | None = None
        while True:
            remaining = self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline and (remaining or self._errors.fatal):
                raise TimeoutError(f"{remaining} candle/dead-letter messages unacknowledged")
            if self._errors.fatal:
                self._replace(self._errors.fatal[0])
                back_since = None
                continue
            if remaining == 0:
                return
            if self._errors.down_since is not None and broker_answers(self.producer):
                back_since = back_since or time.monotonic()
                if time.monotonic() - back_since >= STUCK_AFTER_BACK_S:
                    self._replace(f"the broker is back after every broker was down, and "
                                  f"{remaining} messages for its earlier log are stuck")
                    back_since = None

