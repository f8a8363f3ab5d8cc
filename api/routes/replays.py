"""Replays over REST: start one as a Celery task, follow its progress, cancel it.

The request and status contract is `core.replays` (the workers run the replay and write its
status; this only starts it and reads it). Starting or cancelling changes state: token only.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import msgspec
import redis
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from api import params
from api.context import context_of
from api.redis_link import RedisDown
from api.responses import Json
from api.security import require_admin
from core import redis_keys, replays

router = APIRouter(prefix="/api", tags=["replays"])


class ReplayBody(BaseModel):
    start: int | str = Field(alias="from",
                             description="epoch ms or ISO 8601: the range's start (inclusive)")
    end: int | str = Field(alias="to",
                           description="epoch ms or ISO 8601: the range's end (exclusive)")
    symbols: list[str] | None = Field(default=None, max_length=100)
    speed: str | float | None = Field(default=None, description="max (default), or a factor")
    run_id: str | None = Field(default=None, max_length=100,
                               description="default: replay-<UTC time>-<random>")
    timeframes: list[str] | None = Field(default=None, max_length=20)
    persist_trades: bool = False
    warmup: str | int | None = Field(
        default=None, description="trade time read before `from` to warm the indicators up, "
        "writing nothing: all (default, the topic's start), none, or a duration such as 6h")


def _submit(settings_redis: str, celery_config: dict[str, Any],
            request: replays.ReplayRequest) -> replays.ReplayStatus:
    from celery import Celery

    app = Celery("alphaplus-api")
    app.config_from_object(celery_config)
    client = redis.Redis.from_url(settings_redis, socket_timeout=5)
    try:
        return replays.submit(client, app, request)
    finally:
        client.close()
        app.close()


@router.post("/replays", response_class=Json, status_code=202,
             dependencies=[Depends(require_admin)],
             responses={409: {"description": "the run id is taken"},
                        401: {"description": "no or wrong token"},
                        403: {"description": "no token configured on the server"}})
async def start_replay(request: Request, body: ReplayBody) -> Json:
    """Replay `market.trades` of [from, to) through the stream stage and the Celery tasks into
    the run's own namespace (docs/REPLAY.md). Answers the `queued` status; follow it at
    `GET /api/replays/{run_id}`."""
    import celeryconfig

    ctx = context_of(request)
    lo, hi = params.time_range(str(body.start)[:64], str(body.end)[:64])
    symbols = None if body.symbols is None else [params.symbol(ctx.settings, s)
                                                 for s in body.symbols]
    try:
        req = replays.make_request(body.run_id, lo, hi, symbols, body.speed,
                                   body.timeframes, body.persist_trades,
                                   None if body.warmup is None else str(body.warmup)[:32])
        status = await anyio.to_thread.run_sync(
            _submit, ctx.settings.redis_url, celeryconfig.from_settings(ctx.settings), req)
    except replays.BadReplay as exc:
        raise HTTPException(422, str(exc)) from None
    except replays.ReplayConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except (redis.RedisError, OSError) as exc:
        raise HTTPException(503, f"cannot reach Redis to start the replay: {exc}") from None
    return Json(msgspec.to_builtins(status), status_code=202)


@router.get("/replays/{run_id}", response_class=Json,
            responses={404: {"description": "no replay with that run id"}})
async def replay_status(request: Request, run_id: str) -> Json:
    """A replay's state (queued, running, done, failed, cancelled), counts, progress, rate and
    ETA; the fields are in docs/REPLAY.md."""
    ctx = context_of(request)
    key = redis_keys.replay_status(params.identifier("run_id", run_id))

    async def read(r: Any) -> bytes | None:
        raw: bytes | None = await r.get(key)
        return raw

    try:
        raw = await ctx.link.call(read)
    except RedisDown:
        raise HTTPException(503, "Redis is away: replay status cannot be read now") from None
    if raw is None:
        raise HTTPException(404, f"no replay {run_id!r}")
    return Json(msgspec.to_builtins(replays.decode_status(raw)))


@router.post("/replays/{run_id}/cancel", response_class=Json,
             dependencies=[Depends(require_admin)],
             responses={404: {"description": "no running replay with that run id"}})
async def cancel_replay(request: Request, run_id: str) -> Json:
    """Ask a queued or running replay to stop; it ends as `cancelled`."""
    ctx = context_of(request)

    def cancel() -> bool:
        client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=5)
        try:
            return replays.request_cancel(client, run_id)
        finally:
            client.close()

    params.identifier("run_id", run_id)
    if not await anyio.to_thread.run_sync(cancel):
        raise HTTPException(404, f"no queued or running replay {run_id!r}")
    return Json({"run_id": run_id, "cancel_requested": True})
