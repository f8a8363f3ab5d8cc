"""Stream stage throughput: trades in `market.trades` → candles for every timeframe, beside
quixstreams computing a 1m OHLCV tumbling window over the same messages.

In one run, against one broker (the embedded Tansu, started here) and one topic filled once:
  1. AlphaPlus: the real `StreamStage` (one process, its main thread) with the six default
     timeframes (1m, 5m, 15m, 1h, 4h, 1d), live candles throttled into Redis (SET + PUBLISH),
     closed candles into Redis windows, `market.candles` and Celery tasks, trade batches into
     Celery persistence tasks, and a checkpoint in Redis plus an offset commit per batch. The
     Celery app is `workers.celery_app.make_app` on Redis with a queue prefix of this run;
     no worker runs, and the queued tasks are deleted afterwards.
  2. The baseline: benchmarks/quix_baseline.py in its own venv (benchmarks/.venv-quix, made
     once with pip; quixstreams pins an older confluent-kafka than ours), a tumbling 1m window
     with a reducer (open, high, low, close, volume, quote volume, trades, taker buy volume and
     quote), closed windows produced to a topic, quixstreams' default state (RocksDB with a
     changelog topic) and commits.
Each repeat gives each side a fresh consumer group (and namespace, queues, state folder), the
two alternate, and the medians are compared. The clock of either side runs from the first
message handed to the application to the last one processed: for AlphaPlus, from the first
message `poll` returns to the end of the batch that holds the N-th trade (its live publish,
hand-off, flush and checkpoint included); for quixstreams, from the first to the N-th call of
the window's initializer/reducer (one per message). Group joins and shutdown are outside both.

    .venv/bin/python benchmarks/stream_throughput.py [--trades 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.cimpl import NewTopic  # admin re-exports it without declaring it

from core import redis_keys
from core.kafka import admin, ensure_topics, producer_config, wait_for_broker
from core.models import TradeRecord
from core.settings import Settings
from core.timeframes import TIMEFRAME_MS
from infra.stack.kafka import EmbeddedKafka
from infra.stack.redis import delete_keys
from workers.celery_app import make_app
from workers.stream.stage import StreamStage

HERE = Path(__file__).resolve().parent
QUIX_VENV = HERE / ".venv-quix"
QUIX_REQUIREMENT = "quixstreams==3.28.1"
QUIX_SCRIPT = HERE / "quix_baseline.py"

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
START_PRICE = {"BTCUSDT": 61_000.0, "ETHUSDT": 2_600.0, "SOLUSDT": 150.0, "BNBUSDT": 520.0}
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
T0 = 1_722_470_400_000  # 2024-08-01T00:00:00Z: history, so only trades close candles
TARGET_RATE = 100_000
TARGET_RATIO = 3.0

Message = tuple[bytes, bytes, int]  # key, value, timestamp (ms)


@dataclass
class Expected:
    """What the generated trades must give: closed candles per timeframe (each symbol's last
    range of each timeframe stays open: history is closed by its own trades only), and the
    trades inside the closed 1m candles."""

    closed: dict[str, int]
    closed_1m_trades: int


def generate(n: int, hours: float, seed: int = 7) -> tuple[list[Message], Expected]:
    """`n` trades in the market.trades contract, the symbols taking turns, their times spread
    evenly over `hours` from T0 (so every symbol is in the same last minute)."""
    rng = random.Random(seed)
    encode = msgspec.json.Encoder().encode
    span = int(hours * 3_600_000)
    prices = dict(START_PRICE)
    ids = dict.fromkeys(SYMBOLS, 1_000_000)
    keys = {s: s.encode() for s in SYMBOLS}
    ranges: dict[tuple[str, str], set[int]] = {(s, tf): set() for s in SYMBOLS
                                               for tf in TIMEFRAMES}
    per_minute: dict[tuple[str, int], int] = {}
    out: list[Message] = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        ts = T0 + i * span // n
        price = prices[symbol] = prices[symbol] * (1 + rng.gauss(0, 0.0002))
        ids[symbol] += 1
        trade = TradeRecord(1, "binance", "spot", symbol, ids[symbol], f"{price:.2f}",
                            f"{0.00001 + rng.expovariate(20):.5f}", ts, rng.random() < 0.5, ts + 3)
        out.append((keys[symbol], encode(trade), ts))
        for tf in TIMEFRAMES:
            ranges[symbol, tf].add(ts - ts % TIMEFRAME_MS[tf])
        minute = ts - ts % 60_000
        per_minute[symbol, minute] = per_minute.get((symbol, minute), 0) + 1
    closed = {tf: sum(len(ranges[s, tf]) - 1 for s in SYMBOLS) for tf in TIMEFRAMES}
    last_minute = {s: max(ranges[s, "1m"]) for s in SYMBOLS}
    open_trades = sum(per_minute[s, m] for s, m in last_minute.items())
    return out, Expected(closed, n - open_trades)


def fill(bootstrap: str, topic: str, messages: list[Message], partitions: int) -> float:
    """Produce the messages (message timestamp = trade time); returns the rate.

    The topic is created with its retention set explicitly: Tansu reports a topic's configs
    only when they were given, and quixstreams reads `retention.ms` of its input topic to
    configure its changelog topic (it fails on a topic without it)."""
    client = admin(bootstrap)  # kept referenced until the futures resolve
    futures = client.create_topics([NewTopic(
        topic, num_partitions=partitions, replication_factor=1,
        config={"retention.ms": "-1", "retention.bytes": "-1"})], operation_timeout=10)
    for future in futures.values():
        future.result()
    ensure_topics(bootstrap, [topic], partitions)  # waits until its metadata is visible
    producer = Producer(producer_config(bootstrap))
    start = time.perf_counter()
    for n, (key, value, ts) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("trades not all acknowledged")
    return len(messages) / (time.perf_counter() - start)


# -- AlphaPlus --------------------------------------------------------------------------------
class _FirstMessageClock:
    """Wraps the stage's consumer to note when `poll` first hands over a message."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.at: float | None = None
        self.cpu_at = 0.0

    def poll(self, timeout: float) -> Any:
        msg = self._inner.poll(timeout)
        if self.at is None and msg is not None and msg.error() is None:
            self.at = time.perf_counter()
            self.cpu_at = time.process_time()
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedStage(StreamStage):
    """The real stage; stops itself at the end of the batch that holds the N-th trade."""

    def __init__(self, settings: Settings, ns: str, target: int) -> None:
        super().__init__(settings, make_app(settings), ns=ns)
        self.clock = _FirstMessageClock(self.consumer)
        self.consumer = cast(Consumer, self.clock)
        self.target = target
        self.stop = threading.Event()
        self.done_at = 0.0
        self.cpu_done = 0.0

    def step(self, timeout: float = 0.1) -> int:
        handled = super().step(timeout)
        if self.stats.trades >= self.target and not self.stop.is_set():
            self.done_at = time.perf_counter()
            self.cpu_done = time.process_time()
            self.stop.set()
        return handled


@dataclass
class Result:
    rate: float  # trades per wall-clock second
    cpu_rate: float  # trades per CPU-second of the process (all its threads)


def alphaplus_run(base: Settings, topic: str, n: int, expected: Expected,
                  timeout: float) -> Result:
    run = uuid.uuid4().hex[:10]
    ns = f"bench-stream-{run}"
    settings = base.replace(
        topic_trades=topic, topic_candles=f"{topic}.candles.{run}",
        topic_deadletter=f"{topic}.deadletter.{run}", stream_group=f"bench-stream-{run}",
        celery_queue_prefix=ns, timeframes=TIMEFRAMES)
    ensure_topics(settings.kafka_bootstrap, [settings.topic_candles,
                                             settings.topic_deadletter], 3)
    stage = TimedStage(settings, ns, n)
    watchdog = threading.Timer(timeout, stage.stop.set)
    watchdog.start()
    try:
        stage.run(stage.stop)
        stats = stage.stats
        if stats.trades != n or stats.rejected or stats.late or stats.duplicates:
            raise RuntimeError(f"AlphaPlus run incomplete or wrong: {stats}")
        want = sum(expected.closed.values())
        if stats.candles_closed != want:
            raise RuntimeError(f"AlphaPlus closed {stats.candles_closed} candles, "
                               f"expected {want}")
        queued = _queued_tasks(settings)
        if queued < stats.batches:
            raise RuntimeError(f"only {queued} Celery tasks queued for {stats.batches} batches")
        assert stage.clock.at is not None
        seconds = stage.done_at - stage.clock.at
        return Result(n / seconds, n / (stage.cpu_done - stage.clock.cpu_at))
    finally:
        watchdog.cancel()
        delete_keys(settings.redis_url, [redis_keys.namespace_pattern(ns),
                                         *redis_keys.celery_queue_patterns(ns)])


def _queued_tasks(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return sum(int(client.llen(f"{settings.celery_queue_prefix}.{kind}"))
                   for kind in ("indicators", "persist", "jobs"))
    finally:
        client.close()


# -- quixstreams --------------------------------------------------------------------------------
def quix_python() -> Path:
    """The baseline's venv: made once, remade when the pinned requirement changes."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".requirement"
    if python.exists() and stamp.exists() and stamp.read_text() == QUIX_REQUIREMENT:
        return python
    print(f"making {QUIX_VENV} with {QUIX_REQUIREMENT} (once)...", flush=True)
    shutil.rmtree(QUIX_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT],
                   check=True)
    stamp.write_text(QUIX_REQUIREMENT)
    return python


def quix_run(python: Path, bootstrap: str, topic: str, n: int, expected: Expected,
             timeout: float) -> Result:
    run = uuid.uuid4().hex[:10]
    state = tempfile.mkdtemp(prefix="bench-quix-")
    argv = [str(python), str(QUIX_SCRIPT), "--bootstrap", bootstrap, "--topic", topic,
            "--output-topic", f"{topic}.quix.{run}", "--group", f"bench-quix-{run}",
            "--state-dir", state, "--count", str(n)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"quix baseline failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["messages"] != n or out["windows"] != expected.closed["1m"] \
            or out["window_trades"] != expected.closed_1m_trades:
        raise RuntimeError(f"quix baseline result wrong: {out}, expected "
                           f"{expected.closed['1m']} windows holding "
                           f"{expected.closed_1m_trades} trades")
    return Result(float(out["rate"]), n / float(out["cpu_seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=26.0,
                        help="the trades' times span this many hours (26: every timeframe, "
                             "1d included, closes at least once)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting Tansu")
    args = parser.parse_args()

    python = quix_python()
    messages, expected = generate(args.trades, args.hours)
    per_minute = args.trades / len(SYMBOLS) / (args.hours * 60)
    print(f"{args.trades:,} trades, {len(SYMBOLS)} symbols taking turns, over {args.hours:g} h "
          f"(~{per_minute:,.0f} trades per symbol-minute); topic of {args.partitions} "
          f"partitions; {args.repeats} runs each, alternating")
    print("closed candles expected per run: "
          + ", ".join(f"{tf} {c:,}" for tf, c in expected.closed.items()))

    broker = None if args.bootstrap else EmbeddedKafka().start()
    bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
    try:
        wait_for_broker(bootstrap, 20)
        topic = f"bench.trades.{uuid.uuid4().hex[:8]}"
        rate = fill(bootstrap, topic, messages, args.partitions)
        print(f"topic filled at {rate:,.0f} msg/s "
              f"({'embedded Tansu' if broker else bootstrap})", flush=True)
        del messages
        base = Settings().replace(kafka_bootstrap=bootstrap, redis_url=args.redis_url)
        ours: list[Result] = []
        quix: list[Result] = []
        for i in range(args.repeats):
            for side in ("alphaplus", "quix") if i % 2 == 0 else ("quix", "alphaplus"):
                if side == "alphaplus":
                    ours.append(alphaplus_run(base, topic, args.trades, expected, args.timeout))
                else:
                    quix.append(quix_run(python, bootstrap, topic, args.trades, expected,
                                         args.timeout))
            print(f"  run {i + 1}: alphaplus {ours[-1].rate:>9,.0f}/s   "
                  f"quixstreams {quix[-1].rate:>8,.0f}/s", flush=True)
    finally:
        if broker is not None:
            broker.stop()

    report(ours, quix)


def report(ours: list[Result], quix: list[Result]) -> None:
    ours_med = statistics.median(r.rate for r in ours)
    quix_med = statistics.median(r.rate for r in quix)
    ratio = ours_med / quix_med
    print("\nthroughput, first message to last processed (trades/s; median, then every run):")
    print(f"  alphaplus stream stage, 6 timeframes + Redis + Celery {ours_med:>10,.0f}   "
          f"{[round(r.rate) for r in ours]}")
    print(f"  quixstreams, 1m tumbling window (reduce)              {quix_med:>10,.0f}   "
          f"{[round(r.rate) for r in quix]}")
    print(f"  ratio {ratio:.2f}")
    print(f"  per CPU-second of the process: alphaplus "
          f"{statistics.median(r.cpu_rate for r in ours):,.0f}, quixstreams process "
          f"{statistics.median(r.cpu_rate for r in quix):,.0f}")
    rate_ok = "MET" if ours_med >= TARGET_RATE else "NOT MET"
    ratio_ok = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    print(f"  target >= {TARGET_RATE:,} trades/s: {rate_ok}; "
          f"target ratio >= {TARGET_RATIO:g}: {ratio_ok}")


if __name__ == "__main__":
    main()
