"""Health and statistics: of the API's dependencies, its cache, the pipeline and the WebSockets.

The stats bodies carry the fields docs/DESIGN.md names (the contract) and more beside them.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api import pipeline
from api.context import ApiContext, context
from api.redis_link import RedisDown
from api.responses import Json
from api.store import DatabaseDown

router = APIRouter(prefix="/api", tags=["stats"])
Ctx = Annotated[ApiContext, Depends(context)]


async def _health(ctx: ApiContext) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        latency, mode = await ctx.store.health()
        checks["database"] = {"ok": True, "latency_ms": round(latency, 3), "mode": mode,
                              "required": True}
    except DatabaseDown as exc:
        checks["database"] = {"ok": False, "error": str(exc), "mode": None, "required": True}
    try:
        checks["redis"] = {"ok": True, "latency_ms": round(await ctx.link.ping(), 3),
                           "required": False}
    except RedisDown as exc:
        checks["redis"] = {"ok": False, "error": str(exc), "required": False,
                           "note": "serving from memory and the database"}
    checks["pubsub"] = {"ok": ctx.listener.connected, "required": False}
    down = [name for name, c in checks.items() if not c["ok"]]
    required_down = [name for name in down if checks[name]["required"]]
    status = "down" if required_down else "degraded" if down else "ok"
    return {"status": status, "database_mode": checks["database"]["mode"],
            "dependencies": checks, "uptime_s": round(time.time() - ctx.started, 1)}


@router.get("/health", response_class=Json,
            responses={503: {"description": "a required dependency (the database) is down"}})
async def health(ctx: Ctx) -> Json:
    """Each dependency's state and latency and the database mode (timescaledb or postgresql);
    503 when a required one is down. Redis down is `degraded`: the API keeps answering."""
    body = await _health(ctx)
    return Json(body, status_code=503 if body["status"] == "down" else 200)


@router.get("/cache/stats", response_class=Json)
async def cache_stats(ctx: Ctx) -> Json:
    return Json({"cache_stats": ctx.cache.stats()})


async def _pipeline(ctx: ApiContext) -> dict[str, Any]:
    counters = await pipeline.stream_counters(ctx.link, ctx.ns)
    c = counters or {}
    batches = c.get("batches", 0.0)
    return {
        "total_processed": int(c.get("trades", 0)),
        "cache_hit_rate": ctx.cache.stats()["hit_rate"],
        "avg_processing_time_ms": round(c.get("busy_ms", 0.0) / batches, 3) if batches else 0.0,
        "errors_count": int(c.get("rejected", 0)),
        "symbols_count": len(ctx.settings.symbols),
        "timeframes_count": len(ctx.settings.timeframes),
        "candles_closed": int(c.get("candles_closed", 0)),
        "batches": int(batches),
        "duplicates": int(c.get("duplicates", 0)),
        "late_trades": int(c.get("late", 0)),
        "stream_counters_available": counters is not None,
    }


@router.get("/pipeline/stats", response_class=Json)
async def pipeline_stats(ctx: Ctx) -> Json:
    """The stream stage's counters (all its processes), cache hit rate, configuration size.
    `avg_processing_time_ms` is per stream batch; `errors_count` counts dead-lettered input."""
    return Json({"pipeline_stats": await _pipeline(ctx)})


@router.get("/websocket/stats", response_class=Json)
async def websocket_stats(ctx: Ctx) -> Json:
    return Json({"websocket_stats": ctx.hub.stats()})


async def _probe(ctx: ApiContext, name: str) -> dict[str, Any]:
    cached = ctx.probes.get(name)
    if cached is None:
        if name == "kafka":
            async def kafka() -> dict[str, Any]:
                return await pipeline.kafka_lag(ctx.settings, ctx.settings.stream_group)

            cached = pipeline.Cached(kafka, pipeline.SLOW_PROBE_TTL_S)
        else:
            async def workers() -> dict[str, Any]:
                return await pipeline.celery_workers(ctx.settings)

            cached = pipeline.Cached(workers, pipeline.SLOW_PROBE_TTL_S)
        ctx.probes[name] = cached
    return await cached.get()


@router.get("/system/overview", response_class=Json)
async def system_overview(ctx: Ctx) -> Json:
    """All of the above plus Kafka consumer lag, Celery queue depths and worker count."""
    workers = await _probe(ctx, "celery")
    return Json({
        "health": await _health(ctx),
        "cache_stats": ctx.cache.stats(),
        "pipeline_stats": await _pipeline(ctx),
        "websocket_stats": ctx.hub.stats(),
        "kafka": {"consumer_lag": await _probe(ctx, "kafka")},
        "celery": {"queues": await pipeline.celery_queues(ctx.link, ctx.settings), **workers},
        "namespace": ctx.ns,
    })
