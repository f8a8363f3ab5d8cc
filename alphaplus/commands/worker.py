"""`alphaplus worker` and `alphaplus flower`: thin wrappers over Celery's own commands, so every
Celery flag works (`alphaplus worker --concurrency 4 -Q alphaplus.persist`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import celeryconfig
from core import metrics
from core.settings import Settings


def register(sub: Any) -> None:
    worker: argparse.ArgumentParser = sub.add_parser(
        "worker", help="a Celery worker for the indicator, persistence and job queues",
        add_help=False)
    worker.add_argument("celery_args", nargs=argparse.REMAINDER,
                        help="passed to `celery worker` (default: all AlphaPlus queues)")
    worker.set_defaults(func=run_worker)
    flower: argparse.ArgumentParser = sub.add_parser(
        "flower", help="Flower, the Celery monitor, on the same broker", add_help=False)
    flower.add_argument("celery_args", nargs=argparse.REMAINDER,
                        help="passed to `celery flower` (default port 5555)")
    flower.set_defaults(func=run_flower)


def celery_argv(command: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", command, *extra]


def worker_argv(extra: list[str], settings: Settings) -> list[str]:
    if not any(a == "-Q" or a.startswith(("-Q", "--queues")) for a in extra):
        queues = ",".join(celeryconfig.queue_name(settings, k) for k in celeryconfig.KINDS)
        extra = ["-Q", queues, *extra]
    return celery_argv("worker", extra)


def run_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    argv = worker_argv(list(args.celery_args), settings)
    if settings.metrics_port:
        # Before Celery (and prometheus_client) is imported: every process of the worker, the
        # pool's too, then writes its metric values to this worker's own directory, and the
        # main process serves their sum (workers/tasks/observe.py).
        metrics.fresh_multiprocess_dir(metrics.WORKER_DIR_PREFIX)
    os.execv(argv[0], argv)  # replaces this process: signals go straight to Celery


def flower_args(celery_args: list[str]) -> list[str]:
    """Flower listens on every interface by default, with no login: on loopback unless the
    user names an address (and then a login is theirs to add, e.g. --basic-auth)."""
    if any(a == "--address" or a.startswith("--address=") for a in celery_args):
        return celery_args
    return ["--address=127.0.0.1", *celery_args]


def run_flower(args: argparse.Namespace) -> int:
    argv = celery_argv("flower", flower_args(list(args.celery_args)))
    os.execv(argv[0], argv)
