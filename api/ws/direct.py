"""Pushed messages written straight to a client's transport, as frames built once per update.

Why: through ASGI, every message to every client goes `websocket.send` -> uvicorn's protocol ->
websockets' framing -> `transport.write`, ~13-20 µs a message here; at 10,000 clients that is
the whole budget. A server's frames are not masked (RFC 6455 5.1), so without per-message
compression a text frame's bytes are the same for every client: the fan-out builds them once
per update (`text_frame`) and each client's share is one `transport.write`.

Only under uvicorn's `websockets-sansio` implementation (api/ws/serving.py), the one this was
checked against; anywhere else (another server, another `ws` implementation, Starlette's
TestClient, a connection that negotiated permessage-deflate) `writer_for` returns None and the
client keeps the ASGI `send` path.

Reaching the transport: uvicorn gives the application its protocol's bound `send`, which
Starlette wraps in closures (`sender`, once by the exception middleware and once per route)
that close over the `send` they wrap; `writer_for` follows those down to the protocol. The
ASGI scope has no transport in it, and a middleware would have to be installed in every app
that mounts the hub; a Starlette that wraps differently only loses the fast path.

Sharing the transport with the protocol layer, which writes the handshake, pongs, keepalive
pings and close frames: each side writes whole frames, each with a single `transport.write`,
so frames never interleave inside each other. Data frames stop as soon as the connection
leaves the OPEN state (a close sent or received) or the transport closes: nothing may follow
a close frame. Closes themselves still go through ASGI, so that uvicorn's closing handshake
(its close timer, its `close_sent`) stays in charge.

Back-pressure: the transport calls the protocol's `pause_writing` above its high-water mark,
and uvicorn clears the protocol's `writable` event; `ready()` is false meanwhile and the
client queues (api/ws/client.py), and its drainer waits for `resume_writing`.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from starlette.websockets import WebSocket
from websockets.protocol import State

_OPEN = State.OPEN
_FIN_TEXT = 0x81  # FIN + opcode 1 (text); RSV bits clear: no extension touches the frame
#: How many wrappers deep `writer_for` looks for uvicorn's send.
_MAX_WRAPPERS = 8

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - another server: every client takes the ASGI path
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8), RFC 6455 5.2: the
    7-bit length, or 126 and a 16-bit one, or 127 and a 64-bit one."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


class DirectWriter:
    """The transport of one accepted connection, and what says whether a frame may go now."""

    __slots__ = ("_conn", "_protocol", "_writable", "transport")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._conn = protocol.conn  # websockets' ServerProtocol: the connection's state
        self._writable: asyncio.Event = protocol.writable
        self.transport: asyncio.Transport = protocol.transport

    def is_open(self) -> bool:
        """Data frames may still be written: no close frame sent or received, not lost."""
        return self._conn.state is _OPEN and not self.transport.is_closing()

    def ready(self) -> bool:
        """Open, and the transport is below its high-water mark."""
        return (self._writable.is_set() and self._conn.state is _OPEN
                and not self.transport.is_closing())

    async def wait_writable(self) -> None:
        """Until the transport drained below its low-water mark, or the connection was lost
        (uvicorn sets the event then too: check `is_open` after)."""
        await self._writable.wait()


def _uvicorn_protocol(send: Any) -> Any:
    fn = send
    for _ in range(_MAX_WRAPPERS):
        owner = getattr(fn, "__self__", None)
        if owner is not None:
            return owner if isinstance(owner, WebSocketsSansIOProtocol) else None
        code, closure = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
        if code is None or closure is None or "send" not in code.co_freevars:
            return None
        fn = closure[code.co_freevars.index("send")].cell_contents
    return None


def writer_for(websocket: WebSocket) -> DirectWriter | None:
    """The direct writer of an accepted connection, or None: it must keep the ASGI path."""
    if WebSocketsSansIOProtocol is None:
        return None  # pragma: no cover
    try:
        protocol = _uvicorn_protocol(websocket._send)
    except (AttributeError, ValueError):  # an empty cell, or no `_send` on this WebSocket
        return None
    if protocol is None or protocol.transport is None:
        return None
    if protocol.conn.extensions:
        return None  # permessage-deflate (or any extension): raw frames would be wrong
    if protocol.conn.state is not _OPEN or not protocol.handshake_complete:
        return None
    return DirectWriter(protocol)
