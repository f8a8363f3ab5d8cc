"""`alphaplus replay`: a time range of market.trades through the stream stage and the Celery
tasks into a namespace of its own (docs/REPLAY.md). Runs here with a progress bar, or with
`--celery` as a task on the jobs queue, followed here."""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from typing import Any

from core.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "replay", help="replay a time range of market.trades into a namespace of its own")
    parser.add_argument("--from", dest="from_time", required=True, metavar="TIME",
                        help="start, included: epoch ms or ISO 8601 (UTC unless it says)")
    parser.add_argument("--to", dest="to_time", required=True, metavar="TIME",
                        help="end, excluded: epoch ms or ISO 8601")
    parser.add_argument("--symbols", help="comma-separated (default: every symbol)")
    parser.add_argument("--speed", default="max",
                        help="max (default), or a multiple of real time such as 1 or 10")
    parser.add_argument("--run-id", help="the namespace and database run id "
                                         "(default replay-<UTC time>-<random>)")
    parser.add_argument("--timeframes", help="comma-separated (default ALPHAPLUS_TIMEFRAMES)")
    parser.add_argument("--persist-trades", action="store_true",
                        help="also store the trades in the database under the run id")
    parser.add_argument("--warmup", default="all", metavar="all|none|DURATION",
                        help="trade time read before --from to warm the indicators up, "
                             "writing nothing: all (default: from the topic's start, as "
                             "live computed them), none, or a duration such as 6h")
    parser.add_argument("--task-timeout", type=float, default=600.0, metavar="S",
                        help="fail when no Celery task of the replay finishes for this long")
    parser.add_argument("--celery", action="store_true",
                        help="run as the alphaplus.replay task on the jobs queue; follow it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.replays import make_request
    from workers.replay.timerange import format_time, parse_time

    settings = Settings.from_env()
    request = make_request(
        args.run_id, parse_time(args.from_time), parse_time(args.to_time),
        args.symbols.split(",") if args.symbols else None, args.speed,
        args.timeframes.split(",") if args.timeframes else None, args.persist_trades,
        args.warmup)
    print(f"replay {request.run_id}: {format_time(request.from_ms)} to "
          f"{format_time(request.to_ms)}, "
          f"{','.join(request.symbols) or 'every symbol'}, "
          f"speed {'max' if not request.speed else f'{request.speed:g}x'}", flush=True)
    bar = _Bar(disabled=args.quiet)
    try:
        if args.celery:
            status = _follow(settings, request, args.task_timeout, bar)
        else:
            status = _here(settings, request, args.task_timeout, bar)
    finally:
        bar.close()
    print(f"replay {status.run_id}: {status.state}; {status.trades:,} trades, "
          f"{status.candles:,} candles closed, {status.skipped:,} messages skipped, "
          f"{status.rate:,.0f} trades/s" + (f"; {status.error}" if status.error else ""))
    if status.state == "done":
        print(f"see it: ALPHAPLUS_API_NAMESPACE={status.run_id} alphaplus api; "
              f"backtest it: alphaplus backtest --run-id {status.run_id} ...")
    return 0 if status.state == "done" else 1


def _here(settings: Settings, request: Any, task_timeout: float, bar: _Bar) -> Any:
    from producers.run import stop_on_signals
    from workers.celery_app import make_app
    from workers.replay.job import Replay

    replay = Replay(settings, make_app(settings), request, task_timeout_s=task_timeout,
                    on_progress=bar.update)
    # As in `alphaplus stream`: the long-lived objects out of the collector's reach (measured
    # here: the reading phase ~40% faster).
    gc.freeze()
    with stop_on_signals() as stop:
        return replay.run(stop)


def _follow(settings: Settings, request: Any, task_timeout: float, bar: _Bar) -> Any:
    """Send the task, then show its status until it ends (Ctrl-C asks it to stop)."""
    import redis

    from core import replays as progress
    from core.replays import submit
    from producers.run import stop_on_signals
    from workers.celery_app import make_app

    client = redis.Redis.from_url(settings.redis_url)
    try:
        status = submit(client, make_app(settings), request, task_timeout_s=task_timeout)
        print(f"sent as task {status.task_id} to {settings.celery_queue_prefix}.jobs",
              flush=True)
        cancelled = False
        with stop_on_signals() as stop:
            while status.state not in progress.FINAL:
                if stop.is_set() and not cancelled:
                    cancelled = progress.request_cancel(client, request.run_id)
                time.sleep(0.25)
                status = progress.read_status(client, request.run_id) or status
                bar.update(status)
        return status
    finally:
        client.close()


class _Bar:
    """tqdm over trades, with the estimated total when there is one."""

    def __init__(self, disabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, unit=" trades", unit_scale=True, disable=disabled,
                        file=sys.stderr, dynamic_ncols=True)
        self.lock = threading.Lock()

    def update(self, status: Any) -> None:
        with self.lock:
            if status.estimated_trades and status.estimated_trades != self.bar.total:
                self.bar.total = max(status.estimated_trades, status.trades)
            self.bar.n = status.trades
            postfix = {"candles": f"{status.candles:,}", "phase": status.phase or status.state}
            if status.phase == "tasks":
                postfix["tasks left"] = str(status.pending_tasks)
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
