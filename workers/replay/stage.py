"""The stream stage, configured for a replay: the same `PartitionProcessor`s, live publisher,
hand-off, outbox and checkpoints as live, over explicitly assigned partitions and a time range.

What differs from live, and why:
- partitions are assigned at start offsets (workers/replay/timerange.py), not subscribed: no
  group join to wait for, and the range decides where reading starts;
- only messages whose timestamp (the trade time, by the topic's contract) is in
  `[read_from_ms, to_ms)` are processed, and only the chosen symbols (by message key); a partition
  is done at its first message at or after `to_ms + slack_ms` (trades arrive slightly out of
  order) or at its end (EOF);
- the trades before `from_ms` (the warm-up) build candles and indicator state but write
  nothing: no candle, indicator, signal or pattern opening before `from_ms` is stored or
  published, and no trade before it is persisted (the tasks get `from_ms` as `write_from`).
  Recursive indicators (EMA, Wilder's RSI/ATR/ADX) carry their whole history, so without a
  warm-up a replay that starts where the live pipeline was already running computes other
  values, and other signals, than live did for the same candles;
- candles close by trade time only, never by the wall clock (history must not depend on when
  it is replayed); forming candles are published only when pacing (a watched replay);
- nothing goes to the live topics: no `market.candles`, no dead letters (they are counted),
  trades persisted only when asked;
- batches are cut so that the stage stays within what the indicator tasks can still find in
  the Redis window (workers/replay/backpressure.py), and, with a speed, so that no trade is
  processed before its time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from celery import Celery
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from core import logs, redis_keys
from core.candles import Candle, LateTrade
from core.models import TradeRecord
from core.settings import Settings
from workers.replay.backpressure import PendingCandles
from workers.stream.handoff import TASK_CANDLES, Handoff
from workers.stream.partition import PartitionProcessor
from workers.stream.stage import REDELIVER_CHECK_S, StreamStage, consumer_config

log = logging.getLogger(__name__)

# Messages taken from Kafka at once: larger than live (latency does not matter here), so
# each Celery task carries more candles and the fixed costs per batch weigh less.
REPLAY_BATCH = 100_000
PACE_SLEEP_S = 0.1  # the longest a paced step sleeps, so the driver stays responsive
BACKPRESSURE_SLEEP_S = 0.005

Groups = dict[int, list[tuple[int, bytes]]]


@dataclass(frozen=True)
class Window:
    """What a replay writes: candles opening in [from_ms, to_ms), some symbols or all; what it
    reads: trades from `read_from_ms` (None: `from_ms`, no warm-up; 0: the topic's start)."""

    from_ms: int
    to_ms: int
    slack_ms: int  # disorder allowed past `to_ms` before a partition counts as done
    symbols: frozenset[str] | None = None
    speed: float = 0.0  # 0: as fast as possible; else a multiple of real time
    read_from_ms: int | None = None

    @property
    def start_ms(self) -> int:
        return self.from_ms if self.read_from_ms is None else min(self.read_from_ms,
                                                                   self.from_ms)


class _Handoff(Handoff):
    """Tells the backpressure which candles each task carries."""

    def __init__(self, stage: ReplayStage, persist_trades: bool) -> None:
        super().__init__(stage.settings, stage.outbox, stage.ns, f"replay:{stage.ns}",
                         produce_candles=False, dead_letters=False,
                         persist_trades=persist_trades)
        self.pending = stage.pending
        # With no warm-up every candle built is stored, the range's partial first ones too.
        window = stage.window
        self.write_from = window.from_ms if window.start_ms < window.from_ms else 0

    def candles(self, candles: list[Candle]) -> str | None:
        if not candles:
            return None
        # Warm-up candles go to the task too: its indicator engine must see them.
        task_id = self._send(TASK_CANDLES, [msgspec.to_builtins(c) for c in candles],
                             self.write_from)
        self.pending.add(task_id, candles)
        return task_id

    def trades(self, trades: list[TradeRecord]) -> None:
        super().trades([t for t in trades if t.ts >= self.write_from])

    def late(self, late: list[tuple[bytes, LateTrade]]) -> None:
        # A late trade amends a stored candle: a warm-up one is not stored.
        super().late([item for item in late if item[1].ts >= self.write_from])


class _Silent(logs.Every):
    """No progress lines: a replay reports progress in its status (and the CLI's bar, which
    log lines would break up)."""

    def due(self, now: float | None = None) -> bool:
        return False


class ReplayStage(StreamStage):
    def __init__(self, settings: Settings, celery: Celery, run_id: str, window: Window,
                 persist_trades: bool = False) -> None:
        self.window = window
        self.persist_trades = persist_trades
        self._keys = None if window.symbols is None else {s.encode() for s in window.symbols}
        super().__init__(settings, celery, ns=run_id,
                         group=f"{settings.stream_group}-{run_id}")
        self.wall_clock_close = False
        self.publish_forming = window.speed > 0
        self._progress = _Silent(0)
        self.done: set[int] = set()
        self.position: dict[int, int] = {}  # per partition, the last message timestamp read
        self.skipped = 0  # messages read and not replayed (outside the range, other symbols)
        self.last_progress = time.monotonic()  # a piece handled or a task done
        self._groups: Groups = {}
        self._stamps: dict[int, list[int]] = {}
        self._clock = 0.0
        self._last_redeliver = time.monotonic()
        self._span_ms = self.pending.span_ms(settings.timeframes[0])

    def _new_consumer(self) -> Consumer:
        return Consumer({**consumer_config(self.settings, self.group),
                         "enable.partition.eof": True})

    def _new_handoff(self) -> Handoff:
        # Runs inside StreamStage.__init__: the outbox exists, the backpressure not yet.
        self.pending = PendingCandles(self.redis, self.ns, self.settings.redis_window)
        return _Handoff(self, self.persist_trades)

    # -- reading -----------------------------------------------------------------------------
    def start(self, offsets: dict[int, int]) -> None:
        for partition in offsets:
            self.partitions[partition] = PartitionProcessor(
                partition, self.settings.timeframes, self.settings.late_grace_ms)
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in offsets.items()])
        self._clock = time.monotonic()
        log.debug("replay %s: reading %s", self.ns, sorted(offsets.items()))

    @property
    def finished(self) -> bool:
        """Every partition done and every message read handed on."""
        return len(self.done) >= len(self.partitions) and not self._groups

    def step(self, timeout: float = 0.1) -> int:
        """Hand on one piece of the messages read (reading more when none is left); returns
        the number of messages handed on (0 while waiting on pace or backpressure)."""
        if self._groups:
            self._redeliver_now_and_then()
        elif not self.finished:
            self._read(timeout)
        if not self._groups:
            return 0
        completed = self.pending.completed
        if self.pending.over():
            if self.pending.completed != completed:
                self.last_progress = time.monotonic()
            time.sleep(BACKPRESSURE_SLEEP_S)
            return 0
        piece = self._next_piece()
        if piece is None:
            return 0
        started = time.perf_counter()
        self.handle(piece, started, counted=True)
        self.last_progress = time.monotonic()
        return sum(len(v) for v in piece.values())

    def _read(self, timeout: float) -> None:
        first = self.consumer.poll(timeout)
        if first is None:
            return
        batch = [first, *self.consumer.consume(REPLAY_BATCH - 1, 0)]
        self.group_batch(batch)
        self.last_progress = time.monotonic()

    def group_batch(self, batch: list[Message]) -> Groups:
        """Keep the batch's messages of the range (and symbols), per partition, with their
        timestamps; note the partitions that are done."""
        groups: Groups = {}
        stamps: dict[int, list[int]] = {}
        lo, hi, stop = self.window.start_ms, self.window.to_ms, (
            self.window.to_ms + self.window.slack_ms)
        keys, done, position = self._keys, self.done, self.position
        skipped = 0
        # The per-message path (a few hundred thousand a second): messages come in runs of
        # one partition, so its lists' appends are looked up once per run.
        current: int | None = None
        unused: list[Any] = []
        add: Callable[[tuple[int, bytes]], None] = unused.append
        add_ts: Callable[[int], None] = unused.append
        for msg in batch:
            partition = msg.partition()
            if partition is None:
                continue
            if partition != current:
                if partition in done:
                    continue
                current = partition
                add = groups.setdefault(partition, []).append
                add_ts = stamps.setdefault(partition, []).append
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._done(partition)
                    current = None
                else:
                    log.warning("kafka: %s", err)
                continue
            ts = msg.timestamp()[1]
            if ts >= stop:
                position[partition] = ts
                self._done(partition)
                current = None
                continue
            if ts < lo or ts >= hi or (keys is not None and msg.key() not in keys):
                skipped += 1
                position[partition] = ts
                continue
            add((msg.offset(), msg.value() or b""))  # type: ignore[arg-type]  # never None
            add_ts(ts)
        for partition, ts_list in list(stamps.items()):
            if not ts_list:
                del groups[partition], stamps[partition]
                continue
            position[partition] = max(position.get(partition, ts_list[-1]), ts_list[-1])
        self.skipped += skipped
        self._groups, self._stamps = groups, stamps
        return self._groups

    def _done(self, partition: int) -> None:
        if partition not in self.done:
            self.done.add(partition)
            self.consumer.pause([TopicPartition(self.topic, partition)])
            log.debug("replay %s: partition %d done", self.ns, partition)

    def _next_piece(self) -> Groups | None:
        """The next messages to hand on: from each partition, those before a bound in trade
        time (a span the backpressure allows; with a speed, the trade time due by now)."""
        heads = min(stamps[0] for stamps in self._stamps.values())
        bound = heads + self._span_ms
        if self.window.speed > 0 and heads < self.window.from_ms:
            self._clock = time.monotonic()  # warming up: at full speed, the pace starts after
            bound = min(bound, self.window.from_ms)
        elif self.window.speed > 0:
            due = self.window.from_ms + int(
                (time.monotonic() - self._clock) * 1000 * self.window.speed)
            if due < heads:
                self.live.publish_due()  # the trailing edge of what the throttle held back
                wait = (heads - due) / 1000 / self.window.speed
                time.sleep(min(wait, PACE_SLEEP_S))
                self.last_progress = time.monotonic()  # waiting on purpose
                return None
            bound = min(bound, due + 1)
        piece: Groups = {}
        for partition in list(self._groups):
            messages, stamps = self._groups[partition], self._stamps[partition]
            if max(stamps) < bound:
                cut = len(stamps)
            else:
                cut = 0
                while cut < len(stamps) and stamps[cut] < bound:
                    cut += 1
            if cut:
                piece[partition] = messages[:cut]
            if cut == len(stamps):
                del self._groups[partition], self._stamps[partition]
            else:
                self._groups[partition], self._stamps[partition] = messages[cut:], stamps[cut:]
        return piece

    def _redeliver_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_redeliver >= REDELIVER_CHECK_S:
            self._last_redeliver = now
            self.outbox.redeliver()

    # -- the end -------------------------------------------------------------------------------
    def finish(self) -> list[Candle]:
        """Close every candle whose range ends at or before `to_ms` (the range's end is its
        watermark), hand them on, publish each symbol's forming candles once, checkpoint."""
        closed: list[Candle] = []
        for proc in self.partitions.values():
            for candles in proc.symbols.values():
                candles.close_until(self.window.to_ms, closed)
        if closed:
            self.live.closed(closed)
            self.handoff.candles(closed)
            self.stats.candles_closed += len(closed)
        for proc in self.partitions.values():
            self.live.touched(proc.symbols, set(proc.symbols))
        self.live.publish_due(force=True)
        self.handoff.flush()
        if self.partitions:
            self._checkpoint(list(self.partitions.values()))
        return closed

    def drop_warmup(self) -> int:
        """Once the tasks are done: take the warm-up's candles out of the run's Redis windows
        (the tasks needed them there; nobody else should see them). Returns how many."""
        if self.window.start_ms >= self.window.from_ms:
            return 0
        dropped = 0
        pattern = redis_keys.candle_window(self.ns, "*", "*")
        for key in self.redis.scan_iter(match=pattern, count=1000):
            dropped += int(self.redis.zremrangebyscore(key, "-inf", f"({self.window.from_ms}"))
        return dropped

    def tasks_pending(self) -> int:
        """Tasks of this run not done yet (candles, and trades when persisted)."""
        return int(self.redis.hlen(self.outbox.key))

    def wait_step(self) -> int:
        """One look at the run's outbox while waiting for its tasks; returns how many are left
        (and sends the overdue ones again, as the live stage does)."""
        if self.pending.refresh():
            self.last_progress = time.monotonic()
        self._redeliver_now_and_then()
        return self.tasks_pending()

    def progress(self) -> float:
        """0..1: per partition, the share of the range's time read (1 when done)."""
        if not self.partitions:
            return 1.0
        start = self.window.start_ms
        span = self.window.to_ms - start
        total = 0.0
        for partition in self.partitions:
            if partition in self.done and partition not in self._groups:
                total += 1.0
                continue
            pos = self.position.get(partition)
            if pos is not None:
                total += min(1.0, max(0.0, (pos - start) / span))
        return total / len(self.partitions)
