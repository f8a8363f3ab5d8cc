"""The metrics each process kind really exports, read from /metrics of running processes
(`alphaplus api`, `produce`, `stream`, `worker` against the test broker, Redis and database),
compared with the contract the Grafana dashboard is checked against (metrics_contract.py).

Each kind is checked twice: its metrics that exist today, and those marked `pending` (landing
with the observability work), which are a strict xfail until they are exported — then the test
turns red, and the `pending` mark is to be removed in metrics_contract.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import celeryconfig
from core import redis_keys
from core.db.scratch import scratch_database
from core.kafka import ensure_topics
from core.settings import Settings
from infra.migrations import upgrade
from infra.stack.ports import free_port
from infra.stack.redis import delete_keys
from tests.api.server import ApiProcess
from tests.deploy.files import prometheus_config
from tests.deploy.metrics_contract import PROCESS_KINDS, Metric, expected
from tests.deploy.scrape import CliProcess, Family, families, fetch
from tests.workers.helpers import produce_trades, spread_trades
from workers.celery_app import make_app

PENDING_REASON = "metrics land with observability work"
#: A sample line each kind shows once it has done its work (not merely imported its metrics):
#: the producer ingests synthetic trades, the stream stage reads trades put in its topic, the
#: worker runs a task sent to it, the API builds its cache.
READY = {"producer": "alphaplus_trades_ingested_total{", "stream": "alphaplus_stream_trades_total{",
         "worker": "alphaplus_tasks_total{", "api": "alphaplus_api_cache_size{"}


class Exported:
    """Starts each process kind once (on first use), reads its metrics, stops it."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.cache: dict[str, dict[str, Family]] = {}

    def __call__(self, kind: str) -> dict[str, Family]:
        if kind not in self.cache:
            self.cache[kind] = families(getattr(self, kind)())
        return self.cache[kind]

    def api(self) -> str:
        server = ApiProcess(self.settings, self.logs / "api.log").start()
        try:
            # The path Prometheus scrapes, as configured: it must answer without a redirect.
            [job] = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == "api"]
            return fetch(server.url + job["metrics_path"], 30, READY["api"])
        finally:
            server.stop()

    def _cli(self, kind: str, args: list[str], timeout: float) -> str:
        port = free_port()
        env = {**self.settings.as_env(), "ALPHAPLUS_METRICS_PORT": str(port)}
        proc = CliProcess(args, env, self.logs / f"{kind}.log")
        try:
            return fetch(f"http://127.0.0.1:{port}/metrics", timeout, READY.get(kind))
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{kind} log:\n{proc.log()}") from exc
        finally:
            proc.stop()

    def producer(self) -> str:
        return self._cli("producer", ["produce", "--source", "synthetic", "--rate", "200"], 60)

    def stream(self) -> str:
        produce_trades(self.settings, spread_trades(1000, self.settings.symbols))
        return self._cli("stream", ["stream"], 60)

    def worker(self) -> str:
        # One trade to persist: a task the worker runs (and counts) as soon as it is up.
        row = ["spot", "BTCUSDT", 1, "100.0", "0.5", 1_700_000_000_000, False]
        make_app(self.settings).send_task(
            "alphaplus.persist_trades", args=[self.settings.api_namespace, [row]],
            queue=celeryconfig.queue_name(self.settings, "persist"))
        return self._cli("worker", ["worker", "--concurrency", "1", "--loglevel", "INFO"], 60)


@pytest.fixture(scope="module")
def exported(kafka_bootstrap: str, redis_url: str, pg_server: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    suffix = uuid.uuid4().hex[:10]
    ns = f"test-{suffix}"
    with ExitStack() as stack:
        db = stack.enter_context(scratch_database(pg_server))
        upgrade(db)
        stack.callback(delete_keys, redis_url, [redis_keys.namespace_pattern(ns),
                                                *redis_keys.celery_queue_patterns(ns)])
        settings = Settings.from_env(environ={}, env_file=None).replace(
            kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, database_url=db,
            topic_trades=f"test.trades.{suffix}", topic_candles=f"test.candles.{suffix}",
            topic_deadletter=f"test.deadletter.{suffix}", topic_gaps=f"test.gaps.{suffix}",
            symbols=("BTCUSDT",), api_namespace=ns, celery_queue_prefix=ns,
            stream_group=f"{ns}-stream")
        ensure_topics(kafka_bootstrap, [settings.topic_trades, settings.topic_candles,
                                        settings.topic_deadletter, settings.topic_gaps], 3)
        yield Exported(settings, tmp_path_factory.mktemp("deploy-metrics"))


def groups() -> Iterator[object]:
    for kind in PROCESS_KINDS:
        for pending in (False, True):
            metrics = [m for m in expected(kind) if m.pending == pending]
            if not metrics:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=PENDING_REASON)] if pending else []
            yield pytest.param(kind, metrics, marks=marks,
                               id=f"{kind}-pending" if pending else kind)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "metrics"), list(groups()))
def test_process_exports_its_contract_metrics(
        exported: Exported, kind: str, metrics: list[Metric]) -> None:
    found = exported(kind)
    missing = [m.name for m in metrics if m.name not in found]
    assert not missing, f"{kind} does not export {missing}"
    for metric in metrics:
        family = found[metric.name]
        assert family.kind == metric.kind, metric.name
        for labels in family.labels:  # only where samples exist to carry them
            assert labels == set(metric.labels), (metric.name, sorted(labels))


def test_scrape_reads_names_types_and_labels() -> None:
    text = (
        "# TYPE alphaplus_x_total counter\n"
        'alphaplus_x_total{source="a",symbol="B"} 1.0\n'
        'alphaplus_x_created{source="a",symbol="B"} 1.7e9\n'
        "# TYPE alphaplus_h_seconds histogram\n"
        'alphaplus_h_seconds_bucket{task="t",le="+Inf"} 0.0\n'
        'alphaplus_h_seconds_count{task="t"} 0.0\n'
        "# TYPE alphaplus_empty_total counter\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 1.0\n")
    found = families(text)
    assert set(found) == {"alphaplus_x_total", "alphaplus_h_seconds", "alphaplus_empty_total"}
    assert found["alphaplus_x_total"].labels == {frozenset({"source", "symbol"})}
    assert found["alphaplus_h_seconds"].kind == "histogram"
    assert found["alphaplus_h_seconds"].labels == {frozenset({"task"})}
    assert found["alphaplus_empty_total"].labels == set()
