"""Stream stage latency: a trade produced into `market.trades` → its live candle update received
from Redis pub/sub (the kline channel the API fans out to WebSockets).

At a steady --rate (10,000 trades/s by default, 4 symbols taking turns) for --seconds, on the
embedded Tansu broker started here, with the real `StreamStage` (six timeframes, Redis, Celery
tasks through its outbox, queued with a prefix of this run; no worker runs, the tasks and
every other key of the run are deleted afterwards).

Processes, so that no two share a GIL: this one (the broker's owner and the load generator);
the stage (as `alphaplus stream` runs it); a Redis subscriber; in the floor phase, a plain
consumer instead of those two. The load generator notes the wall clock (`time.time_ns()`) of
each trade as it hands it to the producer: the trade's produce time (the trade's `ts` and its
Kafka message timestamp are the same clock, in ms). The producer lingers 5 ms (--linger-ms;
the ingest default is 20): its linger is inside every figure below.

Measured, per published update of a 1m candle (subscribed: every symbol's 1m channel; the stage
publishes a symbol's six timeframes in one pipeline, so the others arrive with it):
  * update freshness: receive time - produce time of the newest trade the update includes,
    for the updates received while the load runs. The update is a candle whose `trades`
    count is k: it includes exactly the first k trades of that symbol and minute (the
    generator sends each symbol's trades in time order), so the newest one is known exactly.
    Split at the moment the stage's consumer handed that trade to the stage (its consumer is
    wrapped to note the time of each batch): the Kafka part before (producer linger, broker,
    fetch), the stage part after (candles, Redis, pub/sub, the subscriber's wake-up).
  * tick-to-first-publish: per trade, receive time of the first update that includes it -
    its produce time. The live publisher throttles per symbol (leading and trailing edge):
    under steady load a symbol is published once per throttle interval with everything that
    arrived since, so a trade waits up to one interval for its publish. This view shows that
    wait; freshness shows how old the newest data is when it is shown.
  * the floor: receive time in a plain consumer (the stage's consumer settings, its own
    group, no stage running) - produce time, per trade: what Kafka (Tansu) alone costs.
Phases, each with a fresh topic and groups, one after the other: the floor; the stage with the
default throttle (100 ms); the stage unthrottled (0: every batch that changes a symbol
publishes it).

On Tansu the Kafka part is most of it: the broker answers a fetch only after about
`fetch.wait.max.ms` (10 ms in the stage's settings) even when data is there, and it falls
behind on very small produce requests (linger.ms 0-1 at 10k/s gives a p99 of seconds here).

    .venv/bin/python benchmarks/stream_latency.py [--rate 10000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, cast

import msgspec
import redis
from confluent_kafka import Consumer, Producer

from core import redis_keys
from core.candles import Candle
from core.kafka import ensure_topics, producer_config, wait_for_broker
from core.models import TradeRecord
from core.settings import Settings
from infra.stack.kafka import EmbeddedKafka
from infra.stack.redis import delete_keys
from workers.celery_app import make_app
from workers.stream import stage as stage_module
from workers.stream.stage import StageStats, StreamStage

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
START_PRICE = {"BTCUSDT": 61_000.0, "ETHUSDT": 2_600.0, "SOLUSDT": 150.0, "BNBUSDT": 520.0}
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
TARGET_P99_MS = 10.0


# -- the child processes --------------------------------------------------------------------
def _stop_when(mp_stop: MpEvent) -> threading.Event:
    local = threading.Event()

    def wait() -> None:
        mp_stop.wait()
        local.set()

    threading.Thread(target=wait, daemon=True).start()
    return local


def _consumer_config(settings: Settings, group: str, fetch_wait_ms: int | None
                     ) -> dict[str, object]:
    config = stage_module.consumer_config(settings, group)
    if fetch_wait_ms is not None:
        config["fetch.wait.max.ms"] = fetch_wait_ms
    return config


class _ReceiptClock:
    """Wraps the stage's consumer to note when it hands each batch to the stage. It keeps the
    values only (bytes, which the garbage collector does not track: keeping the messages
    would grow the heap every full collection walks, and lengthen the stage's GC pauses);
    they are decoded after the run."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.batches: list[tuple[int, list[bytes]]] = []

    def _note(self, msgs: list[Any]) -> None:
        self.batches.append((time.time_ns(),
                             [m.value() or b"" for m in msgs if m.error() is None]))

    def poll(self, timeout: float) -> Any:
        msg = self._inner.poll(timeout)
        if msg is not None:
            self._note([msg])
        return msg

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        msgs: list[Any] = self._inner.consume(num_messages, timeout)
        if msgs:
            self._note(msgs)
        return msgs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def received(self) -> list[tuple[str, int, int]]:
        """(symbol, trade id, when the stage got it) of every trade."""
        decode = msgspec.json.Decoder(TradeRecord).decode
        return [(t.symbol, t.trade_id, now) for now, values in self.batches
                for t in map(decode, values)]


def stage_main(settings: Settings, ns: str, fetch_wait_ms: int | None, stop: MpEvent,
               out: Connection) -> None:
    """The stream stage, as `alphaplus stream` runs it, its consumer wrapped to note when each
    trade reached it (with --fetch-wait-ms, the consumer's `fetch.wait.max.ms` replaced: an
    experiment, not the shipped setting)."""
    if fetch_wait_ms is not None:
        shipped = stage_module.consumer_config

        def tuned(settings: Settings, group: str) -> dict[str, object]:
            return {**shipped(settings, group), "fetch.wait.max.ms": fetch_wait_ms}

        stage_module.consumer_config = tuned
    stage = StreamStage(settings, make_app(settings), ns=ns)
    clock = _ReceiptClock(stage.consumer)
    stage.consumer = cast(Consumer, clock)
    stats = stage.run(_stop_when(stop))
    out.send((stats, stage.live.published, clock.received()))


def subscriber_main(url: str, channels: list[str], ready: MpEvent, stop: MpEvent,
                    out: Connection) -> None:
    """Note the wall clock of every message on `channels` as it arrives."""
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    pubsub.subscribe(*channels)
    confirmed = 0
    while confirmed < len(channels):
        msg = pubsub.get_message(timeout=5)
        if msg is not None and msg["type"] == "subscribe":
            confirmed += 1
    ready.set()
    got: list[tuple[int, bytes]] = []
    get = pubsub.get_message
    while not stop.is_set():
        msg = get(timeout=0.1)
        if msg is not None and msg["type"] == "message":
            got.append((time.time_ns(), msg["data"]))
    pubsub.close()
    client.close()
    out.send(got)


def floor_main(config: dict[str, Any], topic: str, ready: MpEvent, stop: MpEvent,
               out: Connection) -> None:
    """A plain consumer, read like the stage reads (poll for the first message, then take
    what is queued without waiting): when each trade reaches an application."""
    consumer = Consumer(config)
    consumer.subscribe([topic])
    got: list[tuple[int, bytes]] = []
    while not stop.is_set():
        first = consumer.poll(0.1)
        if first is None:
            continue
        now = time.time_ns()
        batch = [first, *consumer.consume(9_999, 0)]
        for msg in batch:
            if msg.error() is None:
                got.append((now, msg.value() or b""))
        ready.set()
    consumer.close()
    decode = msgspec.json.Decoder(TradeRecord).decode
    out.send([(now, t.symbol, t.trade_id) for now, raw in got for t in [decode(raw)]])


# -- the load ---------------------------------------------------------------------------------
class Load:
    """Trades at a steady rate, their produce times noted by symbol and minute (for updates)
    and by trade id (for the floor)."""

    def __init__(self, bootstrap: str, topic: str, linger_ms: float, seed: int = 11) -> None:
        config = producer_config(bootstrap)
        config["linger.ms"] = linger_ms
        self.producer = Producer(config)
        self.topic = topic
        self.rng = random.Random(seed)
        self.prices = dict(START_PRICE)
        self.ids = dict.fromkeys(SYMBOLS, 1_000_000)
        self.keys = {s: s.encode() for s in SYMBOLS}
        self.encode = msgspec.json.Encoder().encode
        self.by_minute: dict[tuple[str, int], list[int]] = defaultdict(list)
        self.first_id: dict[tuple[str, int], int] = {}  # trade id of each minute's first
        self.by_id: dict[tuple[str, int], int] = {}
        self.sent = 0

    def trade(self, symbol: str) -> None:
        rng = self.rng
        price = self.prices[symbol] = self.prices[symbol] * (1 + rng.gauss(0, 0.0002))
        self.ids[symbol] += 1
        trade_id = self.ids[symbol]
        now = time.time_ns()
        ts = now // 1_000_000
        value = self.encode(TradeRecord(1, "binance", "spot", symbol, trade_id, f"{price:.2f}",
                                        f"{0.00001 + rng.expovariate(20):.5f}", ts,
                                        rng.random() < 0.5, ts))
        while True:
            try:
                self.producer.produce(self.topic, value, self.keys[symbol], timestamp=ts)
                break
            except BufferError:
                self.producer.poll(0.01)
        minute = (symbol, ts - ts % 60_000)
        self.by_minute[minute].append(now)
        self.first_id.setdefault(minute, trade_id)
        self.by_id[symbol, trade_id] = now
        self.sent += 1
        if self.sent % 1000 == 0:
            self.producer.poll(0)

    def steady(self, rate: float, seconds: float) -> tuple[int, int]:
        """`rate` trades/s for `seconds`, symbols taking turns; returns (first, last) produce
        time in ns."""
        start = time.perf_counter()
        first = time.time_ns()
        total = int(rate * seconds)
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                self.trade(SYMBOLS[i % len(SYMBOLS)])
                i += 1
            time.sleep(0.001)
        return first, time.time_ns()

    def close(self) -> None:
        if self.producer.flush(30):
            raise RuntimeError("trades not all acknowledged")


# -- one phase ---------------------------------------------------------------------------------
@dataclass
class Phase:
    """One measured run: the floor consumer alone, or the stage with one throttle setting."""

    name: str
    achieved_rate: float
    broker_cpu: float | None  # share of one core the broker used (the embedded one only)
    floor: list[float] = field(default_factory=list)  # ms, per trade
    fresh: list[float] = field(default_factory=list)  # ms, per 1m update received
    fresh_kafka: list[float] = field(default_factory=list)  # its newest trade: produce -> stage
    fresh_stage: list[float] = field(default_factory=list)  # stage has it -> update received
    first: list[float] = field(default_factory=list)  # ms, per trade
    unpublished: int = 0
    throttle_ms: int | None = None
    stats: StageStats | None = None
    published: int = 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(base: Settings, broker_pid: int | None, throttle_ms: int | None, rate: float,
              seconds: float, linger_ms: float, fetch_wait_ms: int | None) -> Phase:
    """throttle_ms None: the floor consumer alone; else the stage, its updates subscribed."""
    run = uuid.uuid4().hex[:10]
    ns = f"bench-latency-{run}"
    topic = f"bench.latency.{run}"
    settings = base.replace(
        topic_trades=topic, topic_candles=f"{topic}.candles", topic_deadletter=f"{topic}.dl",
        stream_group=f"bench-latency-{run}", celery_queue_prefix=ns, timeframes=TIMEFRAMES,
        live_throttle_ms=throttle_ms or 0)
    ensure_topics(settings.kafka_bootstrap, [topic, settings.topic_candles,
                                             settings.topic_deadletter], 3)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    ready = ctx.Event()
    rx, tx = ctx.Pipe(duplex=False)
    stage_rx, stage_tx = ctx.Pipe(duplex=False)
    latest = [redis_keys.candle(ns, s, "1m") for s in SYMBOLS]
    if throttle_ms is None:
        procs = [ctx.Process(target=floor_main, name="floor", args=(
            _consumer_config(settings, f"bench-floor-{run}", fetch_wait_ms), topic, ready, stop,
            tx))]
    else:
        channels = [redis_keys.channel(ns, "kline", s, "1m") for s in SYMBOLS]
        procs = [
            ctx.Process(target=stage_main, name="stage",
                        args=(settings, ns, fetch_wait_ms, stop, stage_tx)),
            ctx.Process(target=subscriber_main, name="subscriber",
                        args=(settings.redis_url, channels, ready, stop, tx)),
        ]
    load = Load(settings.kafka_bootstrap, topic, linger_ms)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for p in procs:
            p.start()
        # Warm-up, outside the measurement: a trade per symbol every 50 ms until the consumer
        # (its group joined, partitions assigned) has its first message, or the stage has
        # published every symbol; then one more second of quiet.
        deadline = time.monotonic() + 60
        while not (ready.is_set() and (throttle_ms is None
                                       or client.exists(*latest) == len(latest))):
            if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                raise RuntimeError(f"{[p.name for p in procs]} did not start")
            for s in SYMBOLS:
                load.trade(s)
            load.producer.poll(0.05)
        time.sleep(1.0)
        cpu = _cpu_seconds(broker_pid) if broker_pid else 0.0
        first, last = load.steady(rate, seconds)
        broker_cpu = ((_cpu_seconds(broker_pid) - cpu) / ((last - first) / 1e9)
                      if broker_pid else None)
        load.close()
        time.sleep(max(1.0, 3 * (throttle_ms or 0) / 1000))  # the trailing edge, a margin
        stop.set()
        received = _recv(rx)
        if throttle_ms is not None:
            stats, published, stage_got = _recv(stage_rx)
        for p in procs:
            p.join(30)
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        client.close()
        delete_keys(settings.redis_url, [redis_keys.namespace_pattern(ns),
                                         *redis_keys.celery_queue_patterns(ns)])

    achieved = int(rate * seconds) / ((last - first) / 1e9)
    if throttle_ms is None:
        floor = [(now - load.by_id[s, tid]) / 1e6 for now, s, tid in received
                 if first <= load.by_id[s, tid] <= last]
        return Phase("floor", achieved, broker_cpu, floor=floor)
    got_at = {(s, tid): now for s, tid, now in stage_got}
    fresh, in_kafka, in_stage = _freshness(load, got_at, received, first, last)
    first_pub, unpublished = _first_publish(load.by_minute, received, first, last)
    return Phase("stage", achieved, broker_cpu, fresh=fresh, fresh_kafka=in_kafka,
                 fresh_stage=in_stage, first=first_pub, unpublished=unpublished,
                 throttle_ms=throttle_ms, stats=stats, published=published)


def _recv(conn: Connection, timeout: float = 60.0) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError("a child process sent no result")
    return conn.recv()


def _freshness(load: Load, got_at: dict[tuple[str, int], int],
               updates: list[tuple[int, bytes]], first: int, last: int
               ) -> tuple[list[float], list[float], list[float]]:
    """Per update: produce of its newest trade -> received; split at the moment the stage's
    consumer handed that trade over (Kafka before, the stage and Redis after)."""
    decode = msgspec.json.Decoder(Candle).decode
    fresh: list[float] = []
    in_kafka: list[float] = []
    in_stage: list[float] = []
    for received, raw in updates:
        candle = decode(raw)
        key = (candle.symbol, candle.open_time)
        newest = load.by_minute[key][candle.trades - 1]
        # Steady state only: the updates received while the load runs (after it, the trailing
        # edge publishes each symbol's last trades up to one throttle interval late, with no
        # newer trade to show: the end of the load, not the stage).
        if first <= newest and received <= last:
            got = got_at[candle.symbol, load.first_id[key] + candle.trades - 1]
            fresh.append((received - newest) / 1e6)
            in_kafka.append((got - newest) / 1e6)
            in_stage.append((received - got) / 1e6)
    return fresh, in_kafka, in_stage


def _first_publish(by_minute: dict[tuple[str, int], list[int]],
                   updates: list[tuple[int, bytes]], first: int, last: int
                   ) -> tuple[list[float], int]:
    """Per trade: produce -> the first update received that includes it."""
    decode = msgspec.json.Decoder(Candle).decode
    per_range: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for received, raw in updates:
        candle = decode(raw)
        per_range[candle.symbol, candle.open_time].append((received, candle.trades))
    first_pub: list[float] = []
    unpublished = 0
    for key, produced in by_minute.items():
        covered = 0
        for received, count in per_range.get(key, []):
            for t in produced[covered:count]:
                if first <= t <= last:
                    first_pub.append((received - t) / 1e6)
            covered = max(covered, count)
        unpublished += sum(1 for t in produced[covered:] if first <= t <= last)
    return first_pub, unpublished


# -- report -------------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def line(title: str, values: list[float], unit: str) -> str:
    if not values:
        return f"    {title:64s} (none)"
    return (f"    {title:64s} p50 {pct(values, 50):7.2f} ms   p99 {pct(values, 99):7.2f} ms   "
            f"max {max(values):7.2f} ms   ({len(values):,} {unit})")


def report(phase: Phase) -> None:
    print(f"\n  {phase.name if phase.throttle_ms is None else 'stage'}"
          + ("" if phase.throttle_ms is None else
             f", live throttle {phase.throttle_ms} ms"
             + (" (the default)" if phase.throttle_ms == 100 else
                " (unthrottled: every batch that changes a symbol publishes it)"
                if phase.throttle_ms == 0 else ""))
          + f"; load {phase.achieved_rate:,.0f} trades/s"
          + ("" if phase.broker_cpu is None else
             f"; broker CPU {phase.broker_cpu:.0%} of a core"))
    if phase.throttle_ms is None:
        print(line("produce → a plain consumer (the stage's settings) has it", phase.floor,
                   "trades"))
        return
    assert phase.stats is not None
    print(f"    stage: {phase.stats.trades:,} trades in {phase.stats.batches:,} batches, "
          f"{phase.published:,} candle updates published (all timeframes)")
    print(line("update freshness: received - produce of newest trade in it", phase.fresh,
               "1m updates"))
    print(line("  its Kafka part: the stage's consumer has that trade - produce",
               phase.fresh_kafka, "1m updates"))
    print(line("  its stage part: received - the stage's consumer had it", phase.fresh_stage,
               "1m updates"))
    print(line("tick-to-first-publish: received - produce, per trade", phase.first,
               "trades"))
    if phase.unpublished:
        print(f"    {phase.unpublished:,} trades were in no update received (should be none)")
    checks = [("update freshness", phase.fresh), ("its stage part", phase.fresh_stage)]
    if phase.throttle_ms == 0:
        checks.append(("tick-to-first-publish", phase.first))
    print(f"    target p99 < {TARGET_P99_MS:g} ms: " + "; ".join(
        f"{name} {'MET' if values and pct(values, 99) < TARGET_P99_MS else 'NOT MET'}"
        for name, values in checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--throttles", default="100,0",
                        help="live throttle settings to run, ms, comma-separated")
    parser.add_argument("--linger-ms", type=float, default=5.0,
                        help="the load generator's linger.ms (Tansu: see the module doc)")
    parser.add_argument("--fetch-wait-ms", type=int, default=None,
                        help="experiment: override the stage's (and floor's) fetch.wait.max.ms")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting Tansu")
    args = parser.parse_args()
    throttles = [int(t) for t in args.throttles.split(",")]

    fetch_wait = (args.fetch_wait_ms if args.fetch_wait_ms is not None
                  else stage_module.consumer_config(Settings(), "x")["fetch.wait.max.ms"])
    print(f"{args.rate:,.0f} trades/s for {args.seconds:g} s per phase, {len(SYMBOLS)} symbols "
          f"taking turns; producer linger.ms={args.linger_ms:g}, consumer fetch.wait.max.ms="
          f"{fetch_wait}; {'a Kafka at ' + args.bootstrap if args.bootstrap else 'embedded Tansu'}"
          f"; the stage and the Redis subscriber (or the floor consumer) each in a process of "
          f"their own")
    broker = None if args.bootstrap else EmbeddedKafka().start()
    bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
    try:
        wait_for_broker(bootstrap, 20)
        base = Settings().replace(kafka_bootstrap=bootstrap, redis_url=args.redis_url)
        phases = [run_phase(base, broker.pid if broker else None, t, args.rate, args.seconds,
                            args.linger_ms, args.fetch_wait_ms) for t in [None, *throttles]]
    finally:
        if broker is not None:
            broker.stop()
    for phase in phases:
        report(phase)


if __name__ == "__main__":
    main()
