"""The uvicorn settings the hub is built for: pass `**uvicorn_ws_options(settings)` to
`uvicorn.run` / `uvicorn.Config`."""

from __future__ import annotations

from typing import TypedDict

from core.settings import Settings

#: Frames above this are cut by uvicorn itself (close 1009) before the hub sees them; requests
#: between `ws_max_message_bytes` and this get the protocol's "message too large" error.
FRAME_LIMIT_BYTES = 64 * 1024


class UvicornWsOptions(TypedDict):
    ws: str
    ws_max_size: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool


def uvicorn_ws_options(settings: Settings) -> UvicornWsOptions:
    interval = settings.ws_ping_interval_s
    return {
        # The sans-I/O websockets implementation: it answers client pings itself and sends
        # the keepalive pings below; the hub writes its frames to this implementation's
        # transport directly (api/ws/direct.py; any other one gets the ASGI path).
        "ws": "websockets-sansio",
        "ws_max_size": max(FRAME_LIMIT_BYTES, settings.ws_max_message_bytes),
        # A ping every interval; a client that answers none is dropped (1011) two intervals
        # after the unanswered ping: silent for three intervals since its last pong.
        "ws_ping_interval": interval,
        "ws_ping_timeout": 2 * interval,
        # Deflate compresses every message once per client: it about doubles the cost of
        # the fan-out, the messages are small, and a compressed connection cannot take the
        # shared pre-built frames (it would fall back to ASGI send).
        "ws_per_message_deflate": False,
    }

