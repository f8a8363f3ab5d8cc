"""The live Binance source: combined-stream WebSocket connections into the Ingestor.

`run_streams` is the connection runner shared with `alphaplus record`: it splits the streams
over as many connections as Binance's per-connection limit needs and keeps each one up (see
`ws_switchover` for reconnects and the loss-free switch-over). Frames are handed over raw with
their receive time; validation, deduplication and gap reporting are the Ingestor's job, so bad
input never stops the source.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from core.exceptions import ConfigError, InvalidInput
from core.settings import DEFAULT_WS_URL, Settings
from producers.ingest import Ingestor
from producers.sources.ws_switchover import FrameHandler, StreamConnection, WsOptions

log = logging.getLogger(__name__)

# Binance: "A single connection can listen to a maximum of 1024 streams."
MAX_STREAMS_PER_CONNECTION = 1024
TICK_SECONDS = 1.0
STOP_POLL_SECONDS = 0.05


def stream_names(symbols: Sequence[str], kinds: Sequence[str]) -> list[str]:
    """`btcusdt@trade` style names: lowercase symbol, the kind as Binance spells it."""
    return [f"{symbol.lower()}@{kind}" for symbol in symbols for kind in kinds]


def combined_urls(
    base_url: str,
    streams: Sequence[str],
    per_connection: int = MAX_STREAMS_PER_CONNECTION,
    microseconds: bool = False,
) -> list[tuple[str, tuple[str, ...]]]:
    """(URL, its streams) per connection, at most `per_connection` streams each."""
    if per_connection < 1:
        raise ValueError("per_connection must be >= 1")
    if not streams:
        raise ConfigError("no streams to subscribe to")
    base = base_url.rstrip("/")
    try:
        parse_uri(base)
    except InvalidURI as exc:
        raise ConfigError(f"not a WebSocket URL: {base_url!r} ({exc})") from None
    query = "&timeUnit=MICROSECOND" if microseconds else ""
    out = []
    for start in range(0, len(streams), per_connection):
        group = tuple(streams[start:start + per_connection])
        out.append((f"{base}/stream?streams={'/'.join(group)}{query}", group))
    return out


async def _run_streams(
    connections: Sequence[tuple[str, Sequence[str]]],
    handler: FrameHandler,
    stop: threading.Event,
    options: WsOptions,
    label: str,
) -> None:
    stopping = asyncio.Event()

    async def watch_stop() -> None:
        # `stop` is a threading.Event set from a signal handler or another thread; polling it
        # is cheap and keeps no thread blocked after the loop ends.
        next_tick = time.monotonic() + TICK_SECONDS
        while not stop.is_set():
            await asyncio.sleep(STOP_POLL_SECONDS)
            if time.monotonic() >= next_tick:
                next_tick += TICK_SECONDS
                handler.tick()
        stopping.set()

    many = len(connections) > 1
    async with asyncio.TaskGroup() as group:
        group.create_task(watch_stop())
        for n, (url, streams) in enumerate(connections):
            name = f"{label}[{n}]" if many else label
            conn = StreamConnection(url, streams, handler, options, stopping, name)
            group.create_task(conn.run())


def run_streams(
    connections: Sequence[tuple[str, Sequence[str]]],
    handler: FrameHandler,
    stop: threading.Event,
    options: WsOptions | None = None,
    label: str = "binance-ws",
) -> None:
    """Feed `handler` from every connection until `stop` is set (blocking)."""
    asyncio.run(_run_streams(connections, handler, stop, options or WsOptions(), label))


class IngestHandler:
    """Frames into an Ingestor; the trade ids it has accepted drive the switch-over."""

    def __init__(self, ingest: Ingestor) -> None:
        self.ingest = ingest
        self._last_ids = ingest.tracker.last_id
        self._frame = ingest.frame

    def frame(self, raw: bytes, recv_ns: int) -> None:
        try:
            self._frame(raw, recv_ns // 1_000_000)
        except Exception as exc:
            # Whatever the input was, it must not kill the source. The parser names every
            # defect it knows; this catches the ones it does not. If the sink itself is broken,
            # reject() raises too and the source stops, as it should.
            log.exception("unexpected error ingesting a frame")
            self.ingest.reject(raw, InvalidInput("bad_schema", f"{type(exc).__name__}: {exc}"))

    def last_trade_id(self, stream: str) -> int | None:
        return self._last_ids.get(stream.partition("@")[0].upper())

    def tick(self) -> None:
        self.ingest.sink.poll(0)
        self.ingest.flush_metrics()


class BinanceWebSocketSource:
    name = "binance-ws"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        base_url: str = DEFAULT_WS_URL["spot"],
        stream: str = "trade",
        microseconds: bool = False,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        healthy_after: float = 30.0,
        max_connection_age: float = 23.5 * 3600,
        overlap_timeout: float = 10.0,
        open_timeout: float = 10.0,
    ) -> None:
        if stream not in ("trade", "aggTrade"):
            raise ConfigError(f"stream must be trade or aggTrade, not {stream!r}")
        self.streams = stream_names(symbols, [stream])
        self.connections = combined_urls(base_url, self.streams, max_streams_per_connection,
                                         microseconds)
        self.options = WsOptions(
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            healthy_after=healthy_after,
            max_connection_age=max_connection_age,
            overlap_timeout=overlap_timeout,
            open_timeout=open_timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BinanceWebSocketSource:
        """The source `settings` describe; `overrides` are constructor keywords (tests)."""
        microseconds = settings.binance_microseconds
        if microseconds and settings.market != "spot":
            log.warning("ALPHAPLUS_BINANCE_MICROSECONDS applies to spot only; ignored for %s",
                        settings.market)
            microseconds = False
        return cls(
            settings.symbols,
            base_url=settings.ws_base_url,
            stream=settings.binance_stream,
            microseconds=microseconds,
            **overrides,
        )

    def run(self, ingest: Ingestor, stop: threading.Event) -> None:
        log.info("%s: %d streams over %d connection(s), first URL %s", self.name,
                 len(self.streams), len(self.connections), self.connections[0][0][:200])
        run_streams(self.connections, IngestHandler(ingest), stop, self.options, self.name)
