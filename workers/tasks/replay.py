"""`alphaplus.replay`: a replay as a Celery task on the jobs queue, so it can be started from
Flower or the API (`core.replays.submit`); it runs the CLI's driver and reports into the
same status in Redis.

Acknowledged when it starts, not when it ends: a replay runs for minutes to hours, longer than
the Redis transport's visibility timeout, after which a late-acknowledged task would be given
to a second worker. A replay whose worker dies ends up `running` with a stale `updated_at`;
start it again with the same run id (it starts over, and writes the same values).
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
from celery import Task

from core.replays import make_request
from workers.celery_app import app
from workers.replay.job import DEFAULT_TASK_TIMEOUT_S, Replay
from workers.tasks.resources import settings


@app.task(name="alphaplus.replay", bind=True, acks_late=False)
def replay(self: Task, run_id: str, from_ms: int, to_ms: int,
           symbols: list[str] | None = None, speed: str | float | None = None,
           timeframes: list[str] | None = None, persist_trades: bool = False,
           warmup: str | int | None = None,
           task_timeout_s: float = DEFAULT_TASK_TIMEOUT_S) -> dict[str, Any]:
    """Replay market.trades of [from_ms, to_ms) into the namespace `run_id`; returns the
    final status (docs/REPLAY.md)."""
    request = make_request(run_id, from_ms, to_ms, symbols, speed, timeframes, persist_trades,
                           warmup)
    # The worker's long-lived objects out of the collector's reach while it runs, as in
    # `alphaplus replay` and `alphaplus stream` (the reading phase runs ~40% faster); given
    # back afterwards, so that what a replay leaves behind can still be collected.
    gc.collect()
    gc.freeze()
    try:
        status = Replay(settings(), app, request, task_id=self.request.id,
                        task_timeout_s=task_timeout_s).run()
    finally:
        gc.unfreeze()
    result: dict[str, Any] = msgspec.to_builtins(status)
    return result
