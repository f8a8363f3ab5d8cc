"""Producer throughput: recorded Binance frames → validated, normalised trades in Kafka.

Measures, in one run against the same broker (the embedded Tansu unless
ALPHAPLUS_KAFKA_BOOTSTRAP is given with --use-configured):
  1. parse-and-validate cost per trade frame (FrameParser), beside stdlib json and orjson
     decoding of the same frames;
  2. AlphaPlus ingest throughput: frame → validate → dedup/continuity → encode → produce, with
     delivery confirmed (flush) before the clock stops;
  3. the baseline: raw confluent-kafka produce of the already-encoded messages of run 2, same
     producer settings, same broker, flushed likewise.
Each is repeated; medians are reported, and the ratio of the medians.

    .venv/bin/python benchmarks/producer_throughput.py [--repeats 5] [--copies 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Producer

from core.kafka import ensure_topics, producer_config, wait_for_broker
from core.serde import encode
from infra.stack.kafka import EmbeddedKafka
from producers.frames import FrameParser
from producers.ingest import Ingestor
from producers.sink import KafkaSink
from producers.sources.recording import read_lines

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "binance" / "hftbacktest"
RECORDINGS = {
    "spot": ["spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz",
             "spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"],
}
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def load_trade_frames(copies: int) -> list[tuple[bytes, int]]:
    """The recordings' trade frames (with receive ms), `copies` times with shifted trade ids,
    so every copy is new to the continuity tracker and all of them reach Kafka."""
    base: list[tuple[dict[str, object], int]] = []
    for rel in RECORDINGS["spot"]:
        for recv_ns, frame in read_lines(FIXTURES / rel):
            if recv_ns is not None and b"@trade" in frame[:40]:
                base.append((orjson.loads(frame), recv_ns // 1_000_000))
    base.sort(key=lambda item: item[1])
    ids: dict[str, list[int]] = {}
    for obj, _ in base:
        data = obj["data"]
        assert isinstance(data, dict)
        ids.setdefault(data["s"], []).append(data["t"])
    # Copy k continues each symbol's ids where copy k-1 ended: no gap, no duplicate.
    span = {s: max(v) - min(v) + 1 for s, v in ids.items()}
    out: list[tuple[bytes, int]] = []
    for copy in range(copies):
        for obj, recv in base:
            data = dict(obj["data"])  # type: ignore[call-overload]
            data["t"] = data["t"] + copy * span[data["s"]]
            out.append((orjson.dumps({"stream": obj["stream"], "data": data}), recv))
    return out


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def parse_cost(frames: list[tuple[bytes, int]], repeats: int) -> dict[str, float]:
    parser = FrameParser("spot", SYMBOLS)
    n = len(frames)

    def timed(fn: Callable[[bytes, int], object]) -> float:
        start = time.perf_counter()
        for raw, recv in frames:
            fn(raw, recv)
        return (time.perf_counter() - start) / n * 1e6

    return {
        "alphaplus parse+validate": median_of(repeats, lambda: timed(parser.parse_record))[0],
        "orjson.loads only": median_of(repeats, lambda: timed(lambda r, _: orjson.loads(r)))[0],
        "json.loads only": median_of(repeats, lambda: timed(lambda r, _: json.loads(r)))[0],
    }


Rates = tuple[float, float]  # (trades per wall-clock second, per CPU-second of the thread)


def ingest_run(bootstrap: str, frames: list[tuple[bytes, int]], compression: str) -> Rates:
    topic = f"bench.trades.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic, topic + ".dl", topic + ".gaps"], 3)
    sink = KafkaSink(bootstrap, topic, topic + ".dl", topic + ".gaps", compression=compression)
    # Warm-up outside the clock: the idempotent producer's id handshake (~0.5 s on Tansu).
    sink.gap({"v": 1, "exchange": "binance", "market": "spot", "symbol": "WARMUP",
              "first_missing": 0, "last_missing": 0, "missing": 1, "detected_ts": 1,
              "source": "bench"})
    sink.flush()
    ingest = Ingestor(sink, "spot", SYMBOLS, "bench")
    frame = ingest.frame
    start, cpu = time.perf_counter(), time.thread_time()
    for raw, recv in frames:
        frame(raw, recv)
    ingest.close()  # flush: every message acknowledged by the broker
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    assert ingest.stats.trades == len(frames), ingest.stats
    return len(frames) / elapsed, len(frames) / cpu


def raw_run(bootstrap: str, messages: list[tuple[bytes, bytes, int]], compression: str) -> Rates:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], 3)
    producer = Producer(producer_config(bootstrap, compression))
    producer.produce(topic, b"warm-up")  # same warm-up as ingest_run, outside the clock
    producer.flush(30)
    produce = producer.produce
    start, cpu = time.perf_counter(), time.thread_time()
    for n, (key, value, ts) in enumerate(messages):
        while True:
            try:
                produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    assert remaining == 0
    return len(messages) / elapsed, len(messages) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=4,
                        help="copies of the recordings' trades per run (each ~32k trades)")
    parser.add_argument("--compression", default="lz4")
    parser.add_argument("--bootstrap", help="use this broker instead of starting Tansu")
    args = parser.parse_args()

    frames = load_trade_frames(args.copies)
    print(f"{len(frames):,} trade frames per run ({args.copies} copies of the recordings), "
          f"{args.repeats} runs each, compression {args.compression}")

    costs = parse_cost(frames, args.repeats)
    print("\nparse-and-validate cost per trade frame (median µs):")
    for name, value in costs.items():
        print(f"  {name:28s} {value:6.2f} µs")

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedKafka().start()
        bootstrap = broker.bootstrap
    try:
        wait_for_broker(bootstrap, 20)
        parser_ = FrameParser("spot", SYMBOLS)
        messages = []
        for raw, recv in frames:
            trade = parser_.parse(raw, recv)
            assert trade is not None
            messages.append((trade["symbol"].encode(), encode(trade), trade["ts"]))
        # Alternate the two so machine noise hits both alike.
        ingest_rates: list[Rates] = []
        raw_rates: list[Rates] = []
        for i in range(args.repeats):
            if i % 2:
                raw_rates.append(raw_run(bootstrap, messages, args.compression))
                ingest_rates.append(ingest_run(bootstrap, frames, args.compression))
            else:
                ingest_rates.append(ingest_run(bootstrap, frames, args.compression))
                raw_rates.append(raw_run(bootstrap, messages, args.compression))
            threading.Event().wait(0.5)
    finally:
        if broker is not None:
            broker.stop()

    print("\nthroughput into Kafka, delivery confirmed (trades/s; median, then every run):")
    report("wall clock", [r[0] for r in ingest_rates], [r[0] for r in raw_rates])
    report("per CPU-second of the producing thread (one core)",
           [r[1] for r in ingest_rates], [r[1] for r in raw_rates])


def report(title: str, ingest: list[float], raw: list[float]) -> None:
    ingest_med, raw_med = statistics.median(ingest), statistics.median(raw)
    ratio = ingest_med / raw_med
    verdict = "MET" if ingest_med >= 150_000 and ratio >= 0.6 else "NOT MET"
    print(f"  {title}:")
    print(f"    alphaplus ingest (validate+normalise+produce) {ingest_med:>10,.0f}   "
          f"{[round(r) for r in ingest]}")
    print(f"    raw confluent-kafka produce, same messages    {raw_med:>10,.0f}   "
          f"{[round(r) for r in raw]}")
    print(f"    ratio {ratio:.2f}; target >= 150,000 trades/s and ratio >= 0.6: {verdict}")


if __name__ == "__main__":
    main()
