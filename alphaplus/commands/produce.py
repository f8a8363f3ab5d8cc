"""`alphaplus produce`: run one source into the `market.trades` topic."""

from __future__ import annotations

import argparse
from typing import Any

from core import metrics
from core.settings import Settings


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The source flags `produce` and `up` share."""
    parser.add_argument(
        "--source", default="binance",
        help="binance | recording:PATH[,PATH] | csv:PATH[,PATH] | synthetic (default: binance)",
    )
    parser.add_argument("--symbols", help="comma list; overrides ALPHAPLUS_SYMBOLS")
    parser.add_argument("--speed", type=float, default=None,
                        help="recording replay speed (1 = as recorded); default: as fast as "
                             "possible")
    parser.add_argument("--rate", type=float, default=None,
                        help="synthetic trades per second; default: as fast as possible")
    parser.add_argument("--seed", type=int, default=1, help="synthetic random seed")


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if args.symbols:
        settings = settings.replace(
            symbols=tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
        )
    return settings


def with_csv_symbols(settings: Settings, args: argparse.Namespace) -> Settings:
    """A CSV file names its symbol, so importing it should not need `--symbols` as well."""
    from producers.sources import split_spec

    kind, paths = split_spec(args.source)
    if kind != "csv" or args.symbols:
        return settings
    from producers.sources.csv_import import parse_file_name

    named = tuple(parse_file_name(p).symbol for p in paths)
    return settings.replace(symbols=tuple(dict.fromkeys(settings.symbols + named)))


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "produce", help="validate and normalise trades from a source into Kafka"
    )
    add_source_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from producers.run import produce, stop_on_signals
    from producers.sources import build_source

    settings = with_csv_symbols(settings_from_args(args), args)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    source = build_source(args.source, settings, speed=args.speed, rate=args.rate,
                          seed=args.seed)
    with stop_on_signals() as stop:
        produce(settings, source, stop)
    return 0
