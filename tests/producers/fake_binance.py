"""A local stand-in for Binance's combined-stream endpoint, playing genuine recorded frames.

`FakeBinance` is a real WebSocket server (127.0.0.1, a free port) on its own event loop in a
background thread, used from synchronous tests as a context manager. A client asks for
`/stream?streams=a/b`; it gets the recorded frames of those streams, in recorded order, paced
at `fps`. The recording is the exchange's timeline: every subscription (stream set) has a
frontier, the newest frame any connection has sent. A new connection starts `overlap` frames
behind that frontier (plus its plan's `skip`), so tests choose between a lossless reconnect
(overlap) and lost trades (skip). `Plan`s script what happens on the n-th connection.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import threading
import time
import traceback
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import cast
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from producers.sources.recording import read_lines
from tests.conftest import HFT

Frame = tuple[str, str]  # (stream, the frame as the exchange sent it)
TradeRow = tuple[int, str, str, int]  # (trade id, price, qty, trade time)

RECORDINGS = (HFT / "spot" / "btcusdt_20240808.gz", HFT / "spot" / "ethusdt_20240808.gz")
TRADE_STREAMS = ("btcusdt@trade", "ethusdt@trade")


@functools.cache
def recorded_frames(trades: int = 2000) -> tuple[Frame, ...]:
    """The start of a real day of BTCUSDT and ETHUSDT frames, up to `trades` trades."""
    return tuple(load_frames(RECORDINGS, trades))


def trade_rows(frames: Iterable[str]) -> dict[str, list[TradeRow]]:
    """What Kafka should hold for these trade frames, per symbol in order."""
    out: dict[str, list[TradeRow]] = {}
    for raw in frames:
        d = orjson.loads(raw)["data"]
        out.setdefault(d["s"], []).append((d["t"], d["p"], d["q"], d["T"]))
    return out


def load_frames(paths: Iterable[str | Path], trades: int) -> list[Frame]:
    """Stream frames of the recordings merged by receive time, up to the `trades`-th trade."""
    # read_lines is a generator holding an open file: close it when stopping early.
    readers = [cast(Generator[tuple[int | None, bytes], None, None], read_lines(p)) for p in paths]
    out: list[Frame] = []
    try:
        seen = 0
        for _ns, raw in heapq.merge(*readers, key=lambda line: line[0] or 0):
            stream = orjson.loads(raw).get("stream")
            if not isinstance(stream, str):
                continue  # REST snapshots captured alongside the streams
            out.append((stream, raw.decode()))
            if stream.endswith("@trade"):
                seen += 1
                if seen >= trades:
                    break
    finally:
        for reader in readers:
            reader.close()
    return out


@dataclass
class Plan:
    """What the server does on one connection. Counts are recorded frames sent on it."""

    disconnect_after: int | None = None
    abort: bool = False  # drop the TCP connection instead of closing with `close_code`
    close_code: int = 1011
    shutdown_after: int | None = None  # then send a serverShutdown event ...
    shutdown_grace: int = 200  # ... keep serving this many frames, then close
    inject: Sequence[tuple[int, str | bytes]] = ()  # (after N frames, extra raw frame)
    skip: int = 0  # frames of the timeline this connection never sends (lost trades)


@dataclass
class ConnectionLog:
    number: int
    path: str
    streams: tuple[str, ...]
    start: int  # first position sent, in the subscription's frames
    next: int  # next position to send
    opened: float = field(default_factory=time.monotonic)
    closed_by: str = ""  # "server" or "client" once closed
    pongs: int = 0


class FakeBinance:
    def __init__(
        self,
        frames: Sequence[Frame],
        *,
        plans: Sequence[Plan] = (),
        fps: float = 4000.0,
        batch: int = 8,
        overlap: int = 0,
        max_age: float | None = None,
        refuse: Iterable[int] = (),
    ) -> None:
        self.frames = frames
        self.plans = list(plans)
        self.fps = fps
        self.batch = batch
        self.overlap = overlap
        self.max_age = max_age
        self.refuse = set(refuse)  # handshake numbers answered 503, as an overloaded server
        self.handshakes = 0
        self.connections: list[ConnectionLog] = []
        self.errors: list[str] = []
        self.port = 0
        self._frontier: dict[tuple[str, ...], int] = {}
        self._sockets: dict[int, ServerConnection] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="fake-binance")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def frames_for(self, streams: Iterable[str]) -> list[str]:
        wanted = set(streams)
        return [raw for stream, raw in self.frames if stream in wanted]

    def __enter__(self) -> FakeBinance:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Binance server did not start")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self.errors and exc is None:
            raise AssertionError("fake Binance server failed:\n" + "\n".join(self.errors))

    def wait_all_closed(self, timeout: float = 5.0) -> None:
        """Wait until the server has seen every connection end (after the client stopped)."""
        deadline = time.monotonic() + timeout
        while any(not c.closed_by for c in self.connections):
            if time.monotonic() > deadline:
                raise AssertionError("connections still open: "
                                     f"{[c.number for c in self.connections if not c.closed_by]}")
            time.sleep(0.01)

    def ping(self, timeout: float = 2.0) -> int:
        """Ping every open connection; the number that answered with a pong in time."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._ping_all(timeout), self._loop)
        return future.result(timeout + 5)

    async def _ping_all(self, timeout: float) -> int:
        answered = 0
        for number, ws in list(self._sockets.items()):
            try:
                pong = await ws.ping(b"alphaplus-test")
                await asyncio.wait_for(pong, timeout)
            except (ConnectionClosed, TimeoutError):
                continue
            self.connections[number].pongs += 1
            answered += 1
        return answered

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # The server's own keepalive is off so that pings happen only when a test asks.
        async with serve(self._handle, "127.0.0.1", 0, ping_interval=None,
                         process_request=self._process_request) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _process_request(self, ws: ServerConnection, _request: Request) -> Response | None:
        number = self.handshakes
        self.handshakes += 1
        if number in self.refuse:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try again later\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            await self._serve(ws)
        except Exception:
            self.errors.append(traceback.format_exc())
            raise

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path != "/stream" or "streams" not in query:
            await ws.close(1008, "expected /stream?streams=...")
            return
        streams = tuple(query["streams"][0].split("/"))
        frames = self.frames_for(streams)
        number = len(self.connections)
        plan = self.plans[number] if number < len(self.plans) else Plan()
        frontier = self._frontier.get(streams)
        start = 0 if frontier is None else frontier + 1 - self.overlap + plan.skip
        start = max(0, min(start, len(frames)))
        conn = ConnectionLog(number, path, streams, start, start)
        self.connections.append(conn)
        self._sockets[number] = ws
        try:
            conn.closed_by = await self._play(ws, conn, plan, frames)
        except ConnectionClosed:
            conn.closed_by = "client"
        finally:
            del self._sockets[number]

    async def _play(self, ws: ServerConnection, conn: ConnectionLog, plan: Plan,
                    frames: Sequence[str]) -> str:
        """Send frames until the plan, the age limit or the client ends the connection."""
        injects = sorted(plan.inject, key=lambda item: item[0])
        sent = 0
        shutdown_sent = False
        while True:
            while injects and injects[0][0] <= sent:
                await ws.send(injects.pop(0)[1])
            if plan.disconnect_after is not None and sent >= plan.disconnect_after:
                await self._drop(ws, plan)
                return "server"
            if plan.shutdown_after is not None and sent >= plan.shutdown_after:
                if not shutdown_sent:
                    shutdown_sent = True
                    await ws.send(orjson.dumps(
                        {"e": "serverShutdown", "E": time.time_ns() // 1_000_000}).decode())
                elif sent >= plan.shutdown_after + plan.shutdown_grace:
                    await ws.close(1001, "server shutdown")
                    return "server"
            if self.max_age is not None and time.monotonic() - conn.opened >= self.max_age:
                await ws.close(1001, "connection age limit")
                return "server"
            if ws.state is not State.OPEN:
                return "client"
            if conn.next >= len(frames):
                await asyncio.sleep(0.02)  # end of the recording: a quiet market
                continue
            await ws.send(frames[conn.next])
            self._frontier[conn.streams] = max(self._frontier.get(conn.streams, -1), conn.next)
            conn.next += 1
            sent += 1
            if sent % self.batch == 0:
                await asyncio.sleep(self.batch / self.fps)

    async def _drop(self, ws: ServerConnection, plan: Plan) -> None:
        if not plan.abort:
            await ws.close(plan.close_code, "forced disconnect")
            return
        # Let what was sent reach the client first, so "sent" means "delivered" and the
        # reconnect's overlap arithmetic holds; then vanish without a close frame.
        while ws.transport.get_write_buffer_size():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        ws.transport.abort()
