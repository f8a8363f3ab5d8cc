"""Backtest jobs on the `<prefix>.jobs` queue.

`alphaplus.backtest_sweep`: one parameter set of a sweep (workers/backtest/sweep.py). The
data comes from the Redis blob the sweep's caller stored; when it has expired, from PostgreSQL,
checked to be the same candles. Each worker process keeps the last few decoded data sets, so the
tasks of one sweep that land on one process decode it once.

`alphaplus.backtest_run`: one backtest from the database to a saved report (for callers that
do not run it in-process, such as an API route); the report id is the caller's, so it can
poll the `backtests` table for it.

Both are deterministic and write under their own keys, so a redelivered task just writes the
same result again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import redis
from celery import Task

from workers.backtest import data as wire
from workers.backtest import report, store, strategies
from workers.backtest.data import BacktestData
from workers.backtest.engine import BacktestConfig
from workers.backtest.errors import BacktestError
from workers.backtest.load import load
from workers.backtest.sweep import SweepRow, run_one, store_result
from workers.celery_app import app
from workers.tasks.resources import RETRYABLE, database, redis_client

_CACHE_SIZE = 2
_cache: OrderedDict[str, BacktestData] = OrderedDict()


def sweep_data(client: redis.Redis, ref: dict[str, Any]) -> BacktestData:
    key = str(ref["key"])
    data = _cache.get(key)
    if data is not None:
        _cache.move_to_end(key)
        return data
    blob: bytes | None = client.get(key)  # type: ignore[assignment]
    if blob is not None:
        data = wire.decode(blob)
    else:
        with database() as conn:
            data = load(conn, ref["run_id"], ref["symbol"], ref["timeframe"], ref["start_ms"],
                        ref["end_ms"])
        if data.fingerprint() != ref["fingerprint"]:
            raise BacktestError(f"the run's candles changed since the sweep started: "
                                f"{data.fingerprint()} != {ref['fingerprint']}")
    _cache[key] = data
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return data


@app.task(name="alphaplus.backtest_sweep", autoretry_for=RETRYABLE, retry_backoff=True,
          retry_backoff_max=60, max_retries=10, bind=True)
def backtest_sweep(self: Task, sweep_id: str, index: int, strategy: str,
                   params: dict[str, Any], config: dict[str, Any], ref: dict[str, Any]) -> None:
    client = redis_client()
    try:
        row = run_one(sweep_data(client, ref), strategy, params, BacktestConfig(**config))
    except BacktestError as exc:
        # A result all the same: the caller waits for every index.
        row = SweepRow(params, None, str(exc))
    store_result(client, ref["run_id"], sweep_id, index, row)


@app.task(name="alphaplus.backtest_run", autoretry_for=RETRYABLE, retry_backoff=True,
          retry_backoff_max=60, max_retries=10, bind=True)
def backtest_run(self: Task, report_id: str, run_id: str, symbol: str, timeframe: str,
                 strategy: str, params: dict[str, Any], config: dict[str, Any],
                 start_ms: int | None = None, end_ms: int | None = None) -> str:
    s = strategies.make(strategy, params)
    with database() as conn:
        data = load(conn, run_id, symbol, timeframe, start_ms, end_ms)
        result = report.run(data, s, BacktestConfig(**config), report_id=report_id)
        store.save(conn, result)
    return report_id
