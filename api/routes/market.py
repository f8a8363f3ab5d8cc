"""Market data: candles with indicators, the real-time view, signals and patterns.

Every route answers from the cache (api/cache.py): process memory, then Redis, then the
database. What the workers keep in Redis (the forming candle, the latest indicators, recent
signals) is read from their keys; history comes from PostgreSQL. Cache tags follow api/cache.py:
`SYMBOL:tf` for a symbol and timeframe, `SYMBOL:signals` for a symbol's signals and patterns.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from redis.asyncio import Redis
from starlette.routing import Route

from api import params
from api.context import ApiContext, context_of
from api.redis_link import RedisDown
from api.responses import Json
from api.store import DatabaseDown
from core import redis_keys
from core.timeframes import TIMEFRAME_MS

router = APIRouter(prefix="/api", tags=["market"])
RECENT_SIGNALS = 20


@router.get("/symbols", response_class=Json)
async def symbols(request: Request) -> Json:
    """The symbols and timeframes this server serves."""
    ctx = context_of(request)
    return Json({"symbols": list(ctx.settings.symbols),
                 "timeframes": list(ctx.settings.timeframes)})


async def _latest(ctx: ApiContext, symbol: str, tf: str) -> tuple[
        dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """The worker-maintained Redis values: latest candle, latest indicators, recent signals."""
    ns = ctx.ns

    async def read(r: Redis) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        pipe.get(redis_keys.candle(ns, symbol, tf))
        pipe.get(redis_keys.indicators(ns, symbol, tf))
        pipe.lrange(redis_keys.signals(ns, symbol, tf), 0, RECENT_SIGNALS - 1)
        return list(await pipe.execute())

    candle_raw, ind_raw, sig_raw = await ctx.link.call(read)
    return (None if candle_raw is None else orjson.loads(candle_raw),
            None if ind_raw is None else orjson.loads(ind_raw),
            [orjson.loads(s) for s in sig_raw])


async def _window(ctx: ApiContext, symbol: str, tf: str, start: int, end: int,
                  limit: int) -> list[dict[str, Any]]:
    """Closed candles from the workers' Redis window: the fallback when the database is away."""

    async def read(r: Redis) -> list[bytes]:
        raw: list[bytes] = await r.zrevrangebyscore(  # type: ignore[assignment]
            redis_keys.candle_window(ctx.ns, symbol, tf), end, start, start=0, num=limit)
        return raw

    return [orjson.loads(c) for c in reversed(await ctx.link.call(read))]


@router.get("/market/data", response_class=Json)
async def market_data(
    request: Request,
    symbol: Annotated[str, Query(description="e.g. BTCUSDT (see /api/symbols)")],
    timeframe: Annotated[str, Query(description="e.g. 1m (see /api/symbols)")] = "1m",
    start: Annotated[str | None, Query(description="epoch ms or ISO 8601")] = None,
    end: Annotated[str | None, Query(description="epoch ms or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=params.MAX_LIMIT)] = params.DEFAULT_LIMIT,
    include: Annotated[str | None, Query(description="`indicators` to add them")] = None,
) -> Json:
    """Candles oldest first, the forming one last (`closed: false`); with
    `include=indicators` each candle carries its indicator values (null during warm-up)."""
    ctx = context_of(request)
    sym = params.symbol(ctx.settings, symbol)
    tf = params.timeframe(ctx.settings, timeframe)
    lo, hi = params.time_range(start, end)
    if include not in (None, "", "indicators"):
        raise params.BadRequest(f"include={include!r}: the only choice is `indicators`")
    with_ind = include == "indicators"
    # A range that ended before the current candle is history: nothing the feed does changes
    # it except a late trade (rare; the Redis layer's TTL bounds that), so Redis may keep it.
    historical = hi < time.time() * 1000 - TIMEFRAME_MS[tf] - ctx.settings.late_grace_ms

    async def load() -> bytes:
        candles: list[dict[str, Any]]
        try:
            candles = await ctx.store.candles(sym, tf, lo, hi, limit, with_ind)
        except DatabaseDown:
            try:
                candles = await _window(ctx, sym, tf, lo, hi, limit)
            except RedisDown:
                raise DatabaseDown("neither PostgreSQL nor Redis is answering") from None
            if with_ind:
                for c in candles:
                    c["indicators"] = None
        if not historical:
            try:
                latest, indicators, _ = await _latest(ctx, sym, tf)
            except RedisDown:
                latest = indicators = None
            last = candles[-1]["open_time"] if candles else -1
            if latest is not None and last < latest["open_time"] and lo <= latest[
                    "open_time"] <= hi:
                if with_ind:
                    same = indicators is not None and indicators["open_time"] == latest[
                        "open_time"]
                    latest["indicators"] = indicators["values"] if same and indicators else None
                candles.append(latest)
                candles = candles[-limit:]
        return orjson.dumps({"symbol": sym, "timeframe": tf, "candles": candles})

    key = f"market:{sym}:{tf}:{lo}:{hi}:{limit}:{int(with_ind)}"
    # History carries its own tag: forming-candle updates (many a second) leave it cached.
    tags = (f"{sym}:{tf}:closed",) if historical else (f"{sym}:{tf}", f"{sym}:{tf}:closed")
    return Json(await ctx.cache.get(key, load, tags=tags, redis_layer=historical))


@router.get("/real-time/{symbol}/{timeframe}", response_class=Json)
async def real_time(request: Request, symbol: str, timeframe: str) -> Json:
    """The live candle, the latest indicators and the latest signals of one symbol/timeframe."""
    ctx = context_of(request)
    sym = params.symbol(ctx.settings, symbol)
    tf = params.timeframe(ctx.settings, timeframe)

    async def load() -> bytes:
        try:
            candle, indicators, signals = await _latest(ctx, sym, tf)
        except RedisDown:
            latest = await ctx.store.candles(sym, tf, 0, params.MAX_TIME_MS, 1, False)
            candle = latest[-1] if latest else None
            indicators = await ctx.store.latest_indicators(sym, tf)
            signals = await ctx.store.events("signals", sym, tf, 0, RECENT_SIGNALS)
        return orjson.dumps({"symbol": sym, "timeframe": tf, "candle": candle,
                             "indicators": indicators, "signals": signals})

    return Json(await ctx.cache.get(f"realtime:{sym}:{tf}", load, tags=(f"{sym}:{tf}",),
                                    redis_layer=False))


async def _events(ctx: ApiContext, kind: str, symbol: str, timeframe: str | None,
                  since: str | None, limit: int) -> Json:
    sym = params.symbol(ctx.settings, symbol)
    tf = None if not timeframe else params.timeframe(ctx.settings, timeframe)
    since_ms = params.time_ms("since", since, 0)

    async def load() -> bytes:
        rows = await ctx.store.events(kind, sym, tf, since_ms, limit)
        return orjson.dumps({"symbol": sym, "timeframe": tf, kind: rows})

    key = f"{kind}:{sym}:{tf}:{since_ms}:{limit}"
    return Json(await ctx.cache.get(key, load, tags=(f"{sym}:signals",), redis_layer=False))


async def real_time_fast(request: Request) -> Json:
    """`real_time` as a plain Starlette endpoint: the most polled route skips FastAPI's
    per-request parameter solving (about half its cost here). The FastAPI route above stays
    for the OpenAPI schema and answers nothing this one does not."""
    params_ = request.path_params
    return await real_time(request, params_["symbol"], params_["timeframe"])


FAST_ROUTES = [Route("/api/real-time/{symbol}/{timeframe}", real_time_fast, methods=["GET"])]


@router.get("/signals", response_class=Json)
async def signals(
    request: Request,
    symbol: str,
    timeframe: Annotated[str | None, Query(description="omit for every timeframe")] = None,
    since: Annotated[str | None, Query(description="epoch ms or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=params.MAX_LIMIT)] = 100,
) -> Json:
    """Signals newest first: name, direction, strength and the values that triggered them."""
    return await _events(context_of(request), "signals", symbol, timeframe, since, limit)


@router.get("/patterns", response_class=Json)
async def patterns(
    request: Request,
    symbol: str,
    timeframe: Annotated[str | None, Query(description="omit for every timeframe")] = None,
    since: Annotated[str | None, Query(description="epoch ms or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=params.MAX_LIMIT)] = 100,
) -> Json:
    """Candlestick patterns newest first."""
    return await _events(context_of(request), "patterns", symbol, timeframe, since, limit)
