"""Everything a request handler needs, built once per API process by the app's lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, WebSocket

from api.cache import CacheManager
from api.pubsub import UpdateListener
from api.redis_link import RedisLink
from api.store import MarketStore
from api.ws.hub import Hub
from core.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    ns: str  # the Redis namespace and database run id served: `live` or a replay's
    link: RedisLink
    cache: CacheManager
    store: MarketStore
    hub: Hub
    listener: UpdateListener
    started: float = field(default_factory=time.time)
    # Slow probes' cached results (api/pipeline.py `Cached`), made on first use.
    probes: dict[str, Any] = field(default_factory=dict)


def context_of(request: Request) -> ApiContext:
    """The process's context, for the hot routes: taking `request` directly spares them
    FastAPI's dependency solving (~40 µs a request here)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def context(request: Request) -> ApiContext:
    """The FastAPI dependency that hands the process's context to a route (async: FastAPI
    runs a plain `def` dependency in a worker thread, which cost ~150 µs a request)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def ws_context(websocket: WebSocket) -> ApiContext:
    ctx: ApiContext = websocket.app.state.ctx
    return ctx
