"""`alphaplus` command-line entry point."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from core import logs
from core.exceptions import AlphaPlusError, ConfigError

# Sub-command modules under alphaplus.commands, in the order `--help` lists them.
COMMANDS = ("up", "migrate", "produce", "record", "stream", "worker", "api", "topics",
            "status", "config", "backtest", "replay")


def _log_format() -> str:
    """ALPHAPLUS_LOG_FORMAT; text when the settings do not parse (the command says why)."""
    from core.settings import Settings

    try:
        return str(Settings.from_env().log_format)
    except ConfigError:
        return "text"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphaplus",
        description="Real-time Binance market data: trades into Kafka, candles, indicators.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"alphaplus.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "celery_args"):
        # `worker`/`flower` pass every flag on to Celery; argparse cannot leave options to a
        # positional REMAINDER, so they arrive here as unknown arguments.
        args.celery_args = [*extra, *args.celery_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logs.setup(args.command, logging.DEBUG if args.verbose else logging.INFO, _log_format())
    try:
        return int(args.func(args) or 0)
    except AlphaPlusError as exc:
        print(f"alphaplus {args.command}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"alphaplus {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
