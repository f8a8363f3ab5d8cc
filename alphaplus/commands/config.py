"""`alphaplus config`: the effective settings, or the documentation table of all of them."""

from __future__ import annotations

import argparse
from typing import Any

from core.secrets import shown_setting
from core.settings import Settings, markdown_table


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "config", help="show the effective settings (ALPHAPLUS_* variables and .env)"
    )
    parser.add_argument("--markdown", action="store_true",
                        help="print the table of every variable with its default and meaning")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    for name, value in Settings.from_env().as_env().items():
        print(f"{name}={shown_setting(name, value)}")
    return 0
