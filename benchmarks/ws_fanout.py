"""WebSocket fan-out: many `/ws` connections held by ONE API process (uvicorn, one worker, the
hub fed by the pub/sub listener), while live candles flow at the stream stage's rate.

Load, as the stream stage makes it: 10 symbols, each publishing its six kline timeframes (one
pipeline, like `LivePublisher`) every 100 ms (the live throttle), symbols staggered: 600 kline
updates a second; plus an indicators and a signals update once a second. Payloads are real
candle JSON with the publish time embedded (`"pt"`, `time.time_ns()`). Each client subscribes
to one stream (1 in 100 to a symbol's signals, the others to a kline stream, spread evenly), so
every kline client should get 10 messages a second.

Measured per run, over --seconds after --warmup:
  * delivery latency: publish (the publisher's clock before PUBLISH) -> the client's receipt of
    the frame, p50 / p99 / max, over every message whose publish time is in the window;
  * messages/s delivered to all clients, and the share of the expected count (latest-wins
    coalescing delivers fewer under overload, by design, and says so);
  * the server's CPU (its share of one core, and CPU µs per delivered message) and memory per
    connection: its RSS after every client connected and subscribed minus before, / N;
  * the hub's own p99 (its /stats `p99_latency_ms`: update received from Redis -> written to
    the socket, over its last 10,000 records), which leaves out the clients' share of the
    delay (they share the cores).

Beside it, in the same process layout and alternating with it (modes, --modes):
  * hub    the hub as served: each update framed once and written straight to every
           client's transport (api/ws/direct.py);
  * asgi   the same hub with the direct path off (`Hub(direct_write=False)`): every message
           through ASGI `send` -> uvicorn -> websockets' framing, the path before direct writes;
  * naive  a bare Starlette WebSocket endpoint whose pub/sub handler sends every update to every
           subscribed connection in turn (`await websocket.send_json(...)`: serialised per
           client, no queue). docs/DESIGN.md's reference for the raw send cost is ~11-14 µs per
           client per message.

Processes (2 cores here, so they compete: read ratios): the server (started from this script
with RLIMIT_NOFILE raised to its hard limit), the publisher, and --client-procs client
processes, each holding its share of the connections on one event loop (--client-loop,
uvloop unless told otherwise; the server runs uvicorn's default, uvloop) through a minimal
WebSocket client (an asyncio.Protocol that parses frames itself and answers pings: a few µs a
message, so the clients' own cost stays small beside the server's).

    .venv/bin/python benchmarks/ws_fanout.py                         # 1,000 then 10,000
    .venv/bin/python benchmarks/ws_fanout.py --clients 1000 --repeats 3 --seconds 10
    .venv/bin/python benchmarks/ws_fanout.py --modes hub asgi          # direct vs ASGI only
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from array import array
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import msgspec
import orjson
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import redis_keys  # noqa: E402
from core.candles import Candle  # noqa: E402
from infra.stack.ports import free_port  # noqa: E402
from infra.stack.redis import delete_keys  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT",
           "AVAXUSDT", "DOTUSDT", "LINKUSDT")
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
THROTTLE_S = 0.1
TARGET_P99_MS = {1000: 20.0, 10000: 100.0}
MODES = ("hub", "asgi", "naive")
#: Counters of the server's /stats shown per run (those that are not zero).
SERVER_FIGURES = ("direct_connections", "coalesced_updates", "coalesced_messages",
                  "dropped_messages", "slow_disconnects", "errors_count")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def streams_for(n: int) -> list[str]:
    kline = [f"{s.lower()}@kline_{tf}" for s in SYMBOLS for tf in TIMEFRAMES]
    return [f"{SYMBOLS[i % len(SYMBOLS)].lower()}@signals" if i % 100 == 99
            else kline[i % len(kline)] for i in range(n)]


# -- the server process ---------------------------------------------------------------------
def hub_app(redis_url: str, ns: str, direct_write: bool) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute

    from api.pubsub import UpdateListener
    from api.ws.hub import Hub
    from core.settings import Settings

    settings = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, symbols=SYMBOLS, timeframes=TIMEFRAMES, ws_max_streams=10)
    hub = Hub(settings, direct_write=direct_write)
    listener = UpdateListener(redis_url, ns, [hub.on_update])

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await listener.start()
        yield
        await listener.close()
        await hub.close()

    async def stats(_: Request) -> JSONResponse:
        body = hub.stats()
        body.pop("subscriptions")
        return JSONResponse({**body, "listener": listener.stats()})

    return Starlette(routes=[WebSocketRoute("/ws", hub.serve), Route("/stats", stats)],
                     lifespan=lifespan)


def naive_app(redis_url: str, ns: str) -> Any:
    """The baseline: what a first WebSocket endpoint usually looks like."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    from api.pubsub import UpdateListener
    from api.updates import Update
    from api.ws.protocol import stream_name

    subs: dict[str, set[WebSocket]] = {}
    sent = [0]

    async def on_update(update: Update) -> None:
        stream = stream_name(update.kind, update.symbol, update.timeframe)
        data = orjson.loads(update.payload)
        for ws in list(subs.get(stream, ())):
            try:
                await ws.send_json({"stream": stream, "data": data, "sent_at": time.time() * 1e3})
                sent[0] += 1
            except Exception:
                subs[stream].discard(ws)

    listener = UpdateListener(redis_url, ns, [on_update])

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        mine: list[str] = []
        try:
            async for text in ws.iter_text():
                request = orjson.loads(text)
                for stream in request.get("params", []):
                    subs.setdefault(stream, set()).add(ws)
                    mine.append(stream)
                await ws.send_json({"result": None, "id": request.get("id")})
        finally:
            for stream in mine:
                subs.get(stream, set()).discard(ws)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await listener.start()
        yield
        await listener.close()

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse({"total_messages_sent": sent[0], "listener": listener.stats(),
                             "active_connections": sum(len(s) for s in subs.values())})

    return Starlette(routes=[WebSocketRoute("/ws", endpoint), Route("/stats", stats)],
                     lifespan=lifespan)


def server_main(mode: str, port: int, redis_url: str, ns: str) -> None:
    import uvicorn

    from api.ws.serving import uvicorn_ws_options
    from core.settings import Settings

    raise_nofile()
    app = naive_app(redis_url, ns) if mode == "naive" else hub_app(redis_url, ns, mode == "hub")
    options = uvicorn_ws_options(Settings.from_env(environ={}, env_file=None))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on", backlog=4096, **options)
    uvicorn.Server(config).run()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, mode: str, redis_url: str, ns: str, log: Path) -> None:
        self.mode = mode
        self.port = free_port()
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "_server", mode, str(self.port), redis_url, ns],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {mode} server did not start:\n"
                                       + log.read_text(errors="replace")) from None
                time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=30) as r:
            body: dict[str, Any] = orjson.loads(r.read())
            return body

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# -- the publisher process ------------------------------------------------------------------
def publisher_main(redis_url: str, ns: str, until: float, ready: Connection) -> None:
    """Kline updates for every symbol's six timeframes every 100 ms per symbol (symbols
    staggered), an indicators and a signals update once a second, until `until` (epoch s)."""
    client = redis.Redis.from_url(redis_url)
    base = {s: msgspec.json.encode(Candle(s, "1m", 0, 0, 100.0, 101.0, 99.0, 100.5, 1.0,
                                          100.5, 1, 0.5, 50.0))[:-1] for s in SYMBOLS}
    channels = {s: [redis_keys.channel(ns, "kline", s, tf) for tf in TIMEFRAMES]
                for s in SYMBOLS}
    step = THROTTLE_S / len(SYMBOLS)
    ready.send(True)
    start = time.monotonic()
    tick = 0
    while time.time() < until:
        symbol = SYMBOLS[tick % len(SYMBOLS)]
        pipe = client.pipeline(transaction=False)
        payload = base[symbol] + b',"pt":%d}' % time.time_ns()
        for channel in channels[symbol]:
            pipe.publish(channel, payload)
        if tick % 100 == 0:
            extra = b'{"symbol":"%s","timeframe":"1m","pt":%d}' % (symbol.encode(),
                                                                     time.time_ns())
            pipe.publish(redis_keys.channel(ns, "indicators", symbol, "1m"), extra)
            pipe.publish(redis_keys.channel(ns, "signals", symbol, "1m"), extra)
        pipe.execute()
        tick += 1
        delay = start + tick * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.close()


# -- the client processes -------------------------------------------------------------------
class Sink:
    """What one client process measured: latencies (ms) of messages published in the window."""

    def __init__(self, t0_ns: int, t1_ns: int) -> None:
        self.t0_ns, self.t1_ns = t0_ns, t1_ns
        self.latency_ms = array("f")
        self.in_window = 0
        self.total = 0
        self.closed = 0


class WsClient(asyncio.Protocol):
    """A minimal WebSocket client: handshake, one SUBSCRIBE, frames parsed by hand."""

    def __init__(self, stream: str, port: int, sink: Sink, ready: asyncio.Future[None]) -> None:
        self.stream = stream
        self.port = port
        self.sink = sink
        self.ready = ready
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                              "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                              ).encode())

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else \
            bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(buf[:200]).decode(errors="replace"))
            del buf[:end + 4]
            self.open = True
            self.send(1, b'{"method":"SUBSCRIBE","params":["%s"],"id":1}' % self.stream.encode())
        pos, size = 0, len(buf)
        sink = self.sink
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if size - pos < head + n:
                break
            start, pos = pos + head, pos + head + n
            if opcode == 1:
                at = buf.find(b'"pt":', start, pos)
                if at < 0:
                    if not self.ready.done():
                        self.ready.set_result(None)  # the SUBSCRIBE answer
                    continue
                sink.total += 1
                end = at + 5
                while 48 <= buf[end] <= 57:
                    end += 1
                pt = int(buf[at + 5:end])
                if sink.t0_ns <= pt < sink.t1_ns:
                    sink.in_window += 1
                    sink.latency_ms.append((now - pt) / 1e6)
            elif opcode == 9:
                self.send(10, bytes(buf[start:pos]))
            elif opcode == 8:
                sink.closed += 1
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"lost before subscribing: {exc}"))


async def clients_run(port: int, streams: list[str], ctl: Connection) -> Sink:
    loop = asyncio.get_running_loop()
    sink = Sink(0, 0)  # nothing is recorded until the parent sets the window
    gate = asyncio.Semaphore(100)  # handshakes in flight
    transports: list[asyncio.BaseTransport] = []

    async def one(stream: str) -> None:
        async with gate:
            ready: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: WsClient(stream, port, sink, ready), "127.0.0.1", port)
            transports.append(transport)
            await asyncio.wait_for(ready, 60)

    await asyncio.gather(*(one(s) for s in streams))
    ctl.send("ready")
    sink.t0_ns, sink.t1_ns = await loop.run_in_executor(None, ctl.recv)
    await loop.run_in_executor(None, ctl.recv)  # the parent says when to stop
    for transport in transports:
        transport.close()
    return sink


def client_main(port: int, streams: list[str], ctl: Connection, loop: str) -> None:
    raise_nofile()
    if loop == "uvloop":
        import uvloop

        sink = uvloop.run(clients_run(port, streams, ctl))
    else:
        sink = asyncio.run(clients_run(port, streams, ctl))
    ctl.send((sink.latency_ms.tobytes(), sink.in_window, sink.total, sink.closed))


# -- one run --------------------------------------------------------------------------------
@dataclass
class Result:
    mode: str
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    msgs_per_s: float
    delivered_share: float
    cpu_share: float
    cpu_us_per_msg: float
    kib_per_conn: float
    connect_s: float
    closed: int
    clients_cpu_share: float  # the client processes and the publisher together
    server_stats: dict[str, Any]


def run_once(mode: str, n: int, procs: int, args: argparse.Namespace, ns: str,
             log: Path) -> Result:
    server = Server(mode, args.redis_url, ns, log)
    ctx = mp.get_context("spawn")
    children: list[Any] = []
    try:
        time.sleep(0.5)
        rss_before = server.rss()
        streams = streams_for(n)
        connect_start = time.monotonic()
        pipes = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client_main,
                            args=(server.port, streams[i::procs], child, args.client_loop))
            p.start()
            children.append(p)
            pipes.append(parent)
        for parent in pipes:
            if not parent.poll(max(60.0, n / 50)):
                raise RuntimeError("clients did not connect in time")
            assert parent.recv() == "ready"
        connect_s = time.monotonic() - connect_start
        time.sleep(1.0)
        rss_after = server.rss()
        stats = server.stats()
        assert stats["active_connections"] >= n, stats
        t0 = time.time() + args.warmup + 0.5
        t1 = t0 + args.seconds
        for parent in pipes:
            parent.send((int(t0 * 1e9), int(t1 * 1e9)))
        pub_parent, pub_child = ctx.Pipe()
        publisher = ctx.Process(target=publisher_main, args=(args.redis_url, ns, t1, pub_child))
        publisher.start()
        children.append(publisher)
        pub_parent.recv()
        time.sleep(max(0.0, t0 - time.time()))
        cpu0 = server.cpu()
        others = [p.pid for p in children if p.pid is not None]
        others_cpu0 = sum(cpu_seconds(pid) for pid in others)
        time.sleep(max(0.0, t1 - time.time()))
        cpu = server.cpu() - cpu0
        others_cpu = sum(cpu_seconds(pid) for pid in others) - others_cpu0
        server_stats = server.stats()
        publisher.join(30)
        time.sleep(2.0)  # drain what is in flight
        latencies = array("f")
        in_window = total = closed = 0
        for parent in pipes:
            parent.send("stop")
        for parent in pipes:
            raw, win, tot, clo = parent.recv()
            chunk = array("f")
            chunk.frombytes(raw)
            latencies.extend(chunk)
            in_window += win
            total += tot
            closed += clo
        ordered = sorted(latencies)
        kline_clients = sum(1 for s in streams if "@kline_" in s)
        expected = kline_clients * args.seconds / THROTTLE_S
        return Result(
            mode=mode, n=n,
            p50_ms=ordered[len(ordered) // 2] if ordered else float("nan"),
            p99_ms=ordered[int(len(ordered) * 0.99)] if ordered else float("nan"),
            max_ms=ordered[-1] if ordered else float("nan"),
            msgs_per_s=in_window / args.seconds,
            delivered_share=in_window / expected,
            cpu_share=cpu / args.seconds,
            cpu_us_per_msg=cpu / max(1, in_window) * 1e6,
            kib_per_conn=(rss_after - rss_before) / n / 1024,
            connect_s=connect_s, closed=closed, clients_cpu_share=others_cpu / args.seconds,
            server_stats=server_stats)
    finally:
        for p in children:
            p.join(10)
            if p.is_alive():
                p.kill()
        server.stop()
        delete_keys(args.redis_url, [redis_keys.namespace_pattern(ns)])


def show(r: Result) -> str:
    return (f"  {r.mode:5s} N={r.n:6d}  p50 {r.p50_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms  "
            f"max {r.max_ms:8.1f} ms  {r.msgs_per_s:9.0f} msg/s ({r.delivered_share:6.1%} of "
            f"expected)  server CPU {r.cpu_share:5.0%} = {r.cpu_us_per_msg:5.1f} µs/msg  "
            f"{r.kib_per_conn:5.1f} KiB/conn  connect {r.connect_s:5.1f} s  clients+publisher "
            f"CPU {r.clients_cpu_share:4.0%}" + (f"  closed {r.closed}" if r.closed else "")
            + (f"  hub's own p99 {r.server_stats['p99_latency_ms']:.1f} ms"
               if "p99_latency_ms" in r.server_stats else "")
            + "".join(f"  {k} {r.server_stats[k]}" for k in SERVER_FIGURES
                      if r.server_stats.get(k)))


def summary(results: list[Result]) -> None:
    print("\nMedians (hub = direct writes, asgi = the same hub through ASGI send, naive "
          "baseline; same runs):")
    for n in sorted({r.n for r in results}):
        rows: dict[str, dict[str, float]] = {}
        for mode in MODES:
            mine = [r for r in results if r.mode == mode and r.n == n]
            if not mine:
                continue
            rows[mode] = {k: statistics.median(getattr(r, k) for r in mine) for k in (
                "p50_ms", "p99_ms", "msgs_per_s", "delivered_share", "cpu_us_per_msg",
                "kib_per_conn")}
        for mode, m in rows.items():
            target = TARGET_P99_MS.get(n)
            verdict = "" if target is None or mode != "hub" else (
                f"  (target p99 < {target:g} ms: {'met' if m['p99_ms'] < target else 'NOT met'})")
            print(f"  N={n:6d} {mode:5s} p50 {m['p50_ms']:8.2f} ms  p99 {m['p99_ms']:8.2f} ms  "
                  f"{m['msgs_per_s']:9.0f} msg/s ({m['delivered_share']:6.1%})  "
                  f"{m['cpu_us_per_msg']:5.1f} µs/msg  {m['kib_per_conn']:5.1f} KiB/conn"
                  + verdict)
        hub = rows.get("hub")
        for other in ("asgi", "naive"):
            base = rows.get(other)
            if hub is None or base is None:
                continue
            print(f"  N={n:6d} ratios {other}/hub: p50 {base['p50_ms'] / hub['p50_ms']:.2f}x  "
                  f"p99 {base['p99_ms'] / hub['p99_ms']:.2f}x  delivered "
                  f"{base['msgs_per_s'] / hub['msgs_per_s']:.2f}x  CPU per message "
                  f"{base['cpu_us_per_msg'] / hub['cpu_us_per_msg']:.2f}x")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        server_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--client-procs", type=int, default=3)
    parser.add_argument("--client-loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the clients' event loop (uvloop: the load generator's own cost "
                        "per message is lower; it shares the cores with the server)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="hub: direct writes; asgi: the hub through ASGI send; naive: "
                        "send_json to each subscriber in turn (default: all three)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log", type=Path, default=Path("/tmp/ws_fanout_server.log"))
    args = parser.parse_args()
    hard = raise_nofile()
    print(f"RLIMIT_NOFILE hard limit {hard}; {os.cpu_count()} cores; "
          f"{len(SYMBOLS)} symbols x {len(TIMEFRAMES)} kline streams every "
          f"{THROTTLE_S * 1000:.0f} ms; {args.seconds:g} s measured after {args.warmup:g} s")
    results: list[Result] = []
    for n in args.clients:
        for _ in range(args.repeats):
            for mode in args.modes:  # alternate, so the machine's noise hits both
                ns = f"bench-ws-{uuid.uuid4().hex[:8]}"
                result = run_once(mode, n, args.client_procs, args, ns, args.log)
                print(show(result), flush=True)
                results.append(result)
    summary(results)


if __name__ == "__main__":
    main()
