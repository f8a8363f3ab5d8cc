"""One Binance combined-stream URL kept connected: reconnects, and switch-over without loss.

A `StreamConnection` owns one URL (up to 1,024 streams). When the connection drops it
reconnects with exponential backoff and full jitter; trades sent while it was down are lost at
the exchange and show up downstream as a gap record, which is the truth.

Planned replacements (the 24-hour connection limit, a `serverShutdown` event) must not lose or
double anything, so they overlap two connections: the new one is opened while the old one keeps
feeding the handler, and the new one's frames are buffered. Once, for every trade stream that
has traded, the buffer holds a trade id at or below the last id delivered from the old
connection + 1, everything after that id is known to be in the buffer: the old connection is
retired and the buffer drained into the handler, whose continuity tracking drops the overlap as
duplicates. If the old connection ends first, the new one takes over at once; if the overlap
never shows (an illiquid symbol, a slow server) the switch happens after `overlap_timeout`. A
trade lost either way is still reported as a gap. When the new connection cannot be opened, the
old one stays in service and the attempt is retried with backoff. Only trade ids prove the
overlap: other streams (book tickers, depth) ride along on a best-effort basis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from core import metrics

log = logging.getLogger(__name__)

SHUTDOWN_MARK = b"serverShutdown"
TRADE_ID_FIELDS = {"trade": "t", "aggTrade": "a"}
# What a connection attempt raises when the exchange is unreachable, refuses or times out.
CONNECT_ERRORS = (OSError, TimeoutError, WebSocketException)


class FrameHandler(Protocol):
    """Where frames go; runs on the event loop, so each call must be quick."""

    def frame(self, raw: bytes, recv_ns: int) -> None: ...

    def last_trade_id(self, stream: str) -> int | None:
        """The last trade id delivered for `stream` (e.g. "btcusdt@trade"), if any."""
        ...

    def tick(self) -> None:
        """Called about once a second: housekeeping such as polling a Kafka producer."""
        ...


@dataclass(frozen=True)
class WsOptions:
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # A connection that stayed up this long resets the backoff.
    healthy_after: float = 30.0
    # Binance closes a connection at 24 h; switch well before.
    max_connection_age: float = 23.5 * 3600
    overlap_timeout: float = 10.0
    open_timeout: float = 10.0
    close_timeout: float = 5.0


class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 60))
        self.attempt += 1
        return random.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def is_shutdown_event(raw: bytes) -> bool:
    """True for a `serverShutdown` event: bare on streams, wrapped in "event" on the WS API."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if type(obj) is not dict:
        return False
    return any(
        type(part) is dict and part.get("e") == "serverShutdown"
        for part in (obj, obj.get("event"), obj.get("data"))
    )


def stream_sequence(
    raw: bytes, fields: Mapping[str, str] = TRADE_ID_FIELDS
) -> tuple[str, int] | None:
    """(stream, sequence number) of a frame whose stream kind numbers its frames (by default
    the trade id of a trade or aggTrade frame), None for anything else."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    stream, data = obj.get("stream"), obj.get("data")
    if type(stream) is not str or type(data) is not dict:
        return None
    # "btcusdt@depth@100ms" -> "depth"
    field = fields.get(stream.split("@")[1] if "@" in stream else "")
    value = data.get(field) if field else None
    return (stream, value) if type(value) is int else None


async def wait_any(
    events: Sequence[asyncio.Event],
    tasks: Sequence[asyncio.Future[Any]],
    timeout: float | None,
) -> None:
    """Return when any event is set, any task is done, or after `timeout`."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait([*waiters, *tasks], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class _Connection:
    """One open WebSocket and the task reading it, live or buffering."""

    def __init__(self, ws: ClientConnection, number: int, handler: FrameHandler,
                 buffering: bool) -> None:
        self.ws = ws
        self.number = number
        self.handler = handler
        self.opened = time.monotonic()
        self.buffer: list[tuple[bytes, int]] | None = [] if buffering else None
        self.first_ids: dict[str, int] = {}
        self.retired = False
        self.shutdown = asyncio.Event()
        # Set on every frame while a switch-over waits for the overlap.
        self.activity: asyncio.Event | None = None
        self.task = asyncio.create_task(self._read(), name=f"ws-read-{number}")

    async def _read(self) -> None:
        ws = self.ws
        while True:
            message = await ws.recv(decode=False)
            recv_ns = time.time_ns()
            if self.retired:
                return
            raw = message if isinstance(message, bytes) else message.encode()
            # The substring test keeps the full parse off the per-frame path.
            if SHUTDOWN_MARK in raw and is_shutdown_event(raw):
                log.info("connection %d: the server announced a shutdown: %s", self.number,
                         raw[:200].decode("utf-8", "replace"))
                self.shutdown.set()
            elif self.buffer is not None:
                self.buffer.append((raw, recv_ns))
                key = stream_sequence(raw)
                if key is not None and key[1] < self.first_ids.get(key[0], math.inf):
                    self.first_ids[key[0]] = key[1]
            else:
                self.handler.frame(raw, recv_ns)
            if self.activity is not None:
                self.activity.set()

    def outcome(self) -> tuple[str, str]:
        """(reason label, detail) of a finished reader; re-raises a handler's error."""
        if self.task.cancelled():
            return "cancelled", ""
        exc = self.task.exception()
        if exc is None:
            return "retired", ""
        if not isinstance(exc, ConnectionClosed):
            raise exc
        code = self.ws.close_code
        detail = f"code {code} {self.ws.close_reason or ''}".rstrip()
        return ("closed" if isinstance(exc, ConnectionClosedOK) else "dropped"), detail


class StreamConnection:
    """Keeps `url` connected for `handler` until `stopping` is set."""

    def __init__(self, url: str, streams: Sequence[str], handler: FrameHandler,
                 options: WsOptions, stopping: asyncio.Event, label: str) -> None:
        self.url = url
        self.trade_streams = [s for s in streams if s.rpartition("@")[2] in TRADE_ID_FIELDS]
        self.handler = handler
        self.options = options
        self.stopping = stopping
        self.label = label
        self.opened = 0
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        backoff = Backoff(self.options.backoff_base, self.options.backoff_cap)
        live: _Connection | None = None
        try:
            while not self.stopping.is_set():
                if live is None:
                    try:
                        live = await self._open(buffering=False)
                    except CONNECT_ERRORS as exc:
                        await self._pause(backoff, "connect_failed", _describe(exc))
                        continue
                    if live is None:
                        break
                switch = await self._watch(live)
                if switch is not None:
                    replacement = await self._switch_over(live, switch)
                    if replacement is not None:
                        live = replacement
                        continue
                if self.stopping.is_set():
                    break
                reason, detail = live.outcome()
                if time.monotonic() - live.opened >= self.options.healthy_after:
                    backoff.reset()
                self._retire(live)
                live = None
                await self._pause(backoff, reason, detail)
        finally:
            if live is not None:
                self._retire(live)
            if self._closing:
                await asyncio.gather(*self._closing, return_exceptions=True)

    async def _open(self, buffering: bool) -> _Connection | None:
        """A new connection, None when stopping first; raises one of CONNECT_ERRORS."""

        async def attempt() -> ClientConnection:
            # Keepalive stays at the library's defaults: it answers Binance's pings by itself
            # and its own pings detect a dead TCP connection.
            return await connect(
                self.url,
                open_timeout=self.options.open_timeout,
                close_timeout=self.options.close_timeout,
            )

        # A handshake can take up to open_timeout; a stop must not wait for it.
        task = asyncio.create_task(attempt())
        try:
            await wait_any([self.stopping], [task], None)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        if task.cancelled():
            return None
        ws = task.result()
        self.opened += 1
        log.log(logging.INFO if self.opened == 1 else logging.DEBUG,
                "%s: connection %d open", self.label, self.opened)
        return _Connection(ws, self.opened, self.handler, buffering)

    async def _watch(self, live: _Connection) -> str | None:
        """Wait until `live` must be replaced (the reason) or ended / stopping (None)."""
        while True:
            if live.task.done() or self.stopping.is_set():
                return None
            if live.shutdown.is_set():
                return "server_shutdown"
            remaining = live.opened + self.options.max_connection_age - time.monotonic()
            if remaining <= 0:
                return "max_age"
            await wait_any([live.shutdown, self.stopping], [live.task], remaining)

    async def _pause(self, backoff: Backoff, reason: str, detail: str) -> None:
        delay = backoff.next_delay()
        metrics.WS_RECONNECTS.labels(reason).inc()
        log.warning("%s: %s (%s); reconnecting in %.2fs", self.label, reason, detail, delay)
        await wait_any([self.stopping], [], delay)

    async def _switch_over(self, old: _Connection, reason: str) -> _Connection | None:
        """The connection to continue on: a new one, `old` when stopping, or None when `old`
        ended before a replacement was ready (the caller then reconnects)."""
        metrics.WS_RECONNECTS.labels(reason).inc()
        log.debug("%s: switching over from connection %d (%s)", self.label, old.number, reason)
        started = time.monotonic()
        backoff = Backoff(self.options.backoff_base, self.options.backoff_cap)
        while True:
            try:
                opened = await self._open(buffering=True)
            except CONNECT_ERRORS as exc:
                if not await self._retry_later(backoff, old, _describe(exc)):
                    return None if old.task.done() else old
                continue
            if opened is None:
                return old
            new = opened
            why = await self._await_overlap(old, new)
            if why == "stopping":
                self._retire(new)
                return old
            if why == "new_ended":
                detail = new.outcome()[1]
                self._retire(new)
                if not await self._retry_later(backoff, old, f"it closed: {detail}"):
                    return None if old.task.done() else old
                continue
            break
        if why == "old_ended":
            old.outcome()  # a handler error must surface, not vanish with the old connection
        self._retire(old)
        # No await from here to the end of the drain, so the new connection's reader cannot
        # deliver a frame ahead of the buffered ones.
        buffered, new.buffer = new.buffer or [], None
        for raw, recv_ns in buffered:
            self.handler.frame(raw, recv_ns)
        log.info("%s: switched over (%s) from connection %d to %d in %.2fs: %s, %d buffered "
                 "frames drained", self.label, reason, old.number, new.number,
                 time.monotonic() - started, why.replace("_", " "), len(buffered))
        return new

    async def _retry_later(self, backoff: Backoff, old: _Connection, failure: str) -> bool:
        """Keep `old` and wait to try again; False if `old` ended or we are stopping."""
        delay = backoff.next_delay()
        log.warning("%s: switch-over connection failed (%s); keeping connection %d, retrying "
                    "in %.2fs", self.label, failure, old.number, delay)
        await wait_any([self.stopping], [old.task], delay)
        return not (old.task.done() or self.stopping.is_set())

    async def _await_overlap(self, old: _Connection, new: _Connection) -> str:
        activity = asyncio.Event()
        old.activity = new.activity = activity
        deadline = time.monotonic() + self.options.overlap_timeout
        try:
            while True:
                # A failed new connection is dropped even if it overlapped: the old one works.
                if new.task.done():
                    return "new_ended"
                if old.task.done():
                    return "old_ended"
                if self.stopping.is_set():
                    return "stopping"
                if self._overlaps(new):
                    return "overlap"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("%s: no overlap after %.1fs; switching anyway", self.label,
                                self.options.overlap_timeout)
                    return "overlap_timeout"
                activity.clear()
                await wait_any([activity, self.stopping], [old.task, new.task], remaining)
        finally:
            old.activity = new.activity = None

    def _overlaps(self, new: _Connection) -> bool:
        for stream in self.trade_streams:
            last = self.handler.last_trade_id(stream)
            if last is None:
                continue
            first = new.first_ids.get(stream)
            if first is None or first > last + 1:
                return False
        return True

    def _retire(self, conn: _Connection) -> None:
        """Stop delivering from `conn` now, and close it in the background."""
        conn.retired = True
        conn.task.cancel()
        task = asyncio.create_task(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: _Connection) -> None:
        await asyncio.wait([conn.task])
        if not conn.task.cancelled():
            conn.task.exception()  # retrieved: it was already handled or is irrelevant now
        await conn.ws.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
