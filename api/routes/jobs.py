"""Backtest reports (and, with replays, the jobs that produce what they test)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from api import params
from api.context import context_of
from api.responses import Json

router = APIRouter(prefix="/api", tags=["backtests"])


@router.get("/backtests", response_class=Json)
async def backtests(
    request: Request,
    run_id: Annotated[str | None, Query(max_length=200, description="only this run's")] = None,
    limit: Annotated[int, Query(ge=1, le=params.MAX_LIMIT)] = 50,
) -> Json:
    """Backtest reports newest first: strategy, parameters and metrics (no trade lists)."""
    rows = await context_of(request).store.backtests(
        None if run_id is None else params.identifier("run_id", run_id), limit)
    return Json({"backtests": rows})


@router.get("/backtests/{report_id}", response_class=Json,
            responses={404: {"description": "no report with that id"}})
async def backtest(request: Request, report_id: str) -> Json:
    """One report: metrics, the trade list and the equity curve (with buy-and-hold and
    drawdown), as `alphaplus backtest` saved it."""
    report = await context_of(request).store.backtest(params.identifier("id", report_id))
    if report is None:
        raise HTTPException(404, f"no backtest {report_id!r}: list them at /api/backtests")
    return Json(report)
