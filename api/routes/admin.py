"""Admin endpoints: they change state, so they need the bearer token (api/security.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api import params
from api.context import ApiContext, context
from api.responses import Json
from api.security import require_admin

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(require_admin)])


class ClearRequest(BaseModel):
    symbol: str | None = Field(default=None, description="only this symbol's entries")
    timeframe: str | None = Field(default=None, description="only this timeframe's entries")
    pattern: str | None = Field(default=None, max_length=200,
                                description="only cache keys matching this glob, e.g. market:*")


@router.post("/cache/clear", response_class=Json,
             responses={401: {"description": "no or wrong token"},
                        403: {"description": "no token configured on the server"}})
async def cache_clear(ctx: Annotated[ApiContext, Depends(context)],
                      body: ClearRequest | None = None) -> Json:
    """Clear the API cache (memory and Redis layer): everything, or by symbol, timeframe or key
    pattern. The workers' own data in Redis is not touched."""
    req = body or ClearRequest()
    symbol = None if req.symbol is None else params.symbol(ctx.settings, req.symbol)
    timeframe = None if req.timeframe is None else params.timeframe(ctx.settings, req.timeframe)
    cleared = await ctx.cache.clear(symbol=symbol, timeframe=timeframe, pattern=req.pattern)
    return Json({"cleared": cleared, "symbol": symbol, "timeframe": timeframe,
                 "pattern": req.pattern})
