"""One trade through the real processes — `alphaplus produce` (a one-row Binance CSV) → Kafka
→ `alphaplus stream` → a Celery worker → `alphaplus api` — with JSON logs: the correlation id
the producer put on the Kafka message is found in a log line of every one of them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from core.kafka import ensure_topics
from core.settings import Settings
from tests.api.server import ApiProcess
from tests.conftest import REPO
from tests.workers.helpers import Processes, wait_for


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def with_cid(text: str, cid: str) -> list[dict[str, Any]]:
    return [r for r in json_lines(text) if r.get("cid") == cid]


def test_one_trade_is_traced_through_every_process(
        settings: Settings, redis_url: str, namespace: str, migrated_db: str,
        tmp_path: Path) -> None:
    s = settings.replace(redis_url=redis_url, database_url=migrated_db, symbols=("BTCUSDT",),
                         api_namespace=namespace, celery_queue_prefix=namespace,
                         stream_group=f"{namespace}-stream", log_format="json", log_every_s=0)
    ensure_topics(s.kafka_bootstrap, [s.topic_candles], 3)
    now_ms = int(time.time() * 1000)
    csv = tmp_path / "BTCUSDT-trades-2026-01-01.csv"  # the name gives the symbol only
    csv.write_text(f"7001,61800.10,0.5,30900.05,{now_ms},true,true\n")

    api = ApiProcess(s, tmp_path / "api.log").start()
    try:
        with Processes(s, namespace, tmp_path) as procs:
            procs.worker("worker")
            procs.stream("stream")
            wait_for(lambda: len(procs.assigned("stream")) == 3, "the stream's partitions",
                     procs, timeout=60)
            produced = subprocess.run(
                [sys.executable, "-m", "alphaplus.cli", "produce", "--source", f"csv:{csv}"],
                cwd=REPO, env=procs.env, capture_output=True, text=True, timeout=120)
            assert produced.returncode == 0, produced.stderr
            summary = [r for r in json_lines(produced.stderr) if "1 trades" in r["msg"]]
            assert len(summary) == 1, produced.stderr
            cid = summary[0]["cid"]
            assert summary[0]["process"] == "produce" and len(cid) == 16

            # The stream's batch line, the worker's task (the trade's persistence), the API's
            # push of the live candle: each with the producer's id.
            wait_for(lambda: bool(with_cid(procs.log("stream"), cid)), "the stream's line",
                     procs, timeout=60)
            wait_for(lambda: any("succeeded" in r["msg"]
                                 for r in with_cid(procs.log("worker"), cid)),
                     "the worker's line", procs, timeout=60)
            wait_for(lambda: any("pushed kline BTCUSDT" in r["msg"]
                                 for r in with_cid(api.log(), cid)),
                     "the API's line", procs, timeout=60)
            stream_lines = with_cid(procs.log("stream"), cid)
            worker_lines = with_cid(procs.log("worker"), cid)
    finally:
        api.stop()
    api_lines = with_cid(api.log(), cid)
    assert {r["process"] for r in stream_lines} == {"stream"}
    assert {r["process"] for r in worker_lines} == {"worker"}
    assert {r["process"] for r in api_lines} == {"api"}
    assert any("alphaplus.persist_trades" in r["msg"] for r in worker_lines)
    # Four processes, four pids.
    pids = {summary[0]["pid"], stream_lines[0]["pid"], worker_lines[0]["pid"],
            api_lines[0]["pid"]}
    assert len(pids) == 4
