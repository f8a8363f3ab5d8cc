"""The metrics the Grafana dashboard may use, per process kind: the one list the dashboard test,
the exported-metrics test and the observability work agree on. Change it here only.

Names are as Prometheus stores them: counters end in `_total`; a histogram is listed by its base
name and queried as `<name>_bucket`, `_sum` and `_count`.

`pending=True` marks a metric the dashboard already shows but no process exports yet: the
exported-metrics test then expects it to be missing (a strict xfail, which turns red once it is
exported, so that the mark gets removed here). None is pending today: with the observability
work (issue 6, part 2) every metric below is exported by its process kind.
"""

from __future__ import annotations

from dataclasses import dataclass

PROCESS_KINDS = ("producer", "stream", "worker", "api")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...] = ()
    pending: bool = False


CONTRACT: dict[str, tuple[Metric, ...]] = {
    "producer": (
        Metric("alphaplus_trades_ingested_total", "counter", ("source", "symbol")),
        Metric("alphaplus_dead_letters_total", "counter", ("source", "reason")),
        Metric("alphaplus_duplicate_trades_total", "counter", ("source",)),
        Metric("alphaplus_trade_gaps_total", "counter", ("source", "symbol")),
        Metric("alphaplus_missing_trades_total", "counter", ("source", "symbol")),
        Metric("alphaplus_kafka_delivery_errors_total", "counter", ("topic",)),
        Metric("alphaplus_ws_reconnects_total", "counter", ("reason",)),
    ),
    "stream": (
        Metric("alphaplus_stream_trades_total", "counter", ("ns",)),
        Metric("alphaplus_stream_trades_dropped_total", "counter", ("ns", "reason")),
        Metric("alphaplus_stream_candles_closed_total", "counter", ("ns", "timeframe")),
        Metric("alphaplus_stream_consumer_lag", "gauge", ("topic", "partition")),
        Metric("alphaplus_stream_candle_latency_seconds", "histogram"),
        Metric("alphaplus_stream_batch_seconds", "histogram"),
    ),
    "worker": (
        Metric("alphaplus_task_duration_seconds", "histogram", ("task",)),
        Metric("alphaplus_tasks_total", "counter", ("task", "outcome")),
        Metric("alphaplus_db_rows_written_total", "counter", ("table",)),
    ),
    "api": (
        Metric("alphaplus_api_cache_requests_total", "counter", ("ns", "layer")),
        Metric("alphaplus_api_cache_size", "gauge", ("ns",)),
        Metric("alphaplus_api_cache_redis_enabled", "gauge", ("ns",)),
        Metric("alphaplus_ws_clients", "gauge"),
        Metric("alphaplus_ws_queued_messages", "gauge", ("category",)),
        Metric("alphaplus_ws_messages_sent_total", "counter"),
        Metric("alphaplus_ws_send_latency_seconds", "histogram"),
        Metric("alphaplus_ws_disconnects_total", "counter", ("reason",)),
        Metric("alphaplus_ws_limit_violations_total", "counter", ("limit",)),
        Metric("alphaplus_api_errors_total", "counter", ("status",)),
    ),
}

#: Exported by every process kind.
EVERY_PROCESS: tuple[Metric, ...] = (
    Metric("alphaplus_log_errors_total", "counter", ("process",)),
)

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def expected(kind: str) -> tuple[Metric, ...]:
    return CONTRACT[kind] + EVERY_PROCESS


def all_metrics() -> dict[str, Metric]:
    """Every contract metric by name (one metric may be exported by several kinds)."""
    out: dict[str, Metric] = {}
    for kind in PROCESS_KINDS:
        for metric in expected(kind):
            out[metric.name] = metric
    return out


def contract_name(series: str, metrics: dict[str, Metric]) -> str | None:
    """The contract metric a series name in a query belongs to (`x_bucket` -> `x` for a
    histogram `x`), or None when it is none of them."""
    if series in metrics and metrics[series].kind != "histogram":
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and base in metrics and metrics[base].kind == "histogram":
            return base
    return None
