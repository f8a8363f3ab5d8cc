"""One `/ws` connection: its subscriptions, its bounded queue and how messages reach it.

The fan-out never waits for a client. When a client is idle (nothing queued, nothing in
flight) the fan-out writes the message itself, at once, with no task switch:

* direct (api/ws/direct.py, under uvicorn's websockets-sansio): the update's frame, built once
  for every client, goes to the client's transport in one `write`, unless the transport is
  above its high-water mark (the client is not reading): then the message is queued and the
  client's own task, the drainer, writes what queued up as the transport drains, and ends
  when the queue is empty;
* ASGI (any other server, or a connection with compression): the fan-out starts the send
  itself; with uvicorn a send to a socket that takes data completes without suspending. A send
  that has to wait (the socket's buffers are full) is finished by the drainer, which then also
  sends whatever queued up meanwhile.

Either way, answers to requests and the closes the hub decides on take the same line as the
pushed messages, so their order holds (a SUBSCRIBE's answer before its streams' messages);
closes themselves always go through ASGI.

Latest-wins (kline, indicators): a newer update of the same candle replaces the text of the
queued one of its stream in place, so it keeps its place in the line and nothing older of its
stream is ever sent after it; an update of another candle queues behind it (each candle's final
state is delivered, see api/ws/fanout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.ws.direct import DirectWriter, text_frame
from api.ws.limits import TokenBucket, Violations
from api.ws.protocol import CATEGORY_NAMES
from api.ws.stats import HubStats

log = logging.getLogger(__name__)

CONTROL = -1  # the category of answers and closes: not counted in queue sizes, never dropped
#: What a send to a client that went away raises (Starlette turns uvicorn's OSError into
#: WebSocketDisconnect, and refuses sends after a close with a RuntimeError).
GONE = (WebSocketDisconnect, RuntimeError, OSError)


class Entry:
    __slots__ = ("candle", "category", "frame", "received", "stream", "text")

    def __init__(self, stream: str | None, text: str, frame: bytes | None,
                 received: float | None, category: int, candle: int | None = None) -> None:
        self.stream = stream
        self.text = text
        self.frame = frame  # the text's frame, for a direct client (None for a close)
        self.received = received  # when the listener got the update; None for answers
        self.category = category
        self.candle = candle  # the open_time of a latest-wins update, else None


class Close(Entry):
    """A close that waits its turn behind what is queued (after a violation's error answer)."""

    __slots__ = ("code",)

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(None, reason, None, None, CONTROL)
        self.code = code


async def finish(coro: Coroutine[Any, Any, None], yielded: object) -> None:
    """Run `coro` on from where its first step stopped, `yielded` being what that step gave
    up: what asyncio's Task does with every step of a coroutine, done here for one the
    fan-out started synchronously."""
    try:
        while True:
            if isinstance(yielded, asyncio.Future):
                yielded._asyncio_future_blocking = False  # as Task does before waiting on it
                await asyncio.wait({yielded})
            else:
                await asyncio.sleep(0)  # a bare `yield`: just give the loop a turn
            yielded = coro.send(None)
    except StopIteration:
        return
    finally:
        coro.close()  # a no-op once it ended; if we were cancelled, unwinds it


def deliver(clients: tuple[Client, ...], stream: str, text: str, frame: bytes,
            received: float, category: int, candle: int | None, stats: HubStats) -> None:
    """One update to its subscribers (`Client.push` each), with the common case inlined: an
    idle direct client whose transport takes data gets the frame written here, and those
    writes are recorded once for the whole fan-out, at the time of the last one (per client,
    the method call, clock read and counting would add a microsecond or two to each
    message)."""
    written = 0
    for client in clients:
        direct = client.direct
        if client.drainer is None and direct is not None and direct.ready():
            direct.transport.write(frame)
            written += 1
        else:
            client.push(stream, text, frame, received, category, candle)
    if written:
        stats.record(time.monotonic() - received, written)


class Client:
    __slots__ = ("bucket", "close_kind", "close_reason", "closer", "counts", "direct",
                 "drainer", "full_since", "pending", "queue", "queue_size", "send_started",
                 "stats", "streams", "violations", "ws")

    def __init__(self, ws: WebSocket, stats: HubStats, queue_size: int,
                 requests_per_s: float, direct: DirectWriter | None = None) -> None:
        self.ws = ws
        self.direct = direct  # None: messages go through ASGI `send`
        self.stats = stats
        self.queue_size = max(1, queue_size)
        self.streams: set[str] = set()
        self.queue: deque[Entry] = deque()
        self.pending: dict[str, Entry] = {}  # latest-wins stream -> its newest queued entry
        self.counts = [0] * len(CATEGORY_NAMES)
        # Set while a send is in flight or the queue is not empty (never idle with a queue).
        self.drainer: asyncio.Task[None] | None = None
        self.full_since: float | None = None  # since when the queue has been full
        # Since when the socket has not been taking data: the send that is waiting began, or
        # the direct drainer began waiting for the transport to drain.
        self.send_started: float | None = None
        self.bucket = TokenBucket(requests_per_s, requests_per_s, time.monotonic())
        self.violations = Violations()
        # Set once the server decided to close it: why, and the disconnect label of that.
        self.close_reason: str | None = None
        self.close_kind: str | None = None
        self.closer: asyncio.Task[None] | None = None

    # -- the fan-out side: synchronous, never waits
    def push(self, stream: str, text: str, frame: bytes, received: float, category: int,
             candle: int | None) -> None:
        """`frame`: `text` as a frame (api/ws/direct.py `text_frame`); `candle`: the
        open_time of a latest-wins update (None: never replaced)."""
        if self.drainer is None:
            direct = self.direct
            if direct is None:
                self._send_now(text, received)
                return
            if direct.ready():
                direct.transport.write(frame)
                self.stats.record(time.monotonic() - received)
                return
            if not direct.is_open():
                return  # closing: the reading side sees the disconnect and cleans up
            self._start_drainer()  # it waits for the transport; the message queues below
        if candle is not None:
            queued = self.pending.get(stream)
            if queued is not None and queued.candle == candle:
                queued.text = text
                queued.frame = frame
                queued.received = received
                self.stats.coalesced += 1
                return
        queue = self.queue
        if len(queue) >= self.queue_size:
            if self.full_since is None:
                self.full_since = time.monotonic()
            self.stats.dropped += 1
            return
        entry = Entry(stream, text, frame, received, category, candle)
        queue.append(entry)
        if candle is not None:
            self.pending[stream] = entry
        self.counts[category] += 1

    def _send_now(self, text: str, received: float) -> None:
        coro = self.ws.send({"type": "websocket.send", "text": text})
        try:
            yielded = coro.send(None)
        except StopIteration:
            self.stats.record(time.monotonic() - received)
            return
        except GONE:
            return  # the reading side sees the disconnect and cleans up
        except Exception:
            self.stats.errors += 1
            log.exception("sending to a /ws client failed")
            return
        self.send_started = time.monotonic()
        self.drainer = asyncio.create_task(self._drain(coro, yielded, received))

    def answer(self, text: str) -> None:
        """An answer to a request: queued behind what is already there, never dropped (the
        request rate limit bounds them)."""
        direct = self.direct
        if direct is None:
            self._control(Entry(None, text, None, None, CONTROL))
            return
        frame = text_frame(text.encode())
        if self.drainer is None and direct.ready():
            direct.transport.write(frame)
        elif direct.is_open():
            self._control(Entry(None, text, frame, None, CONTROL))

    def close_after_queue(self, code: int, reason: str, kind: str) -> None:
        self.close_reason, self.close_kind = reason, kind
        self._control(Close(code, reason))

    def _control(self, entry: Entry) -> None:
        self.queue.append(entry)
        if self.drainer is None:
            self._start_drainer()

    def _start_drainer(self) -> None:
        self.drainer = asyncio.create_task(
            self._drain() if self.direct is None else self._drain_direct(self.direct))

    def unqueue_stream(self, stream: str) -> None:
        """Forget what is queued for `stream` (after UNSUBSCRIBE)."""
        if any(e.stream == stream for e in self.queue):
            entries = list(self.queue)
            self.queue.clear()
            for e in entries:
                if e.stream == stream:
                    self.counts[e.category] -= 1
                else:
                    self.queue.append(e)
            self.pending.pop(stream, None)
            if len(self.queue) < self.queue_size:
                self.full_since = None

    # -- slowness
    def stalled_for(self, now: float) -> float | None:
        """How long this client has been holding things up (None: it is not): its queue full,
        or one send to its socket not returning (a reader that stopped reading: its socket
        buffers filled)."""
        since = [t for t in (self.full_since, self.send_started) if t is not None]
        return now - min(since) if since else None

    def stall_reason(self, now: float) -> str:
        parts = []
        if self.send_started is not None:
            parts.append(f"socket not reading for {now - self.send_started:.1f} s")
        if self.full_since is not None:
            parts.append(f"queue full for {now - self.full_since:.1f} s")
        return ", ".join(parts)

    # -- the drainer task
    async def _drain(self, coro: Coroutine[Any, Any, None] | None = None,
                     yielded: object = None, received: float | None = None) -> None:
        send = self.ws.send
        stats = self.stats
        queue = self.queue
        try:
            if coro is not None:
                await finish(coro, yielded)
                self.send_started = None
                if received is not None:
                    stats.record(time.monotonic() - received)
            while queue:
                entry = self._take()
                if isinstance(entry, Close):
                    await self.ws.close(entry.code, entry.text)
                    return
                self.send_started = time.monotonic()
                await send({"type": "websocket.send", "text": entry.text})
                self.send_started = None
                if entry.received is not None:
                    stats.record(time.monotonic() - entry.received)
        except GONE:
            return  # the reading side sees the disconnect and cleans up
        finally:
            self.send_started = None
            self.drainer = None

    def _take(self) -> Entry:
        """The next entry of the queue, with the bookkeeping of its leaving."""
        queue = self.queue
        entry = queue.popleft()
        stream = entry.stream
        if stream is not None:
            self.counts[entry.category] -= 1
            if self.pending.get(stream) is entry:
                del self.pending[stream]
            if self.full_since is not None and len(queue) < self.queue_size:
                self.full_since = None
        return entry

    async def _drain_direct(self, direct: DirectWriter) -> None:
        """Write what queued while the transport was full, a frame at a time while the
        transport takes them (below its high-water mark: the rest stays in the queue, where
        latest-wins still applies, and where the protocol layer's pongs and pings do not wait
        behind it), waiting for it to drain in between, until the queue is empty."""
        queue = self.queue
        stats = self.stats
        write = direct.transport.write
        try:
            while queue:
                if not direct.ready():
                    if not direct.is_open():
                        return  # the reading side sees the disconnect and cleans up
                    if self.send_started is None:
                        self.send_started = time.monotonic()
                    await direct.wait_writable()
                    continue
                self.send_started = None
                entry = self._take()
                if isinstance(entry, Close):
                    await self.ws.close(entry.code, entry.text)
                    return
                assert entry.frame is not None
                write(entry.frame)
                if entry.received is not None:
                    stats.record(time.monotonic() - entry.received)
        except GONE:
            return
        finally:
            self.send_started = None
            self.drainer = None

    def close_soon(self, code: int, reason: str, kind: str) -> None:
        """Stop writing and close, without waiting for what is queued."""
        self.close_reason, self.close_kind = reason, kind
        self.closer = asyncio.create_task(self._close_now(code, reason))

    async def _close_now(self, code: int, reason: str) -> None:
        # For a client that stopped reading, the close frame goes once its socket accepts
        # data again (or never: uvicorn's keepalive ping times out and drops it).
        drainer = self.drainer
        if drainer is not None and not drainer.done():
            drainer.cancel()
            await asyncio.wait({drainer})
        self.queue.clear()
        self.pending.clear()
        self.counts = [0] * len(CATEGORY_NAMES)
        self.drainer = asyncio.current_task()  # no direct send may start meanwhile
        with contextlib.suppress(*GONE):
            await self.ws.close(code, reason)

    def cancel(self) -> None:
        """The connection ended: stop whatever is still trying to write to it."""
        for task in (self.drainer, self.closer):
            if task is not None and not task.done():
                task.cancel()
