# mypy: ignore-errors
# (This file runs in benchmarks/.venv-quix, where quixstreams is installed; the project's venv
# has no quixstreams, because quixstreams pins an older confluent-kafka than ours.)
"""The quixstreams baseline of benchmarks/stream_throughput.py: a 1m OHLCV tumbling window over
the same `market.trades` messages, on the same broker.

Run by stream_throughput.py inside benchmarks/.venv-quix, once per repeat, with a fresh
consumer group and state folder each time. It prints one JSON line on stdout:
{"rate", "seconds", "messages", "windows", "window_trades", "cpu_seconds"}.

The pipeline is quixstreams' own idiom for candles: JSON values, the message timestamp (= the
trade time, by our contract) as event time, per-key (symbol) windows, a `reduce` with an
initializer building open/high/low/close, volume, quote volume, trade count and taker-buy
volume and quote volume (the fields of our 1m candle), `.final()` emitting each window when it
closes, and the closed candles produced to an output topic. State: quixstreams' defaults
(RocksDB with changelog topics, at-least-once, commit every 5 s).

The end: every message passes through the window's initializer or reducer exactly once (a
tumbling window has one window per message), so the N-th such call is the N-th message
aggregated. The clock runs from the first call to the N-th; then the app is asked to stop.
The number of closed windows and the trades in them are counted after `.final()` and printed,
so the caller can check them against the generated data.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from quixstreams import Application


class Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.windows = 0
        self.window_trades = 0
        self.app: Application | None = None

    def tick(self) -> None:
        self.seen += 1
        if self.seen == 1:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
        if self.seen == self.target:
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            assert self.app is not None
            self.app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()

    counter = Counter(args.count)
    tick = counter.tick

    def initializer(trade: dict[str, Any]) -> list[Any]:
        tick()
        price = float(trade["price"])
        qty = float(trade["qty"])
        quote = price * qty
        taker = not trade["buyer_maker"]
        # open, high, low, close, volume, quote volume, trades, taker-buy volume and quote
        return [price, price, price, price, qty, quote, 1,
                qty if taker else 0.0, quote if taker else 0.0]

    def reducer(agg: list[Any], trade: dict[str, Any]) -> list[Any]:
        tick()
        price = float(trade["price"])
        qty = float(trade["qty"])
        quote = price * qty
        if price > agg[1]:
            agg[1] = price
        if price < agg[2]:
            agg[2] = price
        agg[3] = price
        agg[4] += qty
        agg[5] += quote
        agg[6] += 1
        if not trade["buyer_maker"]:
            agg[7] += qty
            agg[8] += quote
        return agg

    def closed(window: dict[str, Any]) -> None:
        counter.windows += 1
        counter.window_trades += window["value"][6]

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel=logging.WARNING,
        # The same consumer tuning as the stream stage (workers/stream/stage.py), so the two
        # read Kafka alike; the session timeout also makes the group join quick on Tansu.
        consumer_extra_config={
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 10,
            "queued.min.messages": 200_000,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
        },
    )
    counter.app = app
    trades = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    candles = app.topic(args.output_topic, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(trades)
    sdf = sdf.tumbling_window(duration_ms=60_000).reduce(reducer, initializer).final()
    sdf = sdf.update(closed)
    sdf.to_topic(candles)
    app.run()

    if counter.seen < args.count:
        raise SystemExit(f"stopped after {counter.seen} of {args.count} messages")
    seconds = counter.last - counter.first
    print(json.dumps({
        "rate": args.count / seconds,
        "seconds": seconds,
        "messages": counter.seen,
        "windows": counter.windows,
        "window_trades": counter.window_trades,
        "cpu_seconds": counter.cpu_last - counter.cpu_first,
    }))


if __name__ == "__main__":
    main()
