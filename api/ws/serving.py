"""How to run the hub: the uvicorn settings it is built for (`**uvicorn_ws_options(settings)`
to `uvicorn.run` / `uvicorn.Config`) and the garbage collector settings for a process that
holds thousands of connections (`tune_gc()`, once, after start-up)."""

from __future__ import annotations

import gc
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
        # the keepalive pings below.
        "ws": "websockets-sansio",
        "ws_max_size": max(FRAME_LIMIT_BYTES, settings.ws_max_message_bytes),
        # A ping every interval; a client that answers none is dropped (1011) two intervals
        # after the unanswered ping: silent for three intervals since its last pong.
        "ws_ping_interval": interval,
        "ws_ping_timeout": 2 * interval,
        # Deflate compresses every message once per client: it about doubles the cost of
        # the fan-out, and the messages are small.
        "ws_per_message_deflate": False,
    }


#: Young-generation threshold: CPython's default (700) runs a collection every few hundred
#: surviving objects; a process fanning out 10^4-10^5 messages a second then collects
#: hundreds of times a second, and its full collections walk every connection's objects.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """For a process holding many WebSocket connections: freeze what start-up allocated (never
    scanned again) and collect the young generation less often.

    Measured with benchmarks/ws_fanout.py (10,000 connections, one process): with CPython's
    defaults the collector took 8 s of a 30 s run, in pauses of up to 1.2 s (full collections
    over every connection's objects, triggered by the objects that survive a busy spell);
    with these thresholds, 1.3 s in pauses of at most 0.4 s, and twice the messages
    delivered. Reference cycles are still collected, only less often.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
