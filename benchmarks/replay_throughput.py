"""Replay throughput: trades/s from `market.trades` through candles, indicators and signals
into a replay's own namespace (Redis) and run id (PostgreSQL), beside a plain consumer reading
the same messages (the ceiling: Kafka alone, no work).

In one run, against one broker (the embedded Tansu, started here) and one topic filled once
with a BTCUSDT-like day (1.5M trades over 24 h by default, one symbol, so one partition of
three carries it all, as a real BTCUSDT day would):
  1. AlphaPlus: `workers.replay.job.Replay` (what `alphaplus replay --speed max` runs) over
     the whole day, with a real Celery worker process computing indicators, signals and
     patterns into Redis and a scratch PostgreSQL database. The clock runs from the start of
     `Replay.run` (offset lookup included) to its return, which waits until every Celery task
     of the run is done: the trades are in candles, indicators and signals everywhere.
     Checked each run: every trade replayed, the expected closed candles, one indicator row
     per candle in the database.
  2. The baseline: a confluent-kafka consumer with the stage's fetch settings reading the same
     messages from the earliest offset to EOF as the replay stage reads them (poll, then what
     is queued up to a replay batch), touching each message's value and timestamp.
The two alternate; each replay has a fresh run id. Reported: medians, every run, the ratio,
the reading-phase rate the replay reports in its status, and the ratio to real time.

    .venv/bin/python benchmarks/replay_throughput.py [--trades 1500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psycopg2
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import celeryconfig
from core import redis_keys
from core.db.scratch import scratch_database
from core.kafka import ensure_topics, producer_config, wait_for_broker
from core.models import TradeRecord
from core.replays import make_request
from core.settings import Settings
from core.timeframes import TIMEFRAME_MS
from infra.migrations import upgrade
from infra.stack.kafka import EmbeddedKafka
from infra.stack.redis import delete_keys
from workers.celery_app import make_app
from workers.replay.job import Replay
from workers.replay.stage import REPLAY_BATCH
from workers.stream.stage import consumer_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
T0 = 1_722_470_400_000  # 2024-08-01T00:00:00Z
DAY_MS = 86_400_000
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
TARGET_RATE = 200_000
DAY_TRADES = 1_500_000  # a BTCUSDT-like day


@dataclass
class Result:
    seconds: float
    rate: float
    reading_rate: float = 0.0


def generate(n: int, symbols: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes, int]], int]:
    """`n` trades of `symbols` symbols spread evenly over one day from T0 (a random walk);
    returns the messages and the number of candles that close by the day's end."""
    rng = random.Random(seed)
    encode = msgspec.json.Encoder().encode
    names = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"][:symbols]
    prices = {s: 60_000.0 / (i + 1) for i, s in enumerate(names)}
    ids = dict.fromkeys(names, 1_000_000)
    ranges: set[tuple[str, str, int]] = set()
    out = []
    for i in range(n):
        symbol = names[i % len(names)]
        ts = T0 + i * DAY_MS // n
        price = prices[symbol] = prices[symbol] * (1 + rng.gauss(0, 0.0002))
        ids[symbol] += 1
        trade = TradeRecord(1, "binance", "spot", symbol, ids[symbol], f"{price:.2f}",
                            f"{0.00001 + rng.expovariate(20):.5f}", ts, rng.random() < 0.5, ts + 3)
        out.append((symbol.encode(), encode(trade), ts))
        for tf in TIMEFRAMES:
            ranges.add((symbol, tf, ts - ts % TIMEFRAME_MS[tf]))
    # Every range ends by T0 + 1 day, the replay's end: all of them close.
    return out, len(ranges)


def fill(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, int]]) -> float:
    ensure_topics(bootstrap, [topic], 3)
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


def plain_read(settings: Settings, n: int) -> Result:
    """The ceiling: read every message to EOF the way the replay stage reads (poll, then
    take what is queued, up to a replay batch), touching value and timestamp."""
    consumer = Consumer({**consumer_config(settings, f"bench-read-{uuid.uuid4().hex[:8]}"),
                         "enable.partition.eof": True})
    topic = settings.topic_trades
    parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    pending, seen, size = set(parts), 0, 0
    while pending:
        first = consumer.poll(0.1)
        if first is None:
            continue
        for msg in [first, *consumer.consume(REPLAY_BATCH - 1, 0)]:
            err = msg.error()
            if err is None:
                seen += 1
                size += len(msg.value() or b"") + msg.timestamp()[1] % 2
            elif err.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition() or 0)
    seconds = time.perf_counter() - start
    gc.unfreeze()
    consumer.close()
    if seen != n:
        raise RuntimeError(f"plain read saw {seen} messages, expected {n}")
    return Result(seconds, n / seconds)


def replay_run(settings: Settings, n: int, candles: int) -> Result:
    run_id = f"bench-replay-{uuid.uuid4().hex[:8]}"
    request = make_request(run_id, T0, T0 + DAY_MS)
    gc.collect()
    gc.freeze()  # what `alphaplus replay` and the Celery task do before they start
    try:
        start = time.perf_counter()
        status = Replay(settings, make_app(settings), request, task_timeout_s=120).run()
        seconds = time.perf_counter() - start
        if status.state != "done" or status.trades != n or status.candles != candles:
            raise RuntimeError(f"replay wrong: {status.state} {status.error} trades "
                               f"{status.trades}/{n} candles {status.candles}/{candles}")
        with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM candles WHERE run_id = %(r)s),"
                        " (SELECT count(*) FROM indicators WHERE run_id = %(r)s)",
                        {"r": run_id})
            row = cur.fetchone()
        conn.close()
        if row != (candles, candles):
            raise RuntimeError(f"database holds {row}, expected {candles} candles and rows")
        return Result(seconds, n / seconds, status.rate)
    finally:
        gc.unfreeze()
        delete_keys(settings.redis_url, [redis_keys.namespace_pattern(run_id)])


def start_worker(settings: Settings, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    queues = ",".join(celeryconfig.queue_name(settings, k) for k in celeryconfig.KINDS)
    env = {**os.environ, **settings.as_env()}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
             "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-mingle",
             "--without-gossip"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=DAY_TRADES)
    parser.add_argument("--symbols", type=int, default=1, help="1 to 6 (default 1: BTCUSDT)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default=os.environ.get(
        "ALPHAPLUS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server; a scratch database is made on it and dropped")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting Tansu")
    args = parser.parse_args()

    messages, candles = generate(args.trades, args.symbols)
    print(f"{args.trades:,} trades of {args.symbols} symbol(s) over one day; "
          f"{candles:,} candles close ({', '.join(TIMEFRAMES)}); {args.repeats} runs each, "
          f"alternating; Celery worker concurrency {args.concurrency}", flush=True)
    broker = None if args.bootstrap else EmbeddedKafka().start()
    bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
    suffix = uuid.uuid4().hex[:8]
    queue_prefix = f"bench-replay-{suffix}"
    try:
        wait_for_broker(bootstrap, 20)
        with scratch_database(args.database_url, prefix="alphaplus_bench") as db_url:
            upgrade(db_url)
            settings = Settings.from_env(environ={}, env_file=None).replace(
                kafka_bootstrap=bootstrap, redis_url=args.redis_url, database_url=db_url,
                topic_trades=f"bench.trades.{suffix}", celery_queue_prefix=queue_prefix,
                stream_group=f"bench-replay-{suffix}", timeframes=TIMEFRAMES)
            rate = fill(bootstrap, settings.topic_trades, messages)
            del messages
            print(f"topic filled at {rate:,.0f} msg/s "
                  f"({'embedded Tansu' if broker else bootstrap})", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                worker = start_worker(settings, args.concurrency, Path(tmp) / "worker.log")
                try:
                    ours, plain = run_all(settings, args, candles)
                except BaseException:
                    print((Path(tmp) / "worker.log").read_text()[-3000:])
                    raise
                finally:
                    stop_worker(worker)
    finally:
        delete_keys(args.redis_url, redis_keys.celery_queue_patterns(queue_prefix))
        if broker is not None:
            broker.stop()
    report(ours, plain, args.trades)


def run_all(settings: Settings, args: argparse.Namespace, candles: int
            ) -> tuple[list[Result], list[Result]]:
    ours: list[Result] = []
    plain: list[Result] = []
    for i in range(args.repeats):
        for side in ("replay", "plain") if i % 2 == 0 else ("plain", "replay"):
            if side == "replay":
                ours.append(replay_run(settings, args.trades, candles))
            else:
                plain.append(plain_read(settings, args.trades))
        print(f"  run {i + 1}: replay {ours[-1].rate:>9,.0f} trades/s ({ours[-1].seconds:.2f} s;"
              f" reading {ours[-1].reading_rate:,.0f}/s)   plain read "
              f"{plain[-1].rate:>9,.0f} msg/s", flush=True)
    return ours, plain


def report(ours: list[Result], plain: list[Result], n: int) -> None:
    rate = statistics.median(r.rate for r in ours)
    seconds = statistics.median(r.seconds for r in ours)
    reading = statistics.median(r.reading_rate for r in ours)
    ceiling = statistics.median(r.rate for r in plain)
    print("\nthroughput (median, then every run):")
    print(f"  replay, start to every task done   {rate:>10,.0f} trades/s   "
          f"{[round(r.rate) for r in ours]}")
    print(f"  replay, reading phase (its status) {reading:>10,.0f} trades/s   "
          f"{[round(r.reading_rate) for r in ours]}")
    print(f"  plain consumer, same messages      {ceiling:>10,.0f} msg/s      "
          f"{[round(r.rate) for r in plain]}")
    print(f"  ratio replay / plain read: {rate / ceiling:.2f}")
    day = DAY_TRADES / rate
    print(f"  {n:,} trades (one day of trade time) in {seconds:.2f} s: "
          f"{DAY_MS / 1000 / seconds:,.0f}x real time; a {DAY_TRADES:,}-trade day takes "
          f"~{day:.1f} s")
    print(f"  target >= {TARGET_RATE:,} trades/s: {'MET' if rate >= TARGET_RATE else 'NOT MET'}")


if __name__ == "__main__":
    main()
