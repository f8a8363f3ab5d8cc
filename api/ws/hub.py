"""The WebSocket hub: `/ws` connections, their subscriptions, and the fan-out of updates.

One hub per API process (each process has its own pub/sub listener feeding it), so capacity
scales with processes and nothing here is shared between them. The protocol is described in
api/ws/protocol.py.

Updates go through api/ws/fanout.py: serialised and framed once per update (shared by every
subscriber) and handed to the subscribers of its stream only (a dict stream -> set of
clients); the fan-out never awaits a socket. Under uvicorn's websockets-sansio, messages are
written to each client's transport directly (api/ws/direct.py); elsewhere, through ASGI. A
sweeper closes clients that stay stalled (queue full, or socket not taking data) for
`ws_slow_close_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from api.updates import Update
from api.ws import protocol
from api.ws.client import Client
from api.ws.direct import writer_for
from api.ws.fanout import FanOut
from api.ws.protocol import CATEGORY_NAMES, LIMIT_NAMES, ErrorCode, ProtocolError
from api.ws.stats import HubStats, observe
from core.settings import Settings

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
#: How long `close()` waits for clients to take their close frame.
CLOSE_WAIT_S = 2.0


class Hub:
    def __init__(self, settings: Settings, direct_write: bool = True) -> None:
        """`direct_write=False`: every message through ASGI `send` even where the transport
        could be written to (the benchmark's baseline)."""
        self.settings = settings
        self.direct_write = direct_write
        self.catalog = protocol.StreamCatalog(settings.symbols, settings.timeframes)
        self.counters = HubStats()
        self._clients: set[Client] = set()
        self._subs: dict[str, set[Client]] = {}
        self._token = settings.ws_token.encode()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self._fanout = FanOut(self._subs, self.counters)
        observe(self)

    # -- updates from the listener
    async def on_update(self, update: Update) -> None:
        """Records the update and returns at once: the fan-out runs in a task of its own."""
        self.counters.updates += 1
        self._fanout.offer(update)

    # -- one connection
    async def serve(self, websocket: WebSocket) -> None:
        """The whole life of one `/ws` connection."""
        if self._closing:
            await websocket.close(GOING_AWAY, "server shutting down")
            return
        if self._token and not self._authorized(websocket):
            self.counters.rejected += 1
            await self._deny(websocket)
            return
        await websocket.accept()
        s = self.settings
        direct = writer_for(websocket) if self.direct_write else None
        client = Client(websocket, self.counters, s.ws_queue_size, s.ws_requests_per_s, direct)
        self._clients.add(client)
        self.counters.connections_total += 1
        self._start_sweeper()
        code = 1005
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = int(message.get("code", 1005))
                    break
                if client.close_reason is not None:
                    continue  # closing: the request would only be answered into the void
                data = message.get("text")
                self._handle(client, data if data is not None else message.get("bytes") or b"")
        except Exception:
            log.exception("a /ws connection failed")
            self.counters.errors += 1
            if client.close_kind is None:
                client.close_reason, client.close_kind = "internal error", "error"
                self.counters.disconnects["error"] += 1
            with contextlib.suppress(Exception):
                await websocket.close(INTERNAL_ERROR, "internal error")
        finally:
            self._forget(client)
            client.cancel()
            if client.close_kind is None:
                kind = "client_closed" if code in (1000, 1001) else "connection_lost"
                self.counters.disconnects[kind] += 1

    def _handle(self, client: Client, data: str | bytes) -> None:
        now = time.monotonic()
        s = self.settings
        if not client.bucket.take(now):
            self._violation(client, ErrorCode.TOO_MANY_REQUESTS,
                            f"too many requests: at most {s.ws_requests_per_s:g} a second", now)
            return
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        if size > s.ws_max_message_bytes:
            self._violation(client, ErrorCode.MESSAGE_TOO_LARGE,
                            f"message too large: {size} bytes, at most "
                            f"{s.ws_max_message_bytes}", now)
            return
        try:
            request = protocol.parse_request(data, self.catalog)
        except ProtocolError as exc:
            self.counters.errors += 1
            client.answer(exc.encode())
            return
        if request.method == protocol.SUBSCRIBE:
            new = [name for name in request.streams if name not in client.streams]
            if len(client.streams) + len(new) > s.ws_max_streams:
                self._violation(client, ErrorCode.TOO_MANY_STREAMS,
                                f"too many streams: {len(client.streams)} subscribed + "
                                f"{len(new)} new > {s.ws_max_streams}", now, request.id)
                return
            # The answer first: the streams' first messages are queued behind it.
            client.answer(protocol.result(request.id, None))
            for name in new:
                client.streams.add(name)
                self._subs.setdefault(name, set()).add(client)
        elif request.method == protocol.UNSUBSCRIBE:
            for name in request.streams:
                if name in client.streams:
                    self._unsubscribe(client, name)
                    client.unqueue_stream(name)
            client.answer(protocol.result(request.id, None))
        elif request.method == protocol.LIST_SUBSCRIPTIONS:
            client.answer(protocol.result(request.id, sorted(client.streams)))
        else:
            client.answer(protocol.result(request.id, "PONG"))

    def _violation(self, client: Client, code: ErrorCode, msg: str, now: float,
                   request_id: protocol.RequestId = None) -> None:
        name = LIMIT_NAMES[code]
        self.counters.violations[name] += 1
        self.counters.errors += 1
        client.answer(protocol.error(code, msg, request_id))
        if client.violations.add(now):
            self._close(client, f"too many violations: {name}", "violations", queued=True)

    # -- subscriptions
    def _unsubscribe(self, client: Client, name: str) -> None:
        client.streams.discard(name)
        subscribers = self._subs.get(name)
        if subscribers is not None:
            subscribers.discard(client)
            if not subscribers:
                del self._subs[name]

    def _drop_subscriptions(self, client: Client) -> None:
        for name in list(client.streams):
            self._unsubscribe(client, name)

    def _forget(self, client: Client) -> None:
        self._drop_subscriptions(client)
        self._clients.discard(client)

    # -- slow clients
    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        limit = self.settings.ws_slow_close_s
        interval = max(0.05, min(1.0, limit / 4))
        while self._clients:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for client in list(self._clients):
                stalled = client.stalled_for(now)
                if stalled is not None and stalled >= limit and client.close_reason is None:
                    self._close(client, f"too slow: {client.stall_reason(now)}", "slow")

    def _close(self, client: Client, reason: str, kind: str, queued: bool = False,
               code: int = POLICY_VIOLATION) -> None:
        """The server closes `client`: no more updates for it from now on. `queued`: after
        what is already in its queue (answers it should read), else at once. A slow client
        stops counting as connected at once: it may never read its close frame."""
        self._drop_subscriptions(client)
        if client.close_kind is None:
            self.counters.disconnects[kind] += 1
        if queued:
            client.close_after_queue(code, reason, kind)
        else:
            client.close_soon(code, reason, kind)
        if kind == "slow":
            self._clients.discard(client)

    # -- the handshake
    def _authorized(self, websocket: WebSocket) -> bool:
        given = websocket.query_params.get("token")
        if given is None:
            scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            given = value.strip()
        return hmac.compare_digest(given.encode(), self._token)

    async def _deny(self, websocket: WebSocket) -> None:
        """Refuse the handshake: HTTP 401 with the reason where the server can send a response
        (uvicorn can), else a close before accepting (the client sees HTTP 403)."""
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(PlainTextResponse(
                "invalid or missing token (give ?token= or Authorization: Bearer)",
                status_code=401, headers={"WWW-Authenticate": "Bearer"}))
        else:
            await websocket.close(POLICY_VIOLATION, "invalid or missing token")

    # -- the process's view
    def client_count(self) -> int:
        return len(self._clients)

    def queued(self) -> list[int]:
        totals = [0] * len(CATEGORY_NAMES)
        for client in self._clients:
            for i, n in enumerate(client.counts):
                totals[i] += n
        return totals

    def stats(self) -> dict[str, object]:
        c = self.counters
        return {
            "active_connections": len(self._clients),
            "direct_connections": sum(1 for cl in self._clients if cl.direct is not None),
            "total_messages_sent": c.sent,
            "avg_latency_ms": round(c.avg_ms(), 3),
            "p99_latency_ms": round(c.p99_ms(), 3),
            "errors_count": c.errors,
            "queue_sizes": dict(zip(CATEGORY_NAMES, self.queued(), strict=True)),
            "slow_disconnects": c.disconnects["slow"],
            "limit_violations": {name: c.violations[name] for name in LIMIT_NAMES.values()},
            "disconnects": dict(c.disconnects),
            "connections_total": c.connections_total,
            "rejected_connections": c.rejected,
            "updates_received": c.updates,
            "waiting_updates": self._fanout.waiting(),
            "coalesced_updates": c.coalesced_updates,
            "coalesced_messages": c.coalesced,
            "dropped_messages": c.dropped,
            "subscriptions": {name: len(subs) for name, subs in sorted(self._subs.items())},
        }

    async def close(self) -> None:
        """Close every client (1001 going away) and refuse new ones."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._fanout.close()
        closers = []
        for client in list(self._clients):
            if client.closer is None:
                self._close(client, "server shutting down", "shutdown", code=GOING_AWAY)
            if client.closer is not None:
                closers.append(client.closer)
        if closers:
            await asyncio.wait(closers, timeout=CLOSE_WAIT_S)
