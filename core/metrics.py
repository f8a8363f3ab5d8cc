"""Prometheus metrics shared by the services (one registry per process; a Celery worker sums its
pool processes through prometheus_client's multiprocess mode, see `serve_multiprocess`).

Counters are declared without the `_total` suffix: prometheus_client appends it. The hot paths
(producer per frame, stream stage per trade) never touch a metric: they count in plain ints and
bring the metrics up to date once per batch. docs/OBSERVABILITY.md lists every metric.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from functools import cache

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

# -- producer ------------------------------------------------------------------------------------
TRADES_INGESTED = Counter(
    "alphaplus_trades_ingested", "Trades validated and handed to Kafka", ["source", "symbol"]
)
DEAD_LETTERS = Counter(
    "alphaplus_dead_letters", "Inputs rejected to the dead-letter topic", ["source", "reason"]
)
DUPLICATES = Counter(
    "alphaplus_duplicate_trades", "Trades dropped as already seen (same trade id)", ["source"]
)
TRADE_GAPS = Counter("alphaplus_trade_gaps", "Trade-id gaps detected", ["source", "symbol"])
MISSING_TRADES = Counter(
    "alphaplus_missing_trades", "Trade ids missing inside detected gaps", ["source", "symbol"]
)
KAFKA_DELIVERY_ERRORS = Counter(
    "alphaplus_kafka_delivery_errors", "Kafka deliveries that failed (then retried)", ["topic"]
)
WS_RECONNECTS = Counter(
    "alphaplus_ws_reconnects", "Exchange WebSocket reconnects", ["reason"]
)

# -- stream stage ----------------------------------------------------------------------------------
STREAM_TRADES = Counter(
    "alphaplus_stream_trades", "Trades the stream stage applied to candles", ["ns"])
STREAM_DROPPED = Counter(
    "alphaplus_stream_trades_dropped",
    "Messages the stream stage did not apply (duplicate trade id, late past every held "
    "candle, rejected as malformed)", ["ns", "reason"])
STREAM_CANDLES_CLOSED = Counter(
    "alphaplus_stream_candles_closed", "Candles closed (or amended) by the stream stage",
    ["ns", "timeframe"])
STREAM_CONSUMER_LAG = Gauge(
    "alphaplus_stream_consumer_lag",
    "Messages between the stream consumer's position and the partition's high watermark",
    ["topic", "partition"])


# The stream stage's two unlabelled histograms are made on first use: made at import, they
# would be exported (empty) by every process that imports this module, Celery workers too.
@cache
def stream_candle_latency() -> Histogram:
    # From a trade's own time to its live candle's publish: includes the exchange and the
    # producer, so for history (replays, CSV imports) it measures the age of the data.
    return Histogram(
        "alphaplus_stream_candle_latency_seconds",
        "Trade time to its live candle published in Redis (newest trade of each symbol "
        "published)",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))


@cache
def stream_batch() -> Histogram:
    return Histogram(
        "alphaplus_stream_batch_seconds", "Busy time of the stream stage per poll batch",
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))


# -- Celery worker ---------------------------------------------------------------------------------
TASK_DURATION = Histogram(
    "alphaplus_task_duration_seconds", "Run time of a Celery task (each attempt)", ["task"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0))
TASKS = Counter(
    "alphaplus_tasks", "Celery task attempts by outcome (succeeded, failed, retried)",
    ["task", "outcome"])
DB_ROWS_WRITTEN = Counter(
    "alphaplus_db_rows_written", "Rows the workers wrote to PostgreSQL", ["table"])

# -- API -----------------------------------------------------------------------------------------
API_ERRORS = Counter(
    "alphaplus_api_errors", "API error responses from its exception handlers", ["status"])

# -- every process ---------------------------------------------------------------------------------
LOG_ERRORS = Counter(
    "alphaplus_log_errors", "Log records at ERROR or above", ["process"])

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Private multiprocess directories of Celery workers (removed when the worker stops).
WORKER_DIR_PREFIX = "alphaplus-worker-metrics-"


def serve(port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
          ) -> bool:
    """Expose this process's metrics (or `registry`'s) on `port` (0 = off). A port that is
    taken is logged as an error, not raised: metrics are not worth stopping the pipeline for
    (and `alphaplus up` gives every child the same environment)."""
    if not port:
        return False
    try:
        start_http_server(port, addr=host, registry=registry or REGISTRY)
    except OSError as exc:
        logging.getLogger(__name__).error(
            "cannot serve metrics on %s:%d (%s); this process exports none", host, port, exc)
        return False
    return True


def fresh_multiprocess_dir(prefix: str = "alphaplus-metrics-") -> str:
    """The directory of this process's multiprocess metric files, empty: the one named by
    PROMETHEUS_MULTIPROC_DIR (its old files deleted: counters of an earlier run would be summed
    into this one's), else a new private temporary one. Sets the variable for the children."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for old in glob.glob(os.path.join(path, "*.db")):
            os.remove(old)
    else:
        path = tempfile.mkdtemp(prefix=prefix)
    os.environ[MULTIPROC_ENV] = path
    return path


def serve_multiprocess(port: int, path: str, host: str = "127.0.0.1") -> bool:
    """Expose the sum over every process writing to `path` (a Celery worker and its pool)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return serve(port, host, registry)


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
