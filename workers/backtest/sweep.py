"""Parameter sweeps: one strategy over a grid of parameter sets, on the same data.

In parallel as Celery tasks (`alphaplus.backtest_sweep`, on the `<prefix>.jobs` queue): the
caller loads the run's arrays once and puts them in Redis as one msgpack blob, keyed by run,
symbol, timeframe and the exact candle range, so every task of the sweep (and of later sweeps on
the same data, within the TTL) reads that instead of querying PostgreSQL. Each task writes its
metrics into a Redis hash of the sweep, which the caller polls; Celery's result backend is off
in this project. `run_local` runs the same grid in-process, for small grids or no workers.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

import celeryconfig
from core import redis_keys
from core.settings import Settings
from workers.backtest import data as wire
from workers.backtest import report, strategies
from workers.backtest.data import BacktestData
from workers.backtest.engine import BacktestConfig
from workers.backtest.errors import BacktestError, InvalidParams

TASK = "alphaplus.backtest_sweep"
DATA_TTL_S = 3600
RESULTS_TTL_S = 3600
#: Metrics where lower is better; every other one sorts highest first.
ASCENDING = {"max_drawdown", "max_drawdown_duration_candles", "max_drawdown_duration_ms",
             "fees_paid"}


def _key(ns: str, *parts: str) -> str:
    # The same namespace rule as core.redis_keys: the run id, which must not split the key.
    if not ns or ":" in ns:
        raise BacktestError(f"run id must be non-empty and without ':': {ns!r}")
    return ":".join((redis_keys.PREFIX, ns, "backtest", *parts))


def data_key(data: BacktestData) -> str:
    """The cached arrays of exactly these candles of the run."""
    return _key(data.run_id, "data", data.symbol, data.timeframe, data.fingerprint())


def results_key(ns: str, sweep_id: str) -> str:
    """A hash of parameter-set index -> the task's JSON result."""
    return _key(ns, "sweep", sweep_id)


def parse_axes(specs: Sequence[str]) -> dict[str, list[str]]:
    """`["fast=5,9,12", "slow=21,30"]` -> `{"fast": ["5", "9", "12"], "slow": [...]}`."""
    axes: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not items:
            raise InvalidParams(f"--sweep {spec!r}: expected NAME=V1,V2,...")
        if name.strip() in axes:
            raise InvalidParams(f"--sweep {name.strip()} given twice")
        axes[name.strip()] = items
    return axes


def grid(base: Mapping[str, object], axes: Mapping[str, Sequence[object]]
         ) -> list[dict[str, object]]:
    """Every combination of the axes, over the base parameters."""
    names = list(axes)
    return [{**base, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*(axes[n] for n in names))]


@dataclass
class SweepRow:
    params: dict[str, Any]  # the full parameter set, defaults included
    metrics: dict[str, Any] | None
    error: str | None = None


def run_one(data: BacktestData, strategy: str, params: Mapping[str, object],
            config: BacktestConfig) -> SweepRow:
    try:
        s = strategies.make(strategy, params)
    except BacktestError as exc:
        return SweepRow(dict(params), None, str(exc))
    r = report.run(data, s, config, report_id="sweep")
    return SweepRow(r.params, r.metrics)


def run_local(data: BacktestData, strategy: str, param_sets: Sequence[Mapping[str, object]],
              config: BacktestConfig) -> list[SweepRow]:
    return [run_one(data, strategy, p, config) for p in param_sets]


def run_celery(settings: Settings, data: BacktestData, strategy: str,
               param_sets: Sequence[Mapping[str, object]], config: BacktestConfig,
               timeout_s: float = 600.0,
               progress: Callable[[int, int], None] | None = None) -> list[SweepRow]:
    """Send one task per parameter set and wait for all of them (at most `timeout_s`)."""
    from workers.celery_app import make_app

    if not data.run_id:
        raise BacktestError("a Celery sweep needs data with a run id (its Redis namespace)")
    client = redis.Redis.from_url(settings.redis_url)
    app = make_app(settings)
    sweep_id = report.new_id().replace("bt-", "sweep-")
    results = results_key(data.run_id, sweep_id)
    key = data_key(data)
    try:
        client.set(key, wire.encode(data), ex=DATA_TTL_S)
        ref = {"key": key, "run_id": data.run_id, "symbol": data.symbol,
               "timeframe": data.timeframe, "start_ms": int(data.open_time[0]),
               "end_ms": int(data.open_time[-1]) + 1, "fingerprint": data.fingerprint()}
        queue = celeryconfig.queue_name(settings, "jobs")
        for i, params in enumerate(param_sets):
            app.send_task(TASK, args=[sweep_id, i, strategy, dict(params), config.as_dict(),
                                      ref], queue=queue)
        deadline = time.monotonic() + timeout_s
        done = 0
        while True:
            done = int(client.hlen(results))
            if progress is not None:
                progress(done, len(param_sets))
            if done >= len(param_sets):
                break
            if time.monotonic() > deadline:
                raise BacktestError(
                    f"sweep {sweep_id}: {done} of {len(param_sets)} tasks done after "
                    f"{timeout_s:.0f} s; are workers consuming {queue}? "
                    "(`alphaplus worker`, or use --local)")
            time.sleep(0.2)
        raw: dict[bytes, bytes] = client.hgetall(results)  # type: ignore[assignment]
    finally:
        client.delete(results)
        client.close()
        app.close()
    rows = [orjson.loads(raw[str(i).encode()]) for i in range(len(param_sets))]
    return [SweepRow(r["params"], r.get("metrics"), r.get("error")) for r in rows]


def store_result(client: redis.Redis, ns: str, sweep_id: str, index: int, row: SweepRow) -> None:
    """What a sweep task does with its result."""
    key = results_key(ns, sweep_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, str(index), orjson.dumps(
        {"params": row.params, "metrics": row.metrics, "error": row.error}))
    pipe.expire(key, RESULTS_TTL_S)
    pipe.execute()


# -- the results table ------------------------------------------------------------------------

COLUMNS = (("total_return", "return", "pct"), ("sharpe", "sharpe", "num"),
           ("sortino", "sortino", "num"), ("max_drawdown", "max dd", "share"),
           ("trades", "trades", "int"), ("win_rate", "win", "share"),
           ("profit_factor", "pf", "num"), ("buy_and_hold_return", "b&h", "pct"))


def sort_rows(rows: Sequence[SweepRow], metric: str) -> list[SweepRow]:
    """Best first by `metric`; missing values and errors last."""
    known = {k for r in rows if r.metrics for k in r.metrics}
    if known and metric not in known:
        raise InvalidParams(f"unknown metric {metric!r}; known: {', '.join(sorted(known))}")
    sign = 1.0 if metric in ASCENDING else -1.0

    def order(row: SweepRow) -> tuple[int, float]:
        value = None if row.metrics is None else row.metrics.get(metric)
        return (1, 0.0) if value is None else (0, sign * float(value))

    return sorted(rows, key=order)


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:+.2f}%"
    if kind == "share":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:.2f}"


def table(rows: Sequence[SweepRow], varied: Sequence[str]) -> str:
    """Plain text, one line per parameter set, in the given order."""
    header = ["#", *varied, *(title for _, title, _ in COLUMNS)]
    lines = [header]
    for i, row in enumerate(rows, 1):
        cells = [str(i), *(str(row.params.get(v, "")) for v in varied)]
        if row.metrics is None:
            cells.append(f"error: {row.error}")
        else:
            cells += [_cell(row.metrics.get(k), kind) for k, _, kind in COLUMNS]
        lines.append(cells)
    widths = [max(len(line[c]) for line in lines if c < len(line)) for c in range(len(header))]
    return "\n".join("  ".join(cell.rjust(widths[c]) if c < len(widths) else cell
                               for c, cell in enumerate(line)).rstrip() for line in lines)
