"""`alphaplus stream`: one stream-stage process (run several: partitions are shared)."""

from __future__ import annotations

import argparse
import gc
from typing import Any

from core import metrics, redis_keys
from core.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "stream", help="build candles from market.trades (a Kafka consumer group member)")
    parser.add_argument("--group", help="consumer group (default ALPHAPLUS_STREAM_GROUP)")
    parser.add_argument("--namespace", default=redis_keys.LIVE,
                        help="Redis namespace: live, or a replay's run id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from producers.run import stop_on_signals
    from workers.celery_app import make_app
    from workers.stream.stage import StreamStage

    settings = Settings.from_env()
    metrics.serve(settings.metrics_port, settings.metrics_host)
    stage = StreamStage(settings, make_app(settings), ns=args.namespace, group=args.group)
    # The imports and clients above are long-lived: moving them out of the collector's reach
    # keeps full collections from walking them again and again (measured ~13% of stage time).
    gc.freeze()
    with stop_on_signals() as stop:
        stats = stage.run(stop)
    print(f"stream: {stats.trades} trades, {stats.candles_closed} candles closed, "
          f"{stats.duplicates} duplicates, {stats.late} late, {stats.rejected} rejected")
    return 0
