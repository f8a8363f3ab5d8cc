"""Helpers of the worker tests that run the pipeline's real processes: trades spread over hours
of event time, the stream stage and Celery workers as subprocesses that a test can SIGKILL, and
the exactly-once check of what PostgreSQL holds against an offline computation.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pytest
import redis
from psycopg2.extensions import connection as PGConnection

import celeryconfig
from core import redis_keys
from core.candles import Candle
from core.indicators import IndicatorEngine
from core.kafka import read_topic
from core.models import Trade
from core.settings import Settings
from producers.ingest import Ingestor
from producers.run import make_sink
from producers.sources.synthetic import TradeGenerator
from tests.conftest import REPO
from tests.core.db.dbutil import query
from tests.core.test_candles import Trade as Tick
from tests.core.test_candles import assert_same, offline

# Six symbols that the default partitioner (CRC32 of the key) spreads over all three partitions
# of a test topic: BTC and ETH on 0, XRP on 1, BNB, SOL and ADA on 2. The tests check the
# spread on the topic itself rather than trust this.
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT")
N_TRADES = 200_000
# 2024-08-08 22:00 UTC, and 81 ms between trades: 200,000 trades span 4.5 hours and cross
# midnight, so candles of every timeframe close, the daily one included.
START_MS = 1_723_154_400_000
STEP_MS = 81
# Generous: the machine has two cores, shared with the broker, the databases and other tests.
TIMEOUT_S = 120.0


# -- trades ---------------------------------------------------------------------------------

def spread_trades(n: int = N_TRADES, symbols: Sequence[str] = SYMBOLS, seed: int = 7,
                  start_ms: int = START_MS, step_ms: int = STEP_MS) -> list[Trade]:
    """The synthetic source's random walk, with event times `step_ms` apart from a fixed past
    time instead of the wall clock: history, which only its own trades close."""
    gen = TradeGenerator(symbols, seed, "spot")
    trades = []
    for i in range(n):
        trade = gen.next()
        trade["ts"] = trade["recv_ts"] = start_ms + i * step_ms
        trades.append(trade)
    return trades


def produce_trades(settings: Settings, trades: Sequence[Trade]) -> int:
    """Send `trades` through the producers' own path (Ingestor over the Kafka sink) into the
    settings' trades topic; returns how many were sent, all acknowledged."""
    sink = make_sink(settings)
    try:
        ingest = Ingestor(sink, settings.market, settings.symbols, "synthetic")
        for trade in trades:
            ingest.trade(trade, b"")
        ingest.close()
    finally:
        sink.close()
    return ingest.stats.trades


@dataclass
class TopicTrades:
    """What the trades topic really holds: the input of the offline computation."""

    ticks: dict[str, list[Tick]] = field(default_factory=lambda: defaultdict(list))
    qty: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    per_partition: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.per_partition.values())


def topic_trades(settings: Settings) -> TopicTrades:
    out = TopicTrades()
    for msg in read_topic(settings.kafka_bootstrap, settings.topic_trades, timeout=60):
        t = orjson.loads(msg.value() or b"")
        out.ticks[t["symbol"]].append((float(t["price"]), float(t["qty"]), t["ts"],
                                       t["buyer_maker"]))
        out.qty[t["symbol"]] += Decimal(t["qty"])
        partition = msg.partition()
        assert partition is not None
        out.per_partition[partition] += 1
    return out


def expected_candles(trades: TopicTrades, timeframes: Sequence[str]
                     ) -> dict[tuple[str, str], list[Candle]]:
    """The offline candles per (symbol, timeframe). History is closed by its own trades only,
    so the last range of each stays open and is left out."""
    return {(symbol, tf): offline(ticks, symbol, tf)[:-1]
            for symbol, ticks in trades.ticks.items() for tf in timeframes}


# -- processes --------------------------------------------------------------------------------

def killable_worker_transport(ns: str) -> dict[str, Any]:
    """Broker transport options for a Celery worker that a test kills.

    The tasks a SIGKILLed worker had reserved come back when the visibility timeout expires
    (celeryconfig: 300 s); the test shortens it and sweeps every second. Kombu keeps the
    unacknowledged messages in Redis keys that every Celery app on the database shares: they
    are named after the test's namespace here, so that the short timeout never redelivers
    another app's tasks, and the namespace fixture deletes them afterwards.
    """
    return {
        "visibility_timeout": 10,
        "unacked_key": f"{ns}.unacked",
        "unacked_index_key": f"{ns}.unacked_index",
        "unacked_mutex_key": f"{ns}.unacked_mutex",
        # A worker killed during its sweep must not block the next one for the default 300 s.
        "unacked_mutex_expire": 5,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }


def worker_main(argv: list[str]) -> None:
    """The worker `Processes.worker` starts for `transport` options (argv: their JSON, then
    `worker ARGS`): the project's Celery app and tasks, with the test's transport options."""
    from workers.celery_app import app

    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         **orjson.loads(argv[0])}
    app.worker_main(argv[1:])


class Processes:
    """The test's subprocesses, each the leader of a session (process group) of its own, so a
    SIGKILL takes a Celery worker's pool children with it. Whatever still runs when the block
    ends is stopped, and the logs are printed when the block ends with an error."""

    def __init__(self, settings: Settings, ns: str, logs: Path) -> None:
        self.settings = settings
        self.ns = ns
        self.logs = logs
        self.env = {**os.environ, **settings.as_env()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.expect_running: set[str] = set()
        self.threads: list[threading.Thread] = []  # in-process parts that must keep running

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for name in list(self.procs):
            self.stop(name, timeout=10)
        if exc_type is not None:
            for name in self.procs:
                print(f"----- {name} (exit {self.procs[name].returncode}) -----")
                print(self.log(name)[-6000:])

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        assert name not in self.procs, name
        with open(self.logs / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    cwd=REPO, start_new_session=True)
        self.procs[name] = proc
        self.expect_running.add(name)
        return proc

    def stream(self, name: str) -> subprocess.Popen[bytes]:
        """`alphaplus stream` in the test's namespace (group and topics from the settings)."""
        return self._start(name, [sys.executable, "-m", "alphaplus.cli", "stream",
                                  "--namespace", self.ns])

    def worker(self, name: str, transport: dict[str, Any] | None = None
               ) -> subprocess.Popen[bytes]:
        """A Celery worker on the test's queues: `celery -A workers.celery_app worker`, or the
        same app with `transport` options (`worker_main`)."""
        queues = ",".join(celeryconfig.queue_name(self.settings, k) for k in celeryconfig.KINDS)
        args = ["worker", "-Q", queues, "--concurrency", "2", "--loglevel", "INFO",
                "--without-mingle", "--without-gossip", "-n", f"{self.ns}-{name}@%h"]
        if transport is None:
            return self._start(name, [sys.executable, "-m", "celery", "-A", "workers.celery_app",
                                      *args])
        main = "import sys; from tests.workers.helpers import worker_main as m; m(sys.argv[1:])"
        return self._start(name, [sys.executable, "-c", main, orjson.dumps(transport).decode(),
                                  *args])

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything in its group: no handler, no cleanup runs."""
        proc = self.procs[name]
        self.expect_running.discard(name)
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str, timeout: float = 30) -> int | None:
        """SIGTERM (a clean stop), SIGKILL after `timeout`; the exit code of a clean stop."""
        proc = self.procs[name]
        self.expect_running.discard(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                return None
        # Pool children outlive a main process that died without stopping them.
        _killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def check_running(self) -> None:
        for thread in self.threads:
            assert thread.is_alive(), f"{thread.name} ended"
        for name in self.expect_running:
            code = self.procs[name].poll()
            assert code is None, f"{name} exited with {code}:\n{self.log(name)[-3000:]}"

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tasks(self, name: str, event: str) -> set[str]:
        """The ids of the tasks a Celery worker logged as `received` or `succeeded`. Kombu has
        stored a task among the unacknowledged ones (which come back after the visibility
        timeout) before Celery logs it as received."""
        return set(re.findall(rf"Task \S+\[([0-9a-f-]+)\] {event}", self.log(name)))

    def assigned(self, name: str) -> set[int]:
        """The partitions a stream process holds now, by its log (eager rebalancing: each
        assignment replaces the last; a revocation, or a lost assignment, removes)."""
        held: set[int] = set()
        for kind, parts in re.findall(r"(assigned|revoked) partitions (\[.*\])", self.log(name)):
            listed = ast.literal_eval(parts)
            if kind == "assigned":
                held = {p for p, _offset in listed}
            else:
                held -= set(listed)
        return held


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


def wait_for(predicate: Callable[[], bool], what: str, procs: Processes,
             timeout: float = TIMEOUT_S, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        procs.check_running()
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


def checkpoint_offsets(settings: Settings, ns: str) -> dict[int, int]:
    """Per partition, the offset of the next message the stream's checkpoint says to read
    (0 before the first checkpoint): the messages processed, since test topics start at 0."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = [redis_keys.stream_checkpoint(ns, settings.stream_group, settings.topic_trades, p)
                for p in range(settings.kafka_partitions)]
        raw = client.mget(keys)
    finally:
        client.close()
    return {p: 0 if r is None else int(orjson.loads(r)["offset"]) for p, r in enumerate(raw)}


# -- PostgreSQL -----------------------------------------------------------------------------

def db_counts(db: PGConnection, ns: str) -> tuple[int, int, int]:
    """(trades, candles, indicator rows) stored under the run id `ns`."""
    row = query(db, "SELECT (SELECT count(*) FROM trades WHERE run_id = %s),"
                    " (SELECT count(*) FROM candles WHERE run_id = %s),"
                    " (SELECT count(*) FROM indicators WHERE run_id = %s)", (ns, ns, ns))[0]
    return int(row[0]), int(row[1]), int(row[2])


def stored_candles(db: PGConnection, ns: str) -> dict[tuple[str, str], list[Candle]]:
    rows = query(db, "SELECT symbol, timeframe, (extract(epoch FROM open_time) * 1000)::bigint,"
                     " (extract(epoch FROM close_time) * 1000)::bigint, open, high, low, close,"
                     " volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume,"
                     " closed FROM candles WHERE run_id = %s"
                     " ORDER BY symbol, timeframe, open_time", (ns,))
    out: dict[tuple[str, str], list[Candle]] = defaultdict(list)
    for row in rows:
        out[row[0], row[1]].append(Candle(*row))
    return out


def assert_stored_exactly_once(db: PGConnection, ns: str, trades: TopicTrades,
                               want: dict[tuple[str, str], list[Candle]]) -> None:
    """Every trade of the topic stored once; the stored closed candles equal the offline ones;
    one indicator row per stored candle, with the values of one straight pass over them (a
    candle applied twice, or skipped, would change every value after it)."""
    stored_trades = {
        symbol: (n, distinct, first, last, qty)
        for symbol, n, distinct, first, last, qty in query(
            db, "SELECT symbol, count(*), count(DISTINCT trade_id), min(trade_id),"
                " max(trade_id), sum(qty) FROM trades WHERE run_id = %s GROUP BY symbol",
            (ns,))}
    assert stored_trades == {
        symbol: (len(ticks), len(ticks), 1, len(ticks), trades.qty[symbol])
        for symbol, ticks in trades.ticks.items()}

    stored = stored_candles(db, ns)
    assert set(stored) == {key for key, candles in want.items() if candles}
    for key, candles in want.items():
        assert_same(stored.get(key, []), candles)

    values: dict[tuple[str, str], dict[int, dict[str, float | None]]] = defaultdict(dict)
    for symbol, tf, open_ms, vals in query(
            db, "SELECT symbol, timeframe, (extract(epoch FROM open_time) * 1000)::bigint,"
                ' "values" FROM indicators WHERE run_id = %s', (ns,)):
        values[symbol, tf][open_ms] = vals
    for key, candles in stored.items():
        assert sorted(values[key]) == [c.open_time for c in candles], key
        engine = IndicatorEngine()
        for candle in candles:
            got, straight = values[key][candle.open_time], engine.update(candle)
            assert got.keys() == straight.keys()
            for name, value in straight.items():
                # None while an indicator warms up (and for NaN: JSON has none).
                assert got[name] == (None if value is None else pytest.approx(value, rel=1e-9)), (
                    key, candle.open_time, name)
