"""The FastAPI application: `create_app(settings, ns)`; `alphaplus api` serves it with uvicorn.

Start-up never fails because Redis or PostgreSQL is away: the cache skips a missing Redis and
reconnects by itself, the store connects per request, and /api/health says what is down.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.cache import CacheManager
from api.context import ApiContext
from api.params import BadRequest
from api.pubsub import UpdateListener
from api.redis_link import RedisLink
from api.responses import Json
from api.routes import admin, jobs, market, replays, stats, websocket
from api.store import MarketStore
from api.ws.hub import Hub
from core import metrics
from core.exceptions import ServiceUnavailable
from core.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, ns: str | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment), serving namespace `ns`
    (default: the `api_namespace` setting)."""
    settings = settings or Settings.from_env()
    ns = ns or settings.api_namespace

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        link = RedisLink(settings.redis_url)
        await link.start()
        cache = CacheManager(link, ns, size=settings.api_cache_size,
                             ttl_s=settings.api_cache_ttl_s,
                             redis_ttl_s=settings.api_redis_cache_ttl_s)
        hub = Hub(settings)
        # The cache first: a reader must never get data older than what the hub pushes.
        listener = UpdateListener(settings.redis_url, ns, [cache.on_update, hub.on_update],
                                  log_every_s=settings.log_every_s)
        store = MarketStore(settings.database_url, ns)
        app.state.ctx = ApiContext(settings, ns, link, cache, store, hub, listener)
        await listener.start()
        # What start-up built lives as long as the process: keep full collections from walking
        # it again and again (10,000 clients connecting at once cost ~0.7 s pauses without).
        gc.freeze()
        try:
            yield
        finally:
            await listener.close()
            await hub.close()
            await link.close()
            store.close()

    app = FastAPI(
        title="AlphaPlus API",
        summary="Candles, indicators and signals from the live Binance feed.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=Json,
    )
    if settings.api_cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.api_cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    # Errors are counted here, in the handlers, rather than by a middleware: a middleware
    # would add its cost to every request of the hot cached routes.
    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        metrics.API_ERRORS.labels("400").inc()
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        # Only reached when no layer could answer (database down and nothing cached).
        metrics.API_ERRORS.labels("503").inc()
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.API_ERRORS.labels("422").inc()
        messages = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(messages)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # 401, 403, 404, 405 and the like: counted, then answered as FastAPI would.
        metrics.API_ERRORS.labels(str(exc.status_code)).inc()
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception (and re-raises it to the server) after this answer.
        metrics.API_ERRORS.labels("500").inc()
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    for module in (market, stats, admin, jobs, replays, websocket):
        app.include_router(module.router)
    # Requests are matched against the routes in order: the API's own first, before the
    # OpenAPI and docs pages FastAPI registered (each failed match costs a few µs).
    ours = [r for r in app.router.routes if getattr(r, "path", "").startswith(("/api/", "/ws"))]
    app.router.routes[:] = [*market.FAST_ROUTES, *ours,
                            *(r for r in app.router.routes if r not in ours)]
    app.mount("/metrics", make_asgi_app())
    app.mount("/", StaticFiles(directory=STATIC, html=True, check_dir=False), name="dashboard")
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory api.app:app_from_env` (what `alphaplus api` runs per worker)."""
    return create_app(Settings.from_env())
