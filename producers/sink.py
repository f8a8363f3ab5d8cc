"""The Kafka sink: trades, dead letters and gap records into their topics.

Every message is keyed (symbol for trades and gaps, source for dead letters) and stamped with
the trade time, so time-range replay works. The producer is idempotent with acks=all, so
librdkafka's own retries never duplicate. A message that still fails (delivery timeout, broker
gone for longer than `delivery.timeout.ms`) comes back through the error-only delivery report,
is counted and produced again, up to `max_attempts`; after that `flush()` raises rather than
pretend it was delivered.

A broker that comes back after every broker was down may have lost what it knew: the embedded
broker (memory storage) forgets the idempotent producer's id, and librdkafka then retries
UNKNOWN_PRODUCER_ID forever (or, in some versions, raises a fatal error that ends the producer
for good). So after "all brokers down", once the broker answers again, and after any fatal
error, the sink replaces its producer: it collects what the old one had not delivered (purged,
through the delivery callback), calls `on_reset` (the runner creates the topics again with
their configured partitions where the restarted broker has none), and produces those messages
with a new producer. A message the old broker had stored is then sent twice; the stream stage
drops the second by trade id. (An in-memory broker may also auto-create a topic on a client's
metadata request first, with its own default partition count: docs/RELIABILITY.md.)

Every message carries the correlation id of its batch as the header `alphaplus-cid`
(core/logs.py): one id per `POLL_EVERY` messages and per `poll()` (a live source polls about
once a second), shared by the messages of that batch — a header list reused as is costs
nothing measurable per message, a fresh id per message would double the produce cost.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core import logs, metrics
from core.exceptions import DeliveryError
from core.kafka import ProducerErrors, broker_answers, producer_config, retire_producer
from core.models import DeadLetter, Trade, TradeGap, TradeRecord
from core.serde import encode, encode_record

log = logging.getLogger(__name__)

POLL_EVERY = 1_000
DOWN_CHECK_S = 1.0  # how often a sink whose brokers all went down asks whether one is back
# Delivery reports of a producer that is finished: its messages go to the replacement.
_ENDED = (KafkaError._FATAL, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        topic_trades: str,
        topic_deadletter: str,
        topic_gaps: str,
        compression: str = "lz4",
        max_attempts: int = 5,
        producer_overrides: Mapping[str, Any] | None = None,
        on_reset: Callable[[], object] | None = None,
    ) -> None:
        self._failed: list[str] = []
        self._last_down_check = 0.0
        self._config = producer_config(bootstrap, compression, **(producer_overrides or {}))
        self._producer = self._new_producer()
        self.on_reset = on_reset
        self.resets = 0
        self._undelivered: list[tuple[str, bytes, bytes, int]] = []
        # (attempt, topic, key, value, timestamp) of failed deliveries to produce again.
        self._retries: list[tuple[int, str, bytes, bytes, int]] = []
        self._resending = False
        self.topic_trades = topic_trades
        self.topic_deadletter = topic_deadletter
        self.topic_gaps = topic_gaps
        self.max_attempts = max_attempts
        self.delivery_errors = 0
        self._since_poll = 0
        self._keys: dict[str, bytes] = {}
        self.cid = ""
        self._headers: list[tuple[str, str | bytes | None]] = []
        self.new_batch()

    def _new_producer(self) -> Producer:
        # An error tracker per producer: a retired one abandoned mid-close may still report.
        self._errors = ProducerErrors()
        return Producer({**self._config, "error_cb": self._errors})

    def new_batch(self) -> str:
        """Start a new correlation id for the messages that follow; returns it."""
        self.cid = logs.new_cid()
        self._headers = [(logs.KAFKA_HEADER, self.cid.encode())]
        # Log records of this thread (gaps, the source's summary) carry the batch's id.
        logs.CID.set(self.cid)
        log.debug("batch %s", self.cid)
        return self.cid

    def trade(self, trade: Trade) -> None:
        symbol = trade["symbol"]
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = symbol.encode()
        self._produce(self.topic_trades, key, encode(trade), trade["ts"])

    def trade_record(self, record: TradeRecord) -> None:
        symbol = record.symbol
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = symbol.encode()
        self._produce(self.topic_trades, key, encode_record(record), record.ts)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._produce(self.topic_deadletter, letter["source"].encode(), encode(letter),
                      letter["ts"])

    def gap(self, gap: TradeGap) -> None:
        self._produce(self.topic_gaps, gap["symbol"].encode(), encode(gap), gap["detected_ts"])

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        timestamp: int,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value, key, timestamp=timestamp,
                    on_delivery=on_delivery or self._first_attempt_failed,
                    headers=self._headers,
                )
                break
            except BufferError:
                # Local queue full: let librdkafka drain it, never drop.
                self._poll(0.05)
            except KafkaException as exc:
                if not exc.args[0].fatal():
                    raise
                self._reset(str(exc.args[0]))
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._poll(0)
            self.new_batch()

    def _first_attempt_failed(self, err: KafkaError | None, msg: Message) -> None:
        # One shared bound method on the hot path; only a retry carries its own count.
        self._delivery_failed(1, err, msg)

    def _delivery_failed(self, attempt: int, err: KafkaError | None, msg: Message) -> None:
        # With delivery.report.only.error this runs for failures only. It only takes note:
        # it runs inside the producer's poll or flush, where producing could reset the sink,
        # and closing a producer from its own callback deadlocks (`_resend`).
        if err is None:
            return
        topic = msg.topic() or "?"
        self.delivery_errors += 1
        metrics.KAFKA_DELIVERY_ERRORS.labels(topic).inc()
        if err.fatal() or err.code() in _ENDED:
            # Not this message's fault: the producer is done; its replacement sends it.
            self._undelivered.append((topic, msg.key() or b"", msg.value() or b"",
                                      msg.timestamp()[1]))
            return
        if attempt >= self.max_attempts:
            self._failed.append(f"{topic}: {err}")
            log.error("giving up on a message to %s after %d attempts: %s", topic, attempt, err)
            return
        log.warning("delivery to %s failed (%s); producing again (attempt %d)", topic, err,
                    attempt + 1)
        self._retries.append((attempt + 1, topic, msg.key() or b"", msg.value() or b"",
                              msg.timestamp()[1]))

    def _resend(self) -> int:
        """Produce the failed deliveries noted by `_delivery_failed`, in the owner's thread
        once the poll or flush that reported them has returned: producing may poll, and a
        poll may reset the sink, retiring (closing) the producer — which, from inside that
        producer's own callback, waits for the call that runs the callback: a deadlock."""
        if self._resending:
            # Reached again through a full queue's poll: the outer call's next poll or flush
            # takes what was added, rather than nesting one level deeper per round.
            return 0
        self._resending = True
        try:
            retries, self._retries = self._retries, []
            for attempt, topic, key, value, timestamp in retries:
                self._produce(topic, key, value, timestamp,
                              functools.partial(self._delivery_failed, attempt))
        finally:
            self._resending = False
        return len(retries)

    def _poll(self, timeout: float) -> None:
        self._producer.poll(timeout)
        if self._errors.fatal:
            self._reset(self._errors.fatal[0])
        elif self._errors.down_since is not None and self._broker_back():
            self._reset("the broker is back after every broker was down")
        self._resend()

    def _broker_back(self) -> bool:
        now = time.monotonic()
        if now - self._last_down_check < DOWN_CHECK_S:
            return False
        self._last_down_check = now
        return broker_answers(self._producer)

    def _reset(self, reason: str) -> None:
        """Replace a producer that hit a fatal error; produce what it left undelivered."""
        # Its messages come back through the delivery callback (failed with _FATAL, or
        # purged), which keeps them for the new producer. Bounded: the old producer's own
        # close() may never end (core/kafka.py close_producer).
        retire_producer(self._producer)
        pending, self._undelivered = self._undelivered, []
        log.warning("kafka producer failed for good (%s): replacing it, %d messages to produce "
                    "again", reason, len(pending))
        if self.on_reset is not None:
            self.on_reset()
        self._producer = self._new_producer()
        self.resets += 1
        for topic, key, value, timestamp in pending:
            self._produce(topic, key, value, timestamp)

    def poll(self, timeout: float = 0.0) -> None:
        self._poll(timeout)
        if self._since_poll:
            self._since_poll = 0
            self.new_batch()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every message to be acknowledged; raise `DeliveryError` if any was not."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
            fatal = self._errors.fatal
            if fatal or self._undelivered:
                self._reset(fatal[0] if fatal else "messages failed for good")
            elif self._errors.down_since is not None and self._broker_back():
                self._reset("the broker is back after every broker was down")
            elif (self._resend() == 0 and remaining == 0 and self._producer.flush(0) == 0
                    and not (self._retries or self._undelivered or self._errors.fatal)):
                break
            # Checked after a reset too: a broker that keeps coming back and going away again
            # would otherwise keep this loop going past its timeout.
            if time.monotonic() >= deadline:
                left = len(self._producer) + len(self._retries) + len(self._undelivered)
                raise DeliveryError(f"{left} messages still unacknowledged after {timeout}s")
        if self._failed:
            failed, self._failed = self._failed, []
            raise DeliveryError(f"{len(failed)} messages not delivered; first: {failed[0]}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            # Bounded, unlike Producer.close(): after a flush that raised, what is left (which
            # the DeliveryError reported) is purged rather than waited for.
            retire_producer(self._producer)

