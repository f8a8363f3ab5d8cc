"""The WebSocket hub behind a real uvicorn server, fed by the real pub/sub listener from the
test's Redis namespace; clients are `websockets` clients (and a raw socket where a client must
misbehave). Updates are published exactly as the workers publish them."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import msgspec
import orjson
import pytest
import redis.asyncio as aioredis
import uvicorn
from prometheus_client import REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.pubsub import UpdateListener
from api.ws.hub import Hub
from api.ws.serving import uvicorn_ws_options
from core import redis_keys
from core.candles import Candle
from core.settings import Settings
from infra.stack.ports import free_port

pytestmark = pytest.mark.anyio
T = TypeVar("T")


class HubServer:
    """uvicorn in a thread serving `/ws` from a hub that a listener on `ns` feeds."""

    def __init__(self, settings: Settings, ns: str, send_buffer: int | None = None,
                 direct_write: bool = True, **uvicorn_options: Any) -> None:
        self.hub = Hub(settings, direct_write=direct_write)
        self.listener = UpdateListener(settings.redis_url, ns, [self.hub.on_update])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        app = Starlette(routes=[WebSocketRoute("/ws", self.hub.serve)], lifespan=self._lifespan)
        options: dict[str, Any] = {**uvicorn_ws_options(settings), **uvicorn_options}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", **options)
        self.server = uvicorn.Server(config)
        # The listening socket is ours so that its send buffer size can be fixed (accepted
        # sockets inherit it): Linux otherwise grows it to megabytes, which a client that
        # stops reading would take long to fill.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        sock.bind(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)

    @asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        await self.listener.start()
        try:
            yield
        finally:
            await self.listener.close()
            await self.hub.close()

    def start(self) -> HubServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        assert self.listener.connected
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def call(self, coro: Awaitable[T]) -> T:
        """Run `coro` on the server's loop (the hub's own), from the test's loop thread."""
        assert self.loop is not None

        async def run() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stats(self) -> dict[str, Any]:
        return self.hub.stats()


@pytest.fixture
def base_settings(redis_url: str) -> Settings:
    return Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, symbols=("BTCUSDT", "ETHUSDT"))


@contextmanager
def serving(settings: Settings, ns: str, send_buffer: int | None = None,
            direct_write: bool = True, **uvicorn_options: Any) -> Iterator[HubServer]:
    server = HubServer(settings, ns, send_buffer, direct_write, **uvicorn_options).start()
    try:
        yield server
    finally:
        server.stop()


def candle(seq: int, symbol: str = "BTCUSDT", tf: str = "1m", close: float = 100.25,
           minute: int = 0, closed: bool = False) -> bytes:
    """A live candle as the stream stage publishes it; `trades` carries a sequence number."""
    open_time = 1_700_000_040_000 + minute * 60_000
    return msgspec.json.encode(Candle(symbol, tf, open_time, open_time + 59_999, 100.0,
                                      close + 1, 99.5, close, 1.25, 125.0, seq, 0.5, 50.0,
                                      closed))


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def recv(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ask(ws: ClientConnection, method: str, params: list[str] | None = None,
              request_id: int | str = 1) -> Any:
    body: dict[str, Any] = {"method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    await ws.send(orjson.dumps(body).decode())
    return await recv(ws)


async def silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so a client that stops reading fills its
    path quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_subscribe_receive_unsubscribe_list(base_settings: Settings, namespace: str,
                                                  redis_url: str) -> None:
    publisher = aioredis.Redis.from_url(redis_url)

    async def publish(kind: str, symbol: str, tf: str, payload: bytes) -> None:
        await publisher.publish(redis_keys.channel(namespace, kind, symbol, tf), payload)

    try:
        with serving(base_settings, namespace) as server:
            async with connect(server.url) as one, connect(server.url) as two:
                assert await ask(one, "SUBSCRIBE", ["btcusdt@kline_1m", "btcusdt@signals"]) \
                    == {"result": None, "id": 1}
                assert await ask(two, "SUBSCRIBE", ["ethusdt@kline_1m"], request_id="e") \
                    == {"result": None, "id": "e"}

                payload = candle(1, close=101.123456789012)
                before = time.time() * 1000
                await publish("kline", "BTCUSDT", "1m", payload)
                raw = await asyncio.wait_for(one.recv(), 5)
                assert isinstance(raw, str)
                message = orjson.loads(raw)
                assert message["stream"] == "btcusdt@kline_1m"
                assert message["data"] == orjson.loads(payload)
                assert f'"data":{payload.decode()},' in raw  # byte for byte as published
                assert before <= message["sent_at"] <= time.time() * 1000
                assert set(message) == {"stream", "data", "sent_at"}

                # Another timeframe, no subscriber; then the symbol's signals, every tf.
                await publish("kline", "BTCUSDT", "5m", candle(2, tf="5m"))
                await publish("signals", "BTCUSDT", "1h", b'{"name":"a","timeframe":"1h"}')
                await publish("signals", "BTCUSDT", "1m", b'{"name":"b","timeframe":"1m"}')
                got = [await recv(one), await recv(one)]
                assert [(m["stream"], m["data"]["name"]) for m in got] == [
                    ("btcusdt@signals", "a"), ("btcusdt@signals", "b")]

                # The other client got none of that: its first message is its own stream's.
                await publish("kline", "ETHUSDT", "1m", candle(3, symbol="ETHUSDT"))
                message = await recv(two)
                assert (message["stream"], message["data"]["trades"]) == ("ethusdt@kline_1m", 3)
                await silent(one, 0.2)

                assert await ask(one, "LIST_SUBSCRIPTIONS", request_id=5) == {
                    "result": ["btcusdt@kline_1m", "btcusdt@signals"], "id": 5}
                assert await ask(one, "UNSUBSCRIBE", ["btcusdt@kline_1m"], 6) == {
                    "result": None, "id": 6}
                await publish("kline", "BTCUSDT", "1m", candle(4))
                await publish("patterns", "BTCUSDT", "1m", b'{"name":"p"}')
                await publish("signals", "BTCUSDT", "5m", b'{"name":"c"}')
                message = await recv(one)
                assert (message["stream"], message["data"]) == ("btcusdt@signals", {"name": "c"})
                assert await ask(one, "LIST_SUBSCRIPTIONS", request_id=7) == {
                    "result": ["btcusdt@signals"], "id": 7}
                assert await ask(one, "PING", request_id=8) == {"result": "PONG", "id": 8}
                # Subscribing twice is no error and no duplicate.
                assert await ask(two, "SUBSCRIBE", ["ethusdt@kline_1m"], 9) == {
                    "result": None, "id": 9}
                await publish("kline", "ETHUSDT", "1m", candle(5, symbol="ETHUSDT"))
                assert (await recv(two))["data"]["trades"] == 5
                await silent(two, 0.2)

                stats = server.stats()
                assert stats["active_connections"] == 2
                assert stats["total_messages_sent"] == 6
                assert stats["avg_latency_ms"] > 0
                assert stats["errors_count"] == 0
                assert stats["queue_sizes"] == {"market_data": 0, "signals": 0, "patterns": 0}
                assert stats["subscriptions"] == {"btcusdt@signals": 1, "ethusdt@kline_1m": 1}
                assert stats["updates_received"] == 9
                metrics = generate_latest(REGISTRY).decode()
                assert "alphaplus_ws_clients" in metrics
                assert "alphaplus_ws_send_latency_seconds_bucket" in metrics
                assert "alphaplus_ws_messages_sent_total" in metrics
            await until(lambda: server.stats()["active_connections"] == 0)
            assert server.stats()["disconnects"] == {"client_closed": 2}
    finally:
        await publisher.aclose()


async def test_errors_are_answered_and_the_connection_stays(base_settings: Settings,
                                                            namespace: str) -> None:
    with serving(base_settings, namespace) as server:
        async with connect(server.url) as ws:
            await ws.send("{not json")
            assert (await recv(ws))["error"]["code"] == 1
            await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"]}')
            assert await recv(ws) == {"error": {"code": 2, "msg": (
                "`id` is required and must be an integer or a string")}, "id": None}
            assert (await ask(ws, "FOO", request_id=3))["error"]["code"] == 3
            reply = await ask(ws, "SUBSCRIBE", ["xrpusdt@kline_1m"], 4)
            assert (reply["error"]["code"], reply["id"]) == (5, 4)
            assert "btcusdt, ethusdt" in reply["error"]["msg"]
            reply = await ask(ws, "SUBSCRIBE", ["btcusdt@kline_2m"], 5)
            assert reply["error"]["code"] == 6
            assert "1m, 5m, 15m, 1h, 4h, 1d" in reply["error"]["msg"]
            await ws.send(orjson.dumps({"method": "PING", "id": 6}))  # a binary frame
            assert await recv(ws) == {"result": "PONG", "id": 6}
            assert await ask(ws, "LIST_SUBSCRIPTIONS", request_id=7) == {"result": [], "id": 7}
        assert server.stats()["errors_count"] == 5


async def test_limits_message_size_and_streams(base_settings: Settings, namespace: str) -> None:
    settings = base_settings.replace(ws_max_message_bytes=256, ws_max_streams=3)
    with serving(settings, namespace) as server:
        async with connect(server.url) as ws:
            big = '{"method":"PING","id":1,"pad":"' + "\u00e9" * 150 + '"}'  # 2 bytes each
            await ws.send(big)
            assert await recv(ws) == {"error": {"code": 8, "msg": (
                f"message too large: {len(big) + 150} bytes, at most 256")}, "id": None}
            reply = await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m", "btcusdt@kline_5m",
                                                "btcusdt@signals", "btcusdt@patterns"], 2)
            assert (reply["error"]["code"], reply["id"]) == (7, 2)
            assert await ask(ws, "LIST_SUBSCRIPTIONS", request_id=3) == {"result": [], "id": 3}
            assert await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m", "btcusdt@kline_5m",
                                               "btcusdt@signals"], 4) == {"result": None, "id": 4}
            # Already subscribed streams do not count twice.
            assert await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 5) == {"result": None, "id": 5}
            assert (await ask(ws, "SUBSCRIBE", ["ethusdt@signals"], 6))["error"]["code"] == 7
            assert await ask(ws, "PING", request_id=7) == {"result": "PONG", "id": 7}
        stats = server.stats()
        assert stats["limit_violations"] == {"too_many_streams": 2, "message_too_large": 1,
                                             "too_many_requests": 0}
        # Frames beyond the server's own frame limit are cut by uvicorn: close 1009.
        async with connect(server.url, max_size=None) as ws:
            await ws.send("x" * 70_000)
            with pytest.raises(ConnectionClosed) as info:
                await recv(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_a_request_flood_gets_errors_then_a_close(base_settings: Settings,
                                                        namespace: str) -> None:
    settings = base_settings.replace(ws_requests_per_s=5.0)
    with serving(settings, namespace) as server:
        async with connect(server.url) as ws:
            for i in range(30):
                await ws.send(orjson.dumps({"method": "PING", "id": i}).decode())
            replies = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    replies.append(await recv(ws))
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (
                1008, "too many violations: too_many_requests")
        pongs = [r for r in replies if r.get("result") == "PONG"]
        errors = [r for r in replies if "error" in r]
        assert len(pongs) >= 5  # the burst: one second's worth
        assert len(errors) == 5
        assert all(e["error"]["code"] == 9 and e["id"] is None for e in errors)
        assert errors[0]["error"]["msg"] == "too many requests: at most 5 a second"
        assert len(replies) == len(pongs) + len(errors)
        await until(lambda: server.stats()["active_connections"] == 0)
        stats = server.stats()
        assert stats["limit_violations"]["too_many_requests"] == 5
        assert stats["disconnects"] == {"violations": 1}


async def test_token_required_when_configured(base_settings: Settings, namespace: str) -> None:
    with serving(base_settings.replace(ws_token="s3cret"), namespace) as server:
        for url, headers in ((server.url, None), (server.url + "?token=wrong", None),
                             (server.url, {"Authorization": "Bearer nope"}),
                             (server.url, {"Authorization": "Basic s3cret"})):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers=headers):
                    pass
            assert info.value.response.status_code == 401
            assert b"invalid or missing token" in info.value.response.body
        for url, headers in ((server.url + "?token=s3cret", None),
                             (server.url, {"Authorization": "Bearer s3cret"})):
            async with connect(url, additional_headers=headers) as ws:
                assert await ask(ws, "PING") == {"result": "PONG", "id": 1}
        stats = server.stats()
        assert stats["rejected_connections"] == 4
        assert stats["connections_total"] == 2


async def test_latest_wins_for_a_client_that_does_not_read(
        base_settings: Settings, namespace: str, redis_url: str) -> None:
    """3,000 states of 6 candles (500 each, the last one closed) to a client that is not
    reading: it gets the latest of each, never an older after a newer, and every closed one."""
    n, per_candle = 3000, 500
    settings = base_settings.replace(ws_queue_size=8, ws_slow_close_s=60.0)
    publisher = aioredis.Redis.from_url(redis_url)
    channel = redis_keys.channel(namespace, "kline", "BTCUSDT", "1m")
    try:
        with serving(settings, namespace, send_buffer=4096) as server:
            sock = small_buffer_socket(server.port)
            async with connect(server.url, sock=sock, max_queue=1) as ws:
                assert await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m"]) == {"result": None,
                                                                            "id": 1}
                for start in range(1, n + 1, 500):
                    pipe = publisher.pipeline(transaction=False)
                    for seq in range(start, min(start + 500, n + 1)):
                        minute, nth = divmod(seq - 1, per_candle)
                        pipe.publish(channel, candle(seq, minute=minute,
                                                     closed=nth == per_candle - 1))
                    await pipe.execute()
                await until(lambda: server.stats()["updates_received"] == n)
                seqs: list[int] = []
                closed: list[int] = []
                while not seqs or seqs[-1] != n:
                    data = (await recv(ws))["data"]
                    seqs.append(data["trades"])
                    if data["closed"]:
                        closed.append(data["open_time"])
                await silent(ws, 0.2)
            stats = server.stats()
        assert seqs == sorted(set(seqs))  # never an older one after a newer one
        # The final state of every candle, however quickly the next one followed.
        assert closed == [1_700_000_040_000 + m * 60_000 for m in range(n // per_candle)]
        assert set(range(per_candle, n + 1, per_candle)) <= set(seqs)
        # Replaced while waiting for the fan-out, or in the client's queue.
        coalesced = stats["coalesced_messages"] + stats["coalesced_updates"]
        assert coalesced > 0
        assert len(seqs) + coalesced == n  # each one sent or replaced
        assert stats["dropped_messages"] == 0
        assert stats["slow_disconnects"] == 0
    finally:
        await publisher.aclose()


@pytest.mark.parametrize("direct_write", [True, False], ids=["direct", "asgi"])
async def test_latest_wins_in_the_queue_of_a_client_whose_socket_is_full(
        base_settings: Settings, namespace: str, redis_url: str, direct_write: bool) -> None:
    """Big signals fill the client's path first; kline states then arrive one by one (the
    fan-out keeps up) and wait in the client's own queue: same-candle states replace each
    other there, a closed candle is never replaced by the next candle."""
    settings = base_settings.replace(ws_queue_size=1000, ws_slow_close_s=60.0)
    publisher = aioredis.Redis.from_url(redis_url)
    kline = redis_keys.channel(namespace, "kline", "BTCUSDT", "1m")
    signals = redis_keys.channel(namespace, "signals", "BTCUSDT", "1m")
    candles, states = 6, 100
    try:
        with serving(settings, namespace, send_buffer=4096,
                     direct_write=direct_write) as server:
            sock = small_buffer_socket(server.port)
            async with connect(server.url, sock=sock, max_queue=1, max_size=None) as ws:
                assert (await ask(ws, "SUBSCRIBE", ["btcusdt@kline_1m", "btcusdt@signals"])
                        )["result"] is None
                assert server.stats()["direct_connections"] == int(direct_write)
                for i in range(10):
                    await publisher.publish(signals, orjson.dumps({"n": i, "pad": "x" * 30_000}))
                await until(lambda: server.stats()["queue_sizes"]["signals"] > 0)
                for seq in range(1, candles * states + 1):
                    minute, nth = divmod(seq - 1, states)
                    await publisher.publish(kline, candle(seq, minute=minute,
                                                          closed=nth == states - 1))
                    await asyncio.sleep(0.001)
                await until(lambda: server.stats()["updates_received"] == 10 + candles * states)
                got: list[Any] = []
                while not got or got[-1].get("trades") != candles * states:
                    got.append((await recv(ws))["data"])
                await silent(ws, 0.2)
            stats = server.stats()
        assert [d["n"] for d in got if "n" in d] == list(range(10))
        seqs = [d["trades"] for d in got if "trades" in d]
        assert seqs == sorted(set(seqs))
        assert [d["open_time"] for d in got if d.get("closed")] == [
            1_700_000_040_000 + m * 60_000 for m in range(candles)]
        assert stats["coalesced_messages"] > 0  # replaced in the client's queue
        assert len(seqs) + stats["coalesced_messages"] + stats["coalesced_updates"] == \
            candles * states
    finally:
        await publisher.aclose()


@pytest.mark.parametrize("direct_write", [True, False], ids=["direct", "asgi"])
async def test_a_slow_client_is_closed_and_others_stay_on_time(
        base_settings: Settings, namespace: str, redis_url: str, direct_write: bool) -> None:
    settings = base_settings.replace(ws_queue_size=16, ws_slow_close_s=0.5)
    publisher = aioredis.Redis.from_url(redis_url)
    timeframes = settings.timeframes
    published: dict[int, float] = {}
    delays: list[float] = []
    note = "x" * 1000

    async def publish(seq: int) -> None:
        """One step: a signal and the 1m..1d klines of BTCUSDT, as one pipeline."""
        pipe = publisher.pipeline(transaction=False)
        pipe.publish(redis_keys.channel(namespace, "signals", "BTCUSDT", "1m"),
                     orjson.dumps({"name": "x", "seq": seq, "note": note}))
        for tf in timeframes:
            pipe.publish(redis_keys.channel(namespace, "kline", "BTCUSDT", tf),
                         candle(seq, tf=tf))
        published[seq] = time.monotonic()
        await pipe.execute()

    async def read(ws: ClientConnection, last: list[int]) -> tuple[list[int], list[int]]:
        signals: list[int] = []
        klines: list[int] = []
        while not (last and signals and klines and signals[-1] == klines[-1] == last[0]):
            message = await recv(ws)
            data = message["data"]
            seq = data.get("seq", data.get("trades"))
            delays.append(time.monotonic() - published[seq])
            (signals if message["stream"] == "btcusdt@signals" else klines).append(seq)
        return signals, klines

    try:
        with serving(settings, namespace, send_buffer=4096,
                     direct_write=direct_write) as server:
            async with connect(server.url) as normal, \
                    connect(server.url, sock=small_buffer_socket(server.port), max_queue=1) \
                    as slow_events, \
                    connect(server.url, sock=small_buffer_socket(server.port), max_queue=1) \
                    as slow_kline:
                assert (await ask(normal, "SUBSCRIBE", ["btcusdt@kline_1m",
                                                        "btcusdt@signals"]))["result"] is None
                assert (await ask(slow_events, "SUBSCRIBE", ["btcusdt@signals"]))["id"] == 1
                assert (await ask(slow_kline, "SUBSCRIBE",
                                  [f"btcusdt@kline_{tf}" for tf in timeframes]))["id"] == 1
                assert server.stats()["direct_connections"] == 3 * direct_write
                last: list[int] = []
                reader = asyncio.create_task(read(normal, last))
                seq = 0
                deadline = time.monotonic() + 15
                while server.stats()["slow_disconnects"] < 2:  # 200 steps a second
                    assert time.monotonic() < deadline, server.stats()
                    seq += 1
                    await publish(seq)
                    await asyncio.sleep(0.005)
                closed_at = seq
                last.append(seq + 100)
                for _ in range(100):  # and after they were closed
                    seq += 1
                    await publish(seq)
                    await asyncio.sleep(0.005)
                signals, klines = await asyncio.wait_for(reader, 10)
                # The normal client got every signal, in order, and klines in order up to the
                # last one, on time, all along.
                assert signals == list(range(1, seq + 1))
                assert klines == sorted(set(klines)) and klines[-1] == seq
                assert len(klines) > closed_at
                delays.sort()
                assert delays[len(delays) // 2] < 0.05, delays[len(delays) // 2]
                assert delays[int(len(delays) * 0.99)] < 0.25, delays[int(len(delays) * 0.99)]

                reasons = []
                for ws in (slow_events, slow_kline):
                    # Reading again, a slow client gets what was in flight, then the close.
                    with pytest.raises(ConnectionClosed) as info:
                        while True:
                            await recv(ws)
                    assert info.value.rcvd is not None
                    assert info.value.rcvd.code == 1008
                    reasons.append(info.value.rcvd.reason)
                # Signals queue up (the queue fills); klines are latest-wins (at most one
                # queued per stream), so only the socket shows that client is stuck.
                assert reasons[0].startswith("too slow: ") and "queue full for" in reasons[0]
                assert re.fullmatch(r"too slow: socket not reading for \d+\.\d s", reasons[1])
            stats = server.stats()
            assert stats["slow_disconnects"] == 2
            assert stats["dropped_messages"] > 0  # the slow signals client's overflow
            assert stats["coalesced_messages"] > 0  # the slow kline client's queue
            assert stats["active_connections"] == 0
    finally:
        await publisher.aclose()


def raw_handshake(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads or answers."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_client_that_answers_no_ping_is_closed(base_settings: Settings,
                                                       namespace: str) -> None:
    settings = base_settings.replace(ws_ping_interval_s=0.2)
    with serving(settings, namespace) as server:
        async with connect(server.url) as answering:  # websockets answers pings by itself
            sock = await asyncio.to_thread(raw_handshake, server.port)
            try:
                await until(lambda: server.stats()["active_connections"] == 2)
                started = time.monotonic()
                await asyncio.sleep(0.3)
                assert server.stats()["active_connections"] == 2  # not before 3 intervals
                await until(lambda: server.stats()["active_connections"] == 1, timeout=5)
                assert time.monotonic() - started < 3
                assert server.stats()["disconnects"] == {"connection_lost": 1}
            finally:
                sock.close()
            await asyncio.sleep(0.6)
            assert await ask(answering, "PING") == {"result": "PONG", "id": 1}
            assert server.stats()["active_connections"] == 1


async def test_hub_close_says_going_away_and_refuses_new_clients(
        base_settings: Settings, namespace: str) -> None:
    with serving(base_settings, namespace) as server:
        async with connect(server.url) as ws:
            assert (await ask(ws, "SUBSCRIBE", ["btcusdt@patterns"]))["result"] is None
            await asyncio.to_thread(server.call, server.hub.close())
            with pytest.raises(ConnectionClosed) as info:
                await recv(ws)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001,
                                                                      "server shutting down")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url):
                pass
        assert refused.value.response.status_code == 403
        stats = server.stats()
        assert stats["disconnects"] == {"shutdown": 1}
        assert stats["subscriptions"] == {}


async def test_finish_runs_a_coroutine_on_from_where_its_first_step_stopped() -> None:
    """The fan-out's synchronous send path: a send that had to wait is finished by a task."""
    from api.ws.client import finish

    gate = asyncio.Event()
    steps: list[str] = []

    async def send() -> None:
        steps.append("started")
        await gate.wait()
        await asyncio.sleep(0)  # a bare yield too
        steps.append("done")

    coro = send()
    yielded = coro.send(None)
    assert steps == ["started"] and isinstance(yielded, asyncio.Future)
    task = asyncio.create_task(finish(coro, yielded))
    await asyncio.sleep(0.01)
    assert not task.done()
    gate.set()
    await asyncio.wait_for(task, 1)
    assert steps == ["started", "done"]

    async def fails() -> None:
        await gate2.wait()
        raise ValueError("from inside")

    gate2 = asyncio.Event()
    coro = fails()
    task = asyncio.create_task(finish(coro, coro.send(None)))
    gate2.set()
    with pytest.raises(ValueError, match="from inside"):
        await asyncio.wait_for(task, 1)

    # Cancelled while waiting: the coroutine is unwound (its finally runs), not left behind.
    unwound: list[bool] = []

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwound.append(True)

    coro = never()
    task = asyncio.create_task(finish(coro, coro.send(None)))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled() and unwound == [True]


def test_candle_of_reads_the_open_time_of_workers_payloads() -> None:
    from api.ws.fanout import candle_of

    assert candle_of(candle(1, minute=2)) == 1_700_000_160_000
    assert candle_of(orjson.dumps({"symbol": "BTCUSDT", "timeframe": "1m",
                                   "open_time": 1_700_000_040_000,
                                   "values": {"rsi_14": 51.5}})) == 1_700_000_040_000
    assert candle_of(b'{"open_time": 5}') == 5
    assert candle_of(b'{"name":"hammer"}') is None
