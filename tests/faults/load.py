"""Load for the fault tests: trades fed to the broker at a steady rate while a fault happens,
a client polling the API's read endpoints and recording every answer, the real producer as a
test process, and the check of the Redis candle windows against the offline candles.

The trades are the crash tests' (tests/workers/helpers.py: `spread_trades`), history with
fixed event times, so the expected candles are exactly the offline group-by of the topic and
nothing depends on the wall clock.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import msgspec
import redis
from psycopg2.extensions import connection as PGConnection

from core import redis_keys
from core.candles import Candle
from core.models import Trade
from core.settings import Settings
from producers.ingest import Ingestor
from producers.run import make_sink
from tests.core.test_candles import assert_same
from tests.workers.helpers import (
    Processes,
    TopicTrades,
    db_counts,
    expected_candles,
    topic_trades,
    wait_for,
)

# One batch of trades per this many seconds, paced against the start (no drift).
FEED_TICK_S = 0.01


class FaultProcesses(Processes):
    """The worker tests' processes, plus the real producer."""

    def __enter__(self) -> FaultProcesses:
        return self

    def producer(self, name: str, rate: float) -> subprocess.Popen[bytes]:
        """`alphaplus produce --source synthetic --rate RATE` into the test's topics."""
        return self._start(name, [sys.executable, "-m", "alphaplus.cli", "produce",
                                  "--source", "synthetic", "--rate", str(rate)])


class TradeFeed:
    """Produces `trades` into the settings' trades topic at `rate` per second, through the
    producers' own path (Ingestor over the Kafka sink), in a thread."""

    def __init__(self, settings: Settings, trades: Sequence[Trade], rate: float) -> None:
        self.settings = settings
        self.trades = trades
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trade feed", daemon=True)

    def start(self) -> TradeFeed:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            sink = make_sink(self.settings)
            try:
                ingest = Ingestor(sink, self.settings.market, self.settings.symbols, "synthetic")
                per_tick = max(1, round(self.rate * FEED_TICK_S))
                started = time.monotonic()
                while self.sent < len(self.trades) and not self.stop.is_set():
                    for trade in self.trades[self.sent:self.sent + per_tick]:
                        ingest.trade(trade, b"")
                    self.sent = min(len(self.trades), self.sent + per_tick)
                    sink.poll(0)
                    delay = started + self.sent / self.rate - time.monotonic()
                    if delay > 0:
                        self.stop.wait(delay)
                ingest.close()
            finally:
                sink.close()  # flushes: every trade sent is acknowledged
        except Exception as exc:  # reported by join()
            self.error = exc

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float) -> int:
        """Wait for the feed to finish; the number of trades sent, all acknowledged."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the trade feed did not finish"
        assert self.error is None, f"the trade feed failed: {self.error!r}"
        return self.sent


def wait_until_stored(feed: TradeFeed, settings: Settings, db: PGConnection, ns: str,
                      procs: Processes, n_trades: int
                      ) -> tuple[TopicTrades, dict[tuple[str, str], list[Candle]], float]:
    """The feed's end, then every trade of the topic, and every candle and indicator row the
    offline computation expects, stored under `ns`. Returns the topic's trades, the expected
    candles, and when the feed ended (monotonic)."""
    produced = feed.join(timeout=120)
    fed = time.monotonic()
    trades = topic_trades(settings)
    assert trades.count == produced == n_trades
    want = expected_candles(trades, settings.timeframes)
    n_candles = sum(len(c) for c in want.values())
    wait_for(lambda: db_counts(db, ns) == (produced, n_candles, n_candles),
             "every trade, candle and indicator row", procs, every=0.25)
    return trades, want, fed


@dataclass
class Answer:
    at: float  # time.monotonic() when the request was sent
    path: str
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    seconds: float
    error: str = ""


@dataclass
class ApiPoller:
    """Polls `paths` of the API round-robin, one request at a time, and keeps every answer."""

    base_url: str
    paths: Sequence[str]
    pause_s: float = 0.05
    timeout_s: float = 5.0
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="api poller", daemon=True)

    def start(self) -> ApiPoller:
        self.thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client:
            i = 0
            while not self.stop.is_set():
                path = self.paths[i % len(self.paths)]
                i += 1
                at = time.monotonic()
                try:
                    status: int | None = client.get(path).status_code
                    error = ""
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                self.answers.append(Answer(at, path, status, time.monotonic() - at, error))
                self.stop.wait(self.pause_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers to requests that were in flight at some time in [start, end)."""
        return [a for a in self.answers if a.at < end and a.at + a.seconds >= start]

    def outside(self, start: float, end: float) -> list[Answer]:
        inside = {id(a) for a in self.between(start, end)}
        return [a for a in self.answers if id(a) not in inside]

    @staticmethod
    def statuses(answers: Sequence[Answer]) -> Counter[int | None]:
        return Counter(a.status for a in answers)


_decode_candle = msgspec.json.Decoder(Candle).decode


def redis_windows(url: str, ns: str, keys: Sequence[tuple[str, str]]
                  ) -> dict[tuple[str, str], list[Candle]]:
    """The closed candles the stream stage keeps in Redis per (symbol, timeframe)."""
    client = redis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for symbol, tf in keys:
            pipe.zrange(redis_keys.candle_window(ns, symbol, tf), 0, -1)
        raws = pipe.execute()
    finally:
        client.close()
    return {key: [_decode_candle(r) for r in raw] for key, raw in zip(keys, raws, strict=True)}


def assert_redis_windows(url: str, ns: str, want: dict[tuple[str, str], list[Candle]],
                         window: int) -> int:
    """Each Redis window holds exactly the last `window` offline candles of its key, once
    each; returns how many candles were compared."""
    got = redis_windows(url, ns, sorted(want))
    compared = 0
    for key, candles in want.items():
        assert len({c.open_time for c in got[key]}) == len(got[key]), f"{key}: doubled"
        assert_same(got[key], candles[-window:])
        compared += len(got[key])
    return compared
