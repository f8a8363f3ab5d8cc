"""Frames written straight to the transport (api/ws/direct.py): their bytes against RFC 6455
as the `websockets` library reads and writes them, real `websockets` clients of a real uvicorn
server taking them interleaved with the protocol layer's own frames under load, and the ASGI
path wherever the transport cannot be used (compression, another server, the real app)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.ws.direct import text_frame, writer_for
from api.ws.hub import Hub
from api.ws.stats import HubStats
from core import redis_keys
from core.settings import Settings
from tests.api.server import ApiProcess
from tests.api.test_ws_hub import ask, candle, recv, serving, small_buffer_socket, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def base_settings(redis_url: str) -> Settings:
    return Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, symbols=("BTCUSDT", "ETHUSDT"))


def parse(data: bytes) -> tuple[Frame, bytes]:
    """The first frame in `data` as websockets' own parser reads it (a client reading a
    server's frames: unmasked), and what follows it."""
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        rest = bytes(reader.buffer)
        return frame, rest
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70_000])
def test_text_frames_in_each_length_form(size: int) -> None:
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()  # `size` bytes of UTF-8
    frame_bytes = text_frame(payload)
    # The header: FIN + text, then the 7-bit length, or 126 + 16 bits, or 127 + 64 bits.
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(frame_bytes) == header + size
    assert frame_bytes[0] == 0x81
    assert frame_bytes[1] == (size if size < 126 else 126 if size < 65536 else 127)
    frame, rest = parse(frame_bytes + b"\x89\x00")  # and a ping after it
    assert (frame.opcode, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (
        Opcode.TEXT, True, False, False, False)
    assert frame.data == payload
    assert rest == b"\x89\x00"
    # Byte for byte what websockets itself writes as a server.
    assert frame_bytes == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_frames_one_after_another_parse_back() -> None:
    payloads = [b"x" * n for n in (5, 300, 70_000, 0, 126)]
    data = b"".join(text_frame(p) for p in payloads)
    got = []
    while data:
        frame, data = parse(data)
        got.append(frame.data)
    assert got == payloads


@pytest.mark.parametrize(("fast", "slow", "p99_ms"), [(991, 9, 1.0), (990, 10, 500.0)])
def test_a_fan_out_recorded_at_once_counts_each_send(fast: int, slow: int,
                                                    p99_ms: float) -> None:
    stats = HubStats()
    stats.record(0.001, fast)  # one fan-out's direct writes
    for _ in range(slow):
        stats.record(0.5)  # queued sends, one at a time
    assert stats.sent == 1000
    assert stats.avg_ms() == pytest.approx((fast * 1 + slow * 500) / 1000)
    assert stats.p99_ms() == pytest.approx(p99_ms)
    assert sum(stats.buckets) == 1000


async def test_no_direct_writer_outside_uvicorn() -> None:
    """Another server (here: the test drives the ASGI app itself, its `send` a plain
    function): the hub keeps the ASGI path, and answers through it."""
    hub = Hub(Settings.from_env(environ={}, env_file=None).replace(symbols=("BTCUSDT",)))
    writers: list[object] = []

    async def endpoint(websocket: WebSocket) -> None:
        writers.append(writer_for(websocket))
        await hub.serve(websocket)

    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    direct_seen: list[object] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
        if message["type"] == "websocket.send":
            direct_seen.append(hub.stats()["direct_connections"])
            await incoming.put({"type": "websocket.disconnect", "code": 1000})

    await incoming.put({"type": "websocket.connect"})
    await incoming.put({"type": "websocket.receive", "text": orjson.dumps(
        {"method": "SUBSCRIBE", "params": ["btcusdt@signals"], "id": 7}).decode()})
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws",
             "path": "/ws", "raw_path": b"/ws", "root_path": "", "query_string": b"",
             "headers": [], "subprotocols": [], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 2), "extensions": {}}
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    await asyncio.wait_for(app(scope, incoming.get, send), 10)
    assert writers == [None]
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]
    assert orjson.loads(sent[1]["text"]) == {"result": None, "id": 7}
    assert direct_seen == [0]
    assert hub.stats()["disconnects"] == {"client_closed": 1}


async def test_compressed_connections_keep_the_asgi_path(base_settings: Settings,
                                                         namespace: str,
                                                         redis_url: str) -> None:
    """permessage-deflate offered by the server: a client that takes it gets compressed
    frames through ASGI, one that declines gets the direct path; both read the same."""
    publisher = aioredis.Redis.from_url(redis_url)
    try:
        with serving(base_settings, namespace, ws_per_message_deflate=True) as server:
            async with connect(server.url, compression="deflate") as deflated, \
                    connect(server.url, compression=None) as plain:
                assert deflated.protocol.extensions  # negotiated
                assert not plain.protocol.extensions
                for ws in (deflated, plain):
                    assert (await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m"]))["id"] == 1
                assert server.stats()["direct_connections"] == 1
                payloads = [candle(seq, minute=seq) for seq in range(1, 6)]  # not coalesced
                for payload in payloads:
                    await publisher.publish(
                        redis_keys.channel(namespace, "kline", "BTCUSDT", "1m"), payload)
                for ws in (deflated, plain):
                    got = [(await recv(ws))["data"] for _ in payloads]
                    assert got == [orjson.loads(p) for p in payloads]
    finally:
        await publisher.aclose()


class Reader:
    """A real client's side of the load test: everything it got, by kind."""

    def __init__(self, ws: ClientConnection, slow: bool) -> None:
        self.ws = ws
        self.slow = slow
        self.answers: list[Any] = []
        self.signals: list[int] = []
        self.klines: list[int] = []
        self.sizes: set[int] = set()

    async def run(self, last_signal: int) -> None:
        while not self.signals or self.signals[-1] != last_signal:
            raw = await asyncio.wait_for(self.ws.recv(), 20)
            assert isinstance(raw, str)
            self.sizes.add(len(raw))
            message = orjson.loads(raw)
            if "stream" not in message:
                self.answers.append(message)
            elif message["stream"] == "btcusdt@signals":
                self.signals.append(message["data"]["seq"])
            else:
                self.klines.append(message["data"]["trades"])
            if self.slow and random.random() < 0.02:
                await asyncio.sleep(0.02)  # lets the server's transport fill up now and then


@pytest.mark.parametrize("direct_write", [True, False], ids=["direct", "asgi"])
async def test_frames_interleave_with_answers_and_pings_under_load(
        base_settings: Settings, namespace: str, redis_url: str, direct_write: bool) -> None:
    """Real `websockets` clients (their parser refuses any malformed frame, closing 1002)
    read pushed messages of every length form while they send requests (answered on the
    same line) and pings (answered by the protocol layer), and the server pings them."""
    settings = base_settings.replace(ws_requests_per_s=10_000.0, ws_queue_size=10_000,
                                     ws_slow_close_s=60.0, ws_ping_interval_s=0.5)
    publisher = aioredis.Redis.from_url(redis_url)
    kline = redis_keys.channel(namespace, "kline", "BTCUSDT", "1m")
    signals = redis_keys.channel(namespace, "signals", "BTCUSDT", "1m")
    n_signals, requests = 500, 60
    pads = [0, 50, 300, 5_000, 70_000]  # the pushed frames take all three length forms

    async def publish() -> None:
        seq = 0
        for step in range(n_signals):
            pipe = publisher.pipeline(transaction=False)
            for _ in range(5):
                seq += 1
                pipe.publish(kline, candle(seq, minute=seq // 50))
            pad = "x" * pads[step % len(pads)]
            pipe.publish(signals, orjson.dumps({"seq": step + 1, "pad": pad}))
            await pipe.execute()
            await asyncio.sleep(0.002)

    async def chatter(ws: ClientConnection, answers_from: int) -> None:
        for i in range(requests):
            method = ("PING", "LIST_SUBSCRIPTIONS")[i % 2]
            await ws.send(orjson.dumps({"method": method, "id": answers_from + i}).decode())
            if i % 10 == 0:
                pong = await ws.ping()
                await asyncio.wait_for(pong, 10)
            await asyncio.sleep(0.005)

    try:
        with serving(settings, namespace, send_buffer=8192, direct_write=direct_write) \
                as server:
            clients = [await connect(server.url, max_size=None) for _ in range(3)]
            clients.append(await connect(server.url, sock=small_buffer_socket(server.port),
                                         max_size=None, max_queue=4))
            try:
                for ws in clients:
                    assert (await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m",
                                                        "btcusdt@signals"]))["id"] == 1
                assert server.stats()["direct_connections"] == len(clients) * direct_write
                readers = [Reader(ws, slow=i == len(clients) - 1)
                           for i, ws in enumerate(clients)]
                reading = [asyncio.create_task(r.run(n_signals)) for r in readers]
                started = time.monotonic()
                await asyncio.gather(publish(), *(chatter(ws, 100) for ws in clients))
                await asyncio.wait_for(asyncio.gather(*reading), 30)
                elapsed = time.monotonic() - started
                await until(lambda: all(len(r.answers) == requests for r in readers))
            finally:
                for ws in clients:
                    await ws.close()
            await until(lambda: server.stats()["active_connections"] == 0)
            stats = server.stats()
    finally:
        await publisher.aclose()
    assert elapsed > 1.0  # long enough for the server's keepalive pings (every 0.5 s)
    expected = [{"result": ("PONG", ["btcusdt@kline_1m", "btcusdt@signals"])[i % 2],
                 "id": 100 + i} for i in range(requests)]
    for reader in readers:
        assert reader.answers == expected  # every answer, in order
        assert reader.signals == list(range(1, n_signals + 1))  # none lost, none reordered
        assert reader.klines == sorted(set(reader.klines))  # latest-wins: never older
        assert reader.klines[-1] == 5 * n_signals
        assert max(reader.sizes) > 65536 and min(reader.sizes) < 126
    assert stats["errors_count"] == 0
    assert stats["dropped_messages"] == 0
    assert stats["slow_disconnects"] == 0
    assert stats["disconnects"] == {"client_closed": len(clients)}


async def test_the_api_process_writes_directly(live_api: ApiProcess, api_settings: Settings,
                                               redis_url: str) -> None:
    """The real app (FastAPI, `alphaplus api`): the transport is found through its wrappers."""
    publisher = aioredis.Redis.from_url(redis_url)
    try:
        async with connect(live_api.ws_url) as ws:
            assert (await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m"]))["result"] is None
            async with httpx.AsyncClient() as http:
                body = (await http.get(f"{live_api.url}/api/websocket/stats")).json()
            assert body["websocket_stats"]["direct_connections"] == 1
            payload = candle(42)
            await publisher.publish(redis_keys.channel(api_settings.api_namespace, "kline",
                                                       "BTCUSDT", "1m"), payload)
            assert (await recv(ws, 10))["data"] == orjson.loads(payload)
    finally:
        await publisher.aclose()
