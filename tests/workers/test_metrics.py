"""Prometheus metrics of the real processes, scraped over HTTP: `alphaplus stream` (per-batch
counters that must equal what the stage really did) and a Celery worker with a prefork pool of
two (the metrics port must serve the sum over the pool processes)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

import celeryconfig
from core import metrics, redis_keys
from core.kafka import producer_config
from core.settings import Settings
from infra.stack.ports import free_port
from tests.conftest import REPO
from tests.workers.helpers import (
    Processes,
    TopicTrades,
    expected_candles,
    produce_trades,
    spread_trades,
    wait_for,
)
from workers.celery_app import make_app
from workers.stream.handoff import TASK_TRADES
from workers.stream.outbox import TaskOutbox

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def values(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def try_scrape(port: int) -> Samples:
    try:
        return scrape(port)
    except httpx.TransportError:
        return {}


def test_a_taken_port_is_an_error_line_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="core.metrics"):
            assert metrics.serve(port) is False
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
    assert metrics.serve(0) is False


# -- stream ---------------------------------------------------------------------------------------

def test_stream_process_counts_what_it_did(stage_settings: Settings, namespace: str,
                                           redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = stage_settings.replace(metrics_port=port, log_format="json", log_every_s=0)
    # One symbol on each partition of the test topic (tests/workers/helpers.py: SYMBOLS).
    symbols = ("BTCUSDT", "XRPUSDT", "SOLUSDT")
    trades = spread_trades(3_000, symbols)
    settings = settings.replace(symbols=symbols)
    with Processes(settings, namespace, tmp_path) as procs:
        procs.stream("stream")
        assert produce_trades(settings, trades) == 3_000
        # Past the producer's own checks: a trade id again (a duplicate for the stage) and
        # a message that is no trade at all (rejected, dead-lettered).
        raw = Producer(producer_config(settings.kafka_bootstrap, "none"))
        last = trades[-1]
        again = {**last, "v": 1, "exchange": "binance"}
        raw.produce(settings.topic_trades, orjson.dumps(again), last["symbol"].encode())
        raw.produce(settings.topic_trades, b"not a trade", b"XRPUSDT")
        assert raw.flush(30) == 0
        raw.close()

        def seen() -> bool:
            s = try_scrape(port)
            return (value(s, "alphaplus_stream_trades_total", ns=namespace) >= 3_000
                    and value(s, "alphaplus_stream_trades_dropped_total", ns=namespace,
                              reason="rejected") >= 1
                    and value(s, "alphaplus_stream_trades_dropped_total", ns=namespace,
                              reason="duplicate") >= 1)

        wait_for(seen, "the stream's metrics to count every message", procs, timeout=90)
        time.sleep(1.5)  # a lag update comes at most once a second
        s = scrape(port)
        log = procs.log("stream")

    assert value(s, "alphaplus_stream_trades_total", ns=namespace) == 3_000
    assert value(s, "alphaplus_stream_trades_dropped_total", ns=namespace,
                 reason="duplicate") == 1
    assert value(s, "alphaplus_stream_trades_dropped_total", ns=namespace,
                 reason="rejected") == 1
    assert value(s, "alphaplus_stream_trades_dropped_total", ns=namespace, reason="late") == 0

    sent = TopicTrades()
    for t in trades:
        sent.ticks[t["symbol"]].append((float(t["price"]), float(t["qty"]), t["ts"],
                                        t["buyer_maker"]))
    want = expected_candles(sent, settings.timeframes)
    per_tf = Counter({tf: 0 for tf in settings.timeframes})
    for (_symbol, tf), candles in want.items():
        per_tf[tf] += len(candles)
    got = {tf: value(s, "alphaplus_stream_candles_closed_total", ns=namespace, timeframe=tf)
           for tf in settings.timeframes}
    assert got == {tf: float(n) for tf, n in per_tf.items()}
    assert got["1m"] > 0

    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.hgetall(redis_keys.stream_stats(namespace))
    finally:
        client.close()
    batches = float(stats[b"batches"])
    assert value(s, "alphaplus_stream_batch_seconds_count") == batches
    assert value(s, "alphaplus_stream_batch_seconds_sum") > 0
    # History (2024): the live candles were published, their trades are long past.
    assert value(s, "alphaplus_stream_candle_latency_seconds_count") > 0
    assert value(s, "alphaplus_stream_candle_latency_seconds_bucket", le="60.0") == 0

    lag = values(s, "alphaplus_stream_consumer_lag")
    assert {dict(labels)["partition"] for labels in lag} == {"0", "1", "2"}
    assert all(dict(labels)["topic"] == settings.topic_trades for labels in lag)
    assert all(0 <= v <= 3_002 for v in lag.values())
    assert value(s, "alphaplus_log_errors_total", process="stream") == 0

    progress = [orjson.loads(line) for line in log.splitlines()
                if line.startswith("{") and "candles closed" in line]
    assert progress and all(p["process"] == "stream" and len(p.get("cid", "")) == 16
                            for p in progress)


def test_candles_the_wall_clock_closes_are_counted(stage_settings: Settings, namespace: str,
                                                    tmp_path: Path) -> None:
    """A live symbol gone quiet: its candle is closed by the wall clock in a batch that holds
    no message, and still counted."""
    port = free_port()
    settings = stage_settings.replace(metrics_port=port, timeframes=("1s", "1m"),
                                      close_grace_ms=200, symbols=("BTCUSDT",))
    with Processes(settings, namespace, tmp_path) as procs:
        procs.stream("stream")
        wait_for(lambda: len(procs.assigned("stream")) == 3, "the partitions", procs,
                 timeout=60)
        raw = Producer(producer_config(settings.kafka_bootstrap, "none"))
        now_ms = int(time.time() * 1000)
        trade = {"v": 1, "exchange": "binance", "market": "spot", "symbol": "BTCUSDT",
                 "trade_id": 1, "price": "61800.10", "qty": "0.5", "ts": now_ms,
                 "buyer_maker": False, "recv_ts": now_ms}
        raw.produce(settings.topic_trades, orjson.dumps(trade), b"BTCUSDT", timestamp=now_ms)
        assert raw.flush(30) == 0
        raw.close()
        wait_for(lambda: value(try_scrape(port), "alphaplus_stream_candles_closed_total",
                               ns=namespace, timeframe="1s") >= 1,
                 "the quiet 1s candle to be counted", procs, timeout=60)
        s = scrape(port)
    assert value(s, "alphaplus_stream_candles_closed_total", ns=namespace, timeframe="1s") == 1
    assert value(s, "alphaplus_stream_trades_total", ns=namespace) == 1
    # A live trade: its candle reached Redis well within a minute of its trade time.
    assert value(s, "alphaplus_stream_candle_latency_seconds_bucket", le="60.0") == 1


# -- Celery worker ------------------------------------------------------------------------------

ROW = ["spot", "BTCUSDT", 0, "61800.10", "0.5", 1723161600000, False]
TASKS = 16
ROWS_PER_TASK = 2_000


def start_worker(settings: Settings, ns: str, log_path: Path, via: str
                 ) -> subprocess.Popen[bytes]:
    queues = ",".join(celeryconfig.queue_name(settings, k) for k in celeryconfig.KINDS)
    args = ["-Q", queues, "--concurrency", "2", "--loglevel", "INFO", "--without-mingle",
            "--without-gossip", "-n", f"{ns}@%h"]
    if via == "alphaplus":
        argv = [sys.executable, "-m", "alphaplus.cli", "worker", *args]
    else:
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", *args]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with log_path.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO, env={**env, **settings.as_env()}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.parametrize("via", ["alphaplus", "celery"])
def test_worker_serves_the_sum_over_its_pool(stage_settings: Settings, namespace: str,
                                             redis_url: str, migrated_db: str, tmp_path: Path,
                                             via: str) -> None:
    port = free_port()
    settings = stage_settings.replace(database_url=migrated_db, metrics_port=port,
                                      log_format="json")
    log_path = tmp_path / "worker.log"
    client = redis.Redis.from_url(redis_url)
    proc = start_worker(settings, namespace, log_path, via)
    try:
        outbox = TaskOutbox(client, make_app(settings), namespace, redeliver_s=600)
        for t in range(TASKS):
            rows = [[*ROW[:2], t * ROWS_PER_TASK + i + 1, *ROW[3:]]
                    for i in range(ROWS_PER_TASK)]
            outbox.send(TASK_TRADES, (namespace, rows), cid=f"cid-test-{t}")
        outbox.send(TASK_TRADES, (namespace, [["spot"]]), cid="cid-test-bad")  # fails

        def done() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            s = try_scrape(port)
            return (value(s, "alphaplus_tasks_total", task=TASK_TRADES,
                          outcome="succeeded") >= TASKS
                    and value(s, "alphaplus_tasks_total", task=TASK_TRADES,
                              outcome="failed") >= 1)

        deadline = time.monotonic() + 120
        while not done():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.25)
        s = scrape(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        client.close()

    assert value(s, "alphaplus_tasks_total", task=TASK_TRADES, outcome="succeeded") == TASKS
    assert value(s, "alphaplus_tasks_total", task=TASK_TRADES, outcome="failed") == 1
    assert value(s, "alphaplus_task_duration_seconds_count", task=TASK_TRADES) == TASKS + 1
    assert value(s, "alphaplus_db_rows_written_total", table="trades") == TASKS * ROWS_PER_TASK
    assert value(s, "alphaplus_log_errors_total", process="worker") >= 1

    lines = [orjson.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    succeeded = [r for r in lines if re.search(r"Task \S+\[\w+\] succeeded", r["msg"])]
    assert len(succeeded) == TASKS
    # The tasks ran in both pool processes, and the one port counted them all.
    assert len({r["pid"] for r in succeeded}) == 2
    assert {r["cid"] for r in succeeded} == {f"cid-test-{t}" for t in range(TASKS)}
    failed = [r for r in lines if r["level"] == "ERROR" and r.get("cid") == "cid-test-bad"]
    assert failed and "ValueError" in failed[0]["exc"]

    ready = [r["msg"] for r in lines if "values in" in r["msg"]]
    assert len(ready) == 1
    folder = ready[0].rsplit("values in ", 1)[1].rstrip(")")
    assert not Path(folder).exists(), "the worker's metrics folder outlived it"
