"""The stream stage's loop: consume trades in batches, build candles, publish, hand off,
checkpoint, commit — in that order, so that a crash at any point loses nothing and (with the
idempotent writes downstream) doubles nothing.

Per batch: (1) each partition's messages go through its `PartitionProcessor`; (2) live candles
go to Redis, throttled; (3) closed candles go to `market.candles` and Celery, trades to the
persistence task, bad messages to the dead-letter topic; (4) the Kafka producer is flushed, so
everything of (3) is acknowledged; (5) each touched partition's checkpoint (state + next offset)
is stored in Redis; (6) the offsets are committed to Kafka. A partition that is assigned loads
its checkpoint and seeks to its offset, whichever process stored it.

Observability stays off the per-trade path: the Prometheus counters are brought up to date once
per batch from the batch's own counts, the consumer lag at most once a second from the
consumer's cached watermarks, and the correlation id is read from the last message of a batch
only (core/logs.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import msgspec
import redis
from celery import Celery
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from kombu.exceptions import OperationalError as BrokerUnavailable

from core import logs, metrics, redis_keys
from core.candles import Candle
from core.kafka import topic_id
from core.settings import Settings
from workers.stream.handoff import Handoff
from workers.stream.live import LivePublisher
from workers.stream.outbox import TaskOutbox
from workers.stream.partition import BatchResult, PartitionCheckpoint, PartitionProcessor

log = logging.getLogger(__name__)

QUIET_CHECK_S = 0.25
REDELIVER_CHECK_S = 5.0
LAG_CHECK_S = 1.0
REDIS_RETRY_MAX_S = 2.0
# Redis away, as the stage meets it: its own client, or Celery's when sending a task.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, BrokerUnavailable)
_decode_checkpoint = msgspec.json.Decoder(PartitionCheckpoint).decode
_encode = msgspec.json.Encoder().encode


@dataclass
class StageStats:
    trades: int = 0
    batches: int = 0
    candles_closed: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: int = 0
    busy_ms: float = 0.0  # time spent handling batches (not waiting on Kafka)

    def minus(self, other: StageStats) -> dict[str, float]:
        return {name: getattr(self, name) - getattr(other, name)
                for name in self.__dataclass_fields__}


def batch_cid(msg: Message) -> str | None:
    """The producer's correlation id on a message (header `alphaplus-cid`), if any."""
    headers = msg.headers()
    if headers:
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            if name == logs.KAFKA_HEADER and value:
                cid = value.decode(errors="replace") if isinstance(value, bytes) else value
                return cid if logs.valid_cid(cid) else None
    return None


def consumer_config(settings: Settings, group: str) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # The embedded broker completes a group join after about half the session timeout
        # (measured: 23 s at the default 45 s, 3 s at 6 s); 6 s is also the smallest a real
        # Kafka accepts by default, and it moves a dead process's partitions quickly.
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 500,
        # Fetch eagerly: measured on the embedded broker, these take a consumer from ~110k to
        # ~335k msg/s, and a short fetch wait keeps the tick-to-candle latency low.
        "fetch.wait.max.ms": settings.kafka_fetch_wait_ms,
        "queued.min.messages": 200_000,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
    }


def drop_checkpoints(client: redis.Redis, ns: str, group: str, topic: str) -> int:
    """Forget every partition checkpoint of `group` on `topic`: for a topic that was just
    (re)created, whose offsets start again at 0. A checkpoint of the topic's earlier life would
    make the stage wait for an offset the new log reaches only much later, skipping everything
    before it (seen with the embedded broker, whose log lives in memory, and a Redis that
    outlived it)."""
    keys = list(client.scan_iter(match=redis_keys.stream_checkpoint(ns, group, topic, 0)[:-1]
                                 + "*", count=1000))
    return int(client.delete(*keys)) if keys else 0


class StreamStage:
    def __init__(self, settings: Settings, celery: Celery, ns: str = redis_keys.LIVE,
                 group: str | None = None) -> None:
        self.settings = settings
        self.ns = ns
        self.group = group or settings.stream_group
        self.topic = settings.topic_trades
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.live = LivePublisher(self.redis, ns, settings.live_throttle_ms,
                                  settings.redis_window)
        self.outbox = TaskOutbox(self.redis, celery, ns, settings.task_redeliver_s)
        self.handoff = self._new_handoff()
        self.consumer = self._new_consumer()
        self.partitions: dict[int, PartitionProcessor] = {}
        # A replay turns both off: history is closed by its own trades only (never by the wall
        # clock), and forming candles at replay speed would flood pub/sub.
        self.wall_clock_close = True
        self.publish_forming = True
        self.stats = StageStats()
        self._saved_stats = StageStats()
        self._last_quiet_check = 0.0
        self._last_redeliver_check = time.monotonic()
        self._last_lag_check = 0.0
        self._progress = logs.Every(settings.log_every_s)
        self._logged_stats = StageStats()
        self._m_trades = metrics.STREAM_TRADES.labels(ns)
        self._m_batch = metrics.stream_batch()
        self._m_dropped = {reason: metrics.STREAM_DROPPED.labels(ns, reason)
                           for reason in ("duplicate", "late", "rejected")}
        self._m_closed = {tf: metrics.STREAM_CANDLES_CLOSED.labels(ns, tf)
                          for tf in settings.timeframes}

    # Made by methods so that a replay (workers/replay) can configure them.
    def _new_handoff(self) -> Handoff:
        return Handoff(self.settings, self.outbox, self.ns, source=f"stream:{self.group}")

    def _new_consumer(self) -> Consumer:
        return Consumer(consumer_config(self.settings, self.group))

    # -- partition ownership ---------------------------------------------------------------
    def _checkpoint_key(self, partition: int) -> str:
        return redis_keys.stream_checkpoint(self.ns, self.group, self.topic, partition)

    def _load(self, partition: int) -> PartitionProcessor:
        """The partition as its checkpoint left it (new, offset -1, without one)."""
        raw = self.redis.get(self._checkpoint_key(partition))
        if raw is None:
            return PartitionProcessor(partition, self.settings.timeframes,
                                      self.settings.late_grace_ms)
        return PartitionProcessor.restore(partition, self.settings.timeframes,
                                          self.settings.late_grace_ms, _decode_checkpoint(raw))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        current = topic_id(self.settings.kafka_bootstrap, self.topic) or ""
        for tp in partitions:
            proc = self.partitions[tp.partition] = self._load(tp.partition)
            if proc.offset >= 0 and proc.topic_id and current and proc.topic_id != current:
                # The topic was deleted and created again (a restarted in-memory broker): its
                # offsets start at 0 again, and the old offset would skip the new log up to
                # it. The candles and trade ids carry on: they belong to the trades, not to
                # the log.
                log.warning("partition %d: %s was re-created (id %s, checkpoint of %s): "
                            "reading the new log from its start", tp.partition, self.topic,
                            current, proc.topic_id)
                proc.offset = -1
                tp.offset = OFFSET_BEGINNING
            proc.topic_id = current
            if proc.offset >= 0:
                tp.offset = proc.offset  # the checkpoint, not the committed offset, is the truth
        consumer.assign(partitions)
        log.info("assigned partitions %s (topic id %s)",
                 [(tp.partition, tp.offset) for tp in partitions], current or "unknown")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Every batch already ended with a checkpoint, so the new owner starts from it.
        for tp in partitions:
            self.partitions.pop(tp.partition, None)
            # The new owner reports its lag; a stale value here would be summed with it.
            with contextlib.suppress(KeyError):
                metrics.STREAM_CONSUMER_LAG.remove(self.topic, str(tp.partition))
        log.info("revoked partitions %s", [tp.partition for tp in partitions])

    # -- the loop --------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> StageStats:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not stop.is_set():
                try:
                    self.step()
                except REDIS_DOWN as exc:
                    self._wait_for_redis(stop, exc)
        finally:
            self.close()
        return self.stats

    def _wait_for_redis(self, stop: threading.Event, exc: Exception) -> None:
        """Redis (the checkpoints, the window, the Celery broker) went away inside a batch:
        wait until it answers, then go back to every partition's checkpoint, as a restarted
        process would. What the batch had already handed on is handed on again, and written
        idempotently downstream."""
        log.warning("redis is unavailable (%s); waiting for it", exc)
        delay = 0.1
        while not stop.is_set():
            try:
                self.redis.ping()
                loaded = {p: self._load(p) for p in self.partitions}
            except REDIS_DOWN:
                stop.wait(delay)
                delay = min(2 * delay, REDIS_RETRY_MAX_S)
                continue
            for partition, proc in loaded.items():
                self.partitions[partition] = proc
                # No checkpoint means no commit either (it follows the checkpoint): start over.
                offset = proc.offset if proc.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(self.topic, partition, offset))
            self.stats = dataclasses.replace(self._saved_stats)
            self.live = LivePublisher(self.redis, self.ns, self.settings.live_throttle_ms,
                                      self.settings.redis_window)
            log.warning("redis is back; resuming from the checkpoints of partitions %s",
                        sorted(self.partitions))
            return

    def step(self, timeout: float = 0.1) -> int:
        """One poll batch; returns the number of messages handled."""
        first = self.consumer.poll(timeout)
        started = time.perf_counter()
        batch: list[Message] = []
        cid = None
        if first is not None:
            batch.append(first)
            batch.extend(self.consumer.consume(self.settings.stream_batch - 1, 0))
            cid = batch_cid(batch[-1])
        self.handle(self.group_batch(batch), started, counted=bool(batch), cid=cid)
        return len(batch)

    def group_batch(self, batch: list[Message]) -> dict[int, list[tuple[int, bytes]]]:
        """The batch's messages as (offset, value) per partition, in order."""
        by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err)
                continue
            value = msg.value()
            partition = msg.partition()
            offset = msg.offset()
            if partition is None or offset is None:
                continue
            by_partition[partition].append((offset, value or b""))
        return by_partition

    def handle(self, by_partition: dict[int, list[tuple[int, bytes]]], started: float,
               counted: bool, cid: str | None = None) -> list[Candle]:
        """Candles, live publish, hand-off and checkpoint for one batch (`counted`: it held
        messages, so it counts in the batch statistics; `cid`: the batch's correlation id, a
        new one when None); returns the candles it closed."""
        if cid is None and counted:
            cid = logs.new_cid()
        token = logs.CID.set(cid)
        self.live.cid = self.handoff.cid = cid
        try:
            return self._handle(by_partition, started, counted)
        finally:
            logs.CID.reset(token)

    def _handle(self, by_partition: dict[int, list[tuple[int, bytes]]], started: float,
                counted: bool) -> list[Candle]:
        closed: list[Candle] = []
        trades = duplicates = late = rejected = 0
        touched_partitions = []
        results: list[BatchResult] = []
        for partition, messages in by_partition.items():
            proc = self.partitions.get(partition)
            if proc is None:  # revoked while the batch was in flight: its new owner reads it
                continue
            result = proc.process(messages)
            touched_partitions.append(proc)
            closed.extend(result.closed)
            if self.publish_forming:
                self.live.touched(proc.symbols, result.touched)
            results.append(result)
            trades += len(result.trades)
            duplicates += result.duplicates
            late += len(result.late)
            rejected += len(result.rejected)
        self.stats.trades += trades
        self.stats.duplicates += duplicates
        self.stats.late += late
        self.stats.rejected += rejected
        now = time.monotonic()
        if self.wall_clock_close and now - self._last_quiet_check >= QUIET_CHECK_S:
            self._last_quiet_check = now
            wall_ms = int(time.time() * 1000)
            for proc in self.partitions.values():
                before = len(closed)
                proc.close_quiet(wall_ms, self.settings.close_grace_ms, closed)
                if len(closed) > before and proc not in touched_partitions:
                    touched_partitions.append(proc)
        if closed:
            self.live.closed(closed)  # the window first: the tasks read it
        # Live candles before the hand-off, so a tick reaches Redis without waiting for the
        # batch's Celery sends (a few ms each); nothing in the hand-off reads them.
        self.live.publish_due(now)
        for result in results:
            self.handoff.trades(result.trades)
            self.handoff.late(result.late)
            for bad in result.rejected:
                self.handoff.rejected(bad.raw, bad.reason, bad.detail)
        if closed:
            task_id = self.handoff.candles(closed)
            self.stats.candles_closed += len(closed)
            log.debug("handed off %d closed candles (task %s)", len(closed), task_id)
        if now - self._last_redeliver_check >= REDELIVER_CHECK_S:
            self._last_redeliver_check = now
            resent = self.outbox.redeliver()
            if resent:
                log.warning("sent %d overdue tasks again (no worker finished them)", resent)
        if counted:
            self.stats.batches += 1
            self.stats.busy_ms += (time.perf_counter() - started) * 1000
        if touched_partitions:
            self.handoff.flush()
            self._checkpoint(touched_partitions)
        if counted or closed:  # the wall clock closes candles in empty batches too
            self._count(trades, duplicates, late, rejected, closed,
                        time.perf_counter() - started if counted else None)
        if now - self._last_lag_check >= LAG_CHECK_S:
            self._last_lag_check = now
            self._update_lag()
        return closed

    def _count(self, trades: int, duplicates: int, late: int, rejected: int,
               closed: list[Candle], busy_s: float | None) -> None:
        """The batch's counts into the Prometheus metrics (once per batch), and a progress
        line now and then (`ALPHAPLUS_LOG_EVERY_S`); `busy_s` None: no messages, only
        candles the wall clock closed."""
        if trades:
            self._m_trades.inc(trades)
        for reason, n in (("duplicate", duplicates), ("late", late), ("rejected", rejected)):
            if n:
                self._m_dropped[reason].inc(n)
        if closed:
            per_tf: dict[str, int] = defaultdict(int)
            for candle in closed:
                per_tf[candle.timeframe] += 1
            for tf, n in per_tf.items():
                counter = self._m_closed.get(tf)
                if counter is None:
                    counter = self._m_closed[tf] = metrics.STREAM_CANDLES_CLOSED.labels(
                        self.ns, tf)
                counter.inc(n)
        if busy_s is None:
            return
        self._m_batch.observe(busy_s)
        if self._progress.due():
            done = self.stats.minus(self._logged_stats)
            self._logged_stats = dataclasses.replace(self.stats)
            log.info("%d trades (+%d), %d candles closed (+%d), %d duplicates, %d late, "
                     "%d rejected; last batch %d trades in %.1f ms",
                     self.stats.trades, done["trades"], self.stats.candles_closed,
                     done["candles_closed"], self.stats.duplicates, self.stats.late,
                     self.stats.rejected, trades, busy_s * 1000)

    def _update_lag(self) -> None:
        """Messages behind the high watermark per owned partition, from the watermarks the
        consumer caches from its fetches (no broker round trip)."""
        for partition, proc in list(self.partitions.items()):
            if proc.offset < 0:
                continue
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                metrics.STREAM_CONSUMER_LAG.labels(self.topic, str(partition)).set(
                    max(high - proc.offset, 0))

    def _checkpoint(self, processors: list[PartitionProcessor]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for proc in processors:
            pipe.set(self._checkpoint_key(proc.partition), _encode(proc.checkpoint()))
        # The counters travel with the checkpoint, so a crash never counts a batch twice.
        stats_key = redis_keys.stream_stats(self.ns)
        for name, delta in self.stats.minus(self._saved_stats).items():
            if delta:
                pipe.hincrbyfloat(stats_key, name, delta)
        pipe.execute()
        self._saved_stats = dataclasses.replace(self.stats)
        offsets = [TopicPartition(self.topic, p.partition, p.offset)
                   for p in processors if p.offset >= 0]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                # The checkpoint is the truth; a lost commit only costs a re-read on restart.
                log.warning("offset commit failed: %s", exc)

    def close(self) -> None:
        try:
            self.live.publish_due(force=True)
            self.handoff.close()
        finally:
            self.consumer.close()
            self.redis.close()
