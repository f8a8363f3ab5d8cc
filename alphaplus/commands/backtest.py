"""`alphaplus backtest`: test a strategy on a run's stored candles, indicators and signals.

    alphaplus backtest --run-id live --symbol BTCUSDT --timeframe 1m --strategy ema_cross \\
        --param fast=9 --param slow=21 --fee-bps 10 --slippage-bps 2 --stop-loss 2

prints a one-screen summary and writes `<out>/<id>.json` and `<out>/<id>.png`; the report is
also saved in the database's `backtests` table. With `--sweep NAME=V1,V2,...` (repeatable) it
runs the grid as parallel Celery tasks (or in-process with `--local`) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg2

from core.exceptions import ServiceUnavailable
from core.settings import Settings
from core.timeframes import TIMEFRAME_MS

METRIC_DEFAULT = "sharpe"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "backtest", help="backtest a strategy on a run's stored candles, indicators, signals",
        description="Backtest a strategy on what a run (live or a replay) stored. Fills at the "
                    "next candle's open; see docs/BACKTEST.md.")
    p.add_argument("--run-id", default="live", help="the run to read (default: live)")
    p.add_argument("--symbol", help="e.g. BTCUSDT")
    p.add_argument("--timeframe", default="1m", choices=list(TIMEFRAME_MS),
                   help="default: 1m")
    p.add_argument("--strategy", help="a strategy name (--list shows them)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a strategy parameter (repeatable)")
    p.add_argument("--list", action="store_true", help="list the strategies and exit")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="first candle (ISO time, UTC unless given, or epoch ms)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end, exclusive")
    costs = p.add_argument_group("costs and risk")
    costs.add_argument("--cash", type=float, default=10_000.0, help="initial cash (10000)")
    costs.add_argument("--fraction", type=float, default=1.0,
                       help="share of equity per position, 0..1 (1)")
    costs.add_argument("--fee-bps", type=float, default=10.0,
                       help="taker fee: market orders, stops (10 bps)")
    costs.add_argument("--maker-fee-bps", type=float, default=2.0,
                       help="maker fee: take-profit limit orders (2 bps)")
    costs.add_argument("--slippage-bps", type=float, default=0.0, help="per market fill (0)")
    costs.add_argument("--slippage-range", type=float, default=0.0, metavar="FRACTION",
                       help="slippage as a fraction of the fill candle's high-low (0)")
    costs.add_argument("--stop-loss", type=float, metavar="PCT", help="percent below entry")
    costs.add_argument("--take-profit", type=float, metavar="PCT", help="percent above entry")
    costs.add_argument("--short", action="store_true", help="allow short positions")
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, help="folder for the JSON and PNG "
                                              "(default: <state dir>/backtests)")
    out.add_argument("--no-save", action="store_true", help="do not write to the database")
    out.add_argument("--database-url", help="default: ALPHAPLUS_DATABASE_URL")
    sweep = p.add_argument_group("parameter sweep")
    sweep.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                       help="sweep a parameter over values (repeatable: the grid of all)")
    sweep.add_argument("--local", action="store_true",
                       help="run the sweep in this process instead of on Celery workers")
    sweep.add_argument("--sort-by", default=METRIC_DEFAULT, metavar="METRIC",
                       help=f"sweep table order (default: {METRIC_DEFAULT})")
    sweep.add_argument("--timeout", type=float, default=600.0,
                       help="seconds to wait for the sweep's tasks (600)")
    p.set_defaults(func=run)


def parse_time(text: str | None) -> int | None:
    """Epoch ms, or an ISO 8601 time (UTC when it names no zone), as epoch ms."""
    from workers.backtest.errors import InvalidParams

    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidParams(f"{text!r}: not an ISO time or epoch milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def parse_params(items: list[str]) -> dict[str, str]:
    from workers.backtest.errors import InvalidParams

    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidParams(f"--param {item!r}: expected NAME=VALUE")
        params[name.strip()] = value.strip()
    return params


def run(args: argparse.Namespace) -> int:
    from workers.backtest import strategies
    from workers.backtest.engine import BacktestConfig
    from workers.backtest.errors import InvalidParams
    from workers.backtest.strategy import describe

    if args.list:
        for name, cls in strategies.STRATEGIES.items():
            print(f"{name:20} {cls.description}")
            print(f"{'':20} parameters: {describe(cls.params_type()) or 'none'}")
        return 0
    if not args.symbol or not args.strategy:
        raise InvalidParams("--symbol and --strategy are required "
                            f"(strategies: {', '.join(strategies.STRATEGIES)})")
    settings = Settings.from_env()
    params = parse_params(args.param)
    config = BacktestConfig(
        initial_cash=args.cash, fraction=args.fraction, taker_fee_bps=args.fee_bps,
        maker_fee_bps=args.maker_fee_bps, slippage_bps=args.slippage_bps,
        slippage_range=args.slippage_range, allow_short=args.short,
        stop_loss_pct=args.stop_loss, take_profit_pct=args.take_profit)
    out_dir: Path = args.out or Path(settings.state_dir) / "backtests"
    if args.sweep:
        return _sweep(args, settings, params, config, out_dir)
    strategy = strategies.make(args.strategy, params)  # refuses bad input before any I/O
    return _single(args, settings, strategy, config, out_dir)


def _load(args: argparse.Namespace, settings: Settings) -> Any:
    from core.db.connect import connect
    from core.secrets import redact
    from workers.backtest.load import load

    url = args.database_url or settings.database_url
    try:
        conn = connect(url, application_name="alphaplus backtest")
    except psycopg2.OperationalError as exc:
        raise ServiceUnavailable(f"no database at {redact(url)}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None
    try:
        data = load(conn, args.run_id, args.symbol.upper(), args.timeframe,
                    parse_time(args.start), parse_time(args.end))
    except BaseException:
        conn.close()
        raise
    return conn, data


def _single(args: argparse.Namespace, settings: Settings, strategy: Any, config: Any,
            out_dir: Path) -> int:
    from workers.backtest import report, store
    from workers.backtest.chart import render

    conn, data = _load(args, settings)
    try:
        result = report.run(data, strategy, config)
        if not args.no_save:
            store.save(conn, result)
    finally:
        conn.close()
    json_path = result.write_json(out_dir)
    png_path = render(result, out_dir / f"{result.id}.png")
    print(report.summary(result))
    print()
    if not args.no_save:
        print(f"saved: backtests row {result.id} (run {result.run_id})")
    print(f"report: {json_path}")
    print(f"chart:  {png_path}")
    return 0


def _sweep(args: argparse.Namespace, settings: Settings, params: dict[str, str], config: Any,
           out_dir: Path) -> int:
    from workers.backtest import strategies, sweep
    from workers.backtest.report import new_id

    axes = sweep.parse_axes(args.sweep)
    param_sets = sweep.grid(params, axes)
    for p in param_sets:
        strategies.make(args.strategy, p)  # every set valid before anything runs
    conn, data = _load(args, settings)
    conn.close()
    where = "in-process" if args.local else f"on Celery ({settings.celery_queue_prefix}.jobs)"
    print(f"sweep: {args.strategy}, {len(param_sets)} parameter sets {where}, "
          f"{len(data)} candles of {data.symbol} {data.timeframe} (run {data.run_id})",
          file=sys.stderr)
    if args.local:
        rows = sweep.run_local(data, args.strategy, param_sets, config)
    else:
        def progress(done: int, total: int) -> None:
            print(f"\r  {done}/{total} done", end="", file=sys.stderr, flush=True)

        rows = sweep.run_celery(settings, data, args.strategy, param_sets, config,
                                timeout_s=args.timeout, progress=progress)
        print(file=sys.stderr)
    ordered = sweep.sort_rows(rows, args.sort_by)
    print(f"sorted by {args.sort_by}:")
    print(sweep.table(ordered, list(axes)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{new_id().replace('bt-', 'sweep-')}.json"
    path.write_bytes(orjson.dumps({
        "run_id": data.run_id, "symbol": data.symbol, "timeframe": data.timeframe,
        "strategy": args.strategy, "config": config.as_dict(), "sort_by": args.sort_by,
        "rows": [{"params": r.params, "metrics": r.metrics, "error": r.error}
                 for r in ordered]}, option=orjson.OPT_INDENT_2))
    print(f"results: {path}")
    return 0
