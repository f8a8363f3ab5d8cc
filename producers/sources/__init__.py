"""Trade sources. Each turns some input into calls on an `Ingestor` until done or stopped.

`--source` specs: `binance`, `recording:PATH[,PATH...]`, `csv:PATH[,PATH...]`, `synthetic`.
"""

from __future__ import annotations

import threading
from typing import Protocol

from core.exceptions import ConfigError
from core.settings import Settings
from producers.ingest import Ingestor

SOURCE_KINDS = ("binance", "recording", "csv", "synthetic")


class Source(Protocol):
    #: Label of this source in dead letters, gap records and metrics.
    name: str

    def run(self, ingest: Ingestor, stop: threading.Event) -> None:
        """Feed `ingest` until the input ends or `stop` is set."""
        ...


def split_spec(spec: str) -> tuple[str, list[str]]:
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in SOURCE_KINDS:
        raise ConfigError(
            f"unknown source {spec!r}; use binance, recording:PATH, csv:PATH or synthetic"
        )
    paths = [p for p in rest.split(",") if p] if rest else []
    if kind in ("recording", "csv") and not paths:
        raise ConfigError(f"source {kind} needs a path: --source {kind}:PATH[,PATH...]")
    return kind, paths


def build_source(spec: str, settings: Settings, speed: float | None = None,
                 rate: float | None = None, seed: int = 1) -> Source:
    """The source for a `--source` spec. `speed` paces recordings (None = as fast as
    possible); `rate` is the synthetic source's trades per second (None = as fast as possible).
    """
    kind, paths = split_spec(spec)
    if kind == "binance":
        from producers.sources.binance_ws import BinanceWebSocketSource

        return BinanceWebSocketSource.from_settings(settings)
    if kind == "recording":
        from producers.sources.recording import RecordingSource

        return RecordingSource(paths, speed=speed)
    if kind == "csv":
        from producers.sources.csv_import import CsvSource

        return CsvSource(paths, market=settings.market)
    from producers.sources.synthetic import SyntheticSource

    return SyntheticSource(settings.symbols, rate=rate, seed=seed, market=settings.market)
