"""Running one source into Kafka: the body of `alphaplus produce`."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from core.kafka import recreate_topics
from core.settings import Settings
from producers.ingest import Ingestor, IngestStats
from producers.sink import KafkaSink
from producers.sources import Source

log = logging.getLogger(__name__)


def make_sink(settings: Settings) -> KafkaSink:
    topics = [settings.topic_trades, settings.topic_deadletter, settings.topic_gaps]
    recreate_topics(settings.kafka_bootstrap, topics, settings.kafka_partitions, timeout=15)
    return KafkaSink(
        settings.kafka_bootstrap,
        settings.topic_trades,
        settings.topic_deadletter,
        settings.topic_gaps,
        compression=settings.kafka_compression,
        producer_overrides={"linger.ms": settings.kafka_linger_ms},
        # Also after a broker restart: the producer that replaces the lost one needs them.
        on_reset=functools.partial(recreate_topics, settings.kafka_bootstrap, topics,
                                   settings.kafka_partitions),
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM, so sources stop cleanly and the sink flushes."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def produce(settings: Settings, source: Source, stop: threading.Event) -> IngestStats:
    """Run `source` into Kafka until it ends or `stop` is set; flush before returning."""
    sink = make_sink(settings)
    ingest = Ingestor(sink, settings.market, settings.symbols, source.name)
    started = time.monotonic()
    try:
        source.run(ingest, stop)
    finally:
        ingest.close()
    elapsed = time.monotonic() - started
    stats = ingest.stats
    log.info(
        "%s: %d trades in %.1fs, %d dead letters %s, %d duplicates dropped, %d gaps "
        "(%d missing), %d non-trade frames skipped",
        source.name, stats.trades, elapsed, stats.dead_letters, dict(stats.rejected),
        stats.duplicates, stats.gaps, stats.missing, stats.skipped,
    )
    return stats
