"""`alphaplus up`: the whole pipeline on this machine, with embedded servers where none answers.

Kafka, Redis and PostgreSQL are each the configured server when it answers, else the embedded
one (infra/stack). The pipeline processes run as children with the resolved endpoints in their
ALPHAPLUS_* environment; Ctrl-C or SIGTERM stops them, then the embedded servers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alphaplus.commands.produce import add_source_arguments, settings_from_args
from alphaplus.supervisor import ChildSpec, Supervisor
from core.exceptions import ServiceUnavailable
from core.kafka import ensure_topics
from core.settings import Settings
from infra.stack.resolve import Stack

#: Trades per second of the synthetic source when it stands in for an unreachable exchange.
DEMO_RATE = 200.0
EXCHANGE_TIMEOUT = 5.0


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "up", help="run the pipeline, with embedded Kafka/Redis/PostgreSQL where none answers"
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--no-fallback", action="store_true",
        help="with --source binance: fail when the exchange is unreachable, instead of using "
             "the synthetic source")
    parser.add_argument("--stream", type=int, default=1, metavar="N",
                        help="stream-stage processes (they share the partitions; default 1)")
    parser.add_argument("--api-port", type=int, default=None,
                        help="the API's port (default ALPHAPLUS_API_PORT; 0: no API)")
    parser.add_argument("--flower-port", type=int, default=5555,
                        help="Flower's port (0: no Flower; default 5555)")
    parser.add_argument(
        "--log-dir", type=Path, default=None,
        help="folder for the processes' logs (default: <state dir>/logs/<UTC time>/)")
    parser.set_defaults(func=run)


def say(line: str) -> None:
    print(line, flush=True)


def exchange_unreachable(settings: Settings, timeout: float = EXCHANGE_TIMEOUT) -> str | None:
    """None when the exchange's WebSocket endpoint completes a handshake, else why not."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    stream = f"{settings.symbols[0].lower()}@{settings.binance_stream}"
    try:
        with connect(f"{settings.ws_base_url}/stream?streams={stream}",
                     open_timeout=timeout, close_timeout=1):
            return None
    except (OSError, WebSocketException) as exc:
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror  # "Connection refused", not "[Errno 111] Connection refused"
        return str(exc) or type(exc).__name__


def choose_source(args: argparse.Namespace, settings: Settings) -> tuple[str, float | None]:
    """The source spec and synthetic rate to run: the asked ones, or the synthetic source at a
    demo rate when the exchange cannot be reached (unless --no-fallback)."""
    from producers.sources import split_spec

    kind, _paths = split_spec(args.source)  # a bad spec fails here, before anything starts
    if kind != "binance":
        return args.source, args.rate
    reason = exchange_unreachable(settings)
    if reason is None:
        say(f"{'binance':<9} {settings.ws_base_url} reachable")
        return args.source, args.rate
    problem = f"{settings.ws_base_url} unreachable ({reason})"
    if args.no_fallback:
        raise ServiceUnavailable(f"{problem}; not starting (--no-fallback)")
    say(f"{'binance':<9} {problem}; using the synthetic source instead (--no-fallback to fail)")
    return "synthetic", args.rate or DEMO_RATE


def child_env(settings: Settings, metrics_slot: int | None = None) -> dict[str, str]:
    """The children's environment. With ALPHAPLUS_METRICS_PORT set, each child that exports
    metrics gets a port of its own, `slot` above it (one port cannot serve two processes):
    the producer the port itself, the worker +1, the stream processes +2, +3, ..."""
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    if settings.metrics_port and metrics_slot is not None:
        env["ALPHAPLUS_METRICS_PORT"] = str(settings.metrics_port + metrics_slot)
    elif settings.metrics_port:
        env["ALPHAPLUS_METRICS_PORT"] = "0"  # the API serves /metrics on its own port
    return env


# The embedded broker (Tansu, memory storage) looks an offset up by walking its log's batches:
# past ~15,000 batches in a partition a fetch no longer finds it within a 10 ms wait and comes
# back empty, every time (measured: a consumer at the tail stopped at 15,168 messages sent one
# per batch; ~140,000 with a 100 ms wait). Ten times the wait and batches of several trades
# move that from minutes to hours at the demo rate, for ~100 ms more latency on the dashboard.
EMBEDDED_BROKER_TUNING = {"kafka_linger_ms": 100, "kafka_fetch_wait_ms": 100}


def tune_for_embedded_broker(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Settings for the embedded broker, where the user has not set them."""
    changes = {name: value for name, value in EMBEDDED_BROKER_TUNING.items()
               if f"ALPHAPLUS_{name.upper()}" not in environ}
    return settings.replace(**changes)


def pipeline_specs(args: argparse.Namespace, settings: Settings) -> list[ChildSpec]:
    """Workers first, so the tasks the stream stage sends find a consumer; Flower last."""
    env = child_env(settings)
    cli = [sys.executable, "-m", "alphaplus.cli"]
    specs = [ChildSpec("worker", [*cli, "worker", "--loglevel", "INFO"],
                       child_env(settings, 1))]
    specs += [ChildSpec(f"stream-{i + 1}" if args.stream > 1 else "stream", [*cli, "stream"],
                        child_env(settings, 2 + i))
              for i in range(max(1, args.stream))]
    if args.api_port != 0:
        port = args.api_port or settings.api_port
        specs.append(ChildSpec("api", [*cli, "api", "--port", str(port)], env))
    if args.flower_port:
        specs.append(ChildSpec("flower", [*cli, "flower", f"--port={args.flower_port}",
                                          "--address=127.0.0.1"], env))
    return specs


def producer_spec(args: argparse.Namespace, settings: Settings, source: str,
                  rate: float | None) -> ChildSpec:
    argv = [sys.executable, "-m", "alphaplus.cli", "produce", "--source", source,
            "--seed", str(args.seed)]
    if args.speed is not None:
        argv += ["--speed", str(args.speed)]
    if rate is not None:
        argv += ["--rate", str(rate)]
    env = child_env(settings, 0)
    finite = source.partition(":")[0].strip().lower() in ("recording", "csv")
    return ChildSpec("producer", argv, env, must_run=not finite)


def default_log_dir(settings: Settings) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(settings.state_dir) / "logs" / stamp


def create_topics(settings: Settings) -> None:
    names = [settings.topic_trades, settings.topic_candles, settings.topic_deadletter,
             settings.topic_gaps]
    created = ensure_topics(settings.kafka_bootstrap, names, settings.kafka_partitions)
    note = (f"{len(created)} created with {settings.kafka_partitions} partitions"
            if created else "all existed")
    say(f"{'topics':<9} {', '.join(names)} ({note})")
    if settings.topic_trades in created:
        forget_checkpoints(settings)


def forget_checkpoints(settings: Settings) -> None:
    """A new trades topic (always, with the embedded broker: its log lives in memory) starts at
    offset 0: the stream stage's checkpoints from its earlier life no longer apply."""
    import redis

    from core import redis_keys
    from workers.stream.stage import drop_checkpoints

    client = redis.Redis.from_url(settings.redis_url)
    try:
        dropped = drop_checkpoints(client, redis_keys.LIVE, settings.stream_group,
                                   settings.topic_trades)
    finally:
        client.close()
    if dropped:
        say(f"{'stream':<9} {dropped} checkpoints of an earlier {settings.topic_trades} "
            "dropped (the topic is new)")


def migrate(settings: Settings) -> None:
    """The workers write to the database: its schema must be at head before they start."""
    import logging

    from alphaplus.commands.migrate import migrate_to_head
    from infra.migrations import current_revision

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mode, retention = migrate_to_head(settings.database_url, settings)
    say(f"{'schema':<9} at {current_revision(settings.database_url)}, storage mode {mode}; "
        f"{retention}")


def run(args: argparse.Namespace) -> int:
    from producers.run import stop_on_signals

    settings = settings_from_args(args)
    log_dir: Path = args.log_dir or default_log_dir(settings)
    with stop_on_signals() as stop, ExitStack() as cleanup:
        source, rate = choose_source(args, settings)
        log_dir.mkdir(parents=True, exist_ok=True)
        say(f"{'logs':<9} {log_dir}/ (one file per process)")
        # Callbacks run last-registered first: the pipeline stops before the servers it uses.
        cleanup.callback(say, f"{'stopped':<9} everything this run started")
        stack = cleanup.enter_context(Stack(Path(settings.state_dir), log_dir))
        supervisor = Supervisor(log_dir, report=say)
        cleanup.callback(supervisor.stop)

        resolved = stack.resolve(settings, stop, report=lambda service: say(service.line()))
        if resolved is None:
            return 0
        if any(s.name == "kafka" and s.server is not None for s in stack.services):
            resolved = tune_for_embedded_broker(resolved, os.environ)
        create_topics(resolved)
        migrate(resolved)
        if stop.is_set():
            return 0
        for spec in pipeline_specs(args, resolved):
            proc = supervisor.start(spec)
            say(f"{spec.name:<9} pid {proc.pid}, log {proc.log_path}")
        if args.api_port != 0:
            say(f"{'dashboard':<9} http://{resolved.api_host}:"
                f"{args.api_port or resolved.api_port}/ (REST at /api, OpenAPI at /docs)")
        if args.flower_port:
            say(f"{'flower':<9} http://127.0.0.1:{args.flower_port}/ (Celery tasks and workers)")
        producer = supervisor.start(producer_spec(args, resolved, source, rate))
        speed = f" at {rate:g} trades/s" if rate and source == "synthetic" else ""
        say(f"{'producer':<9} {source}{speed} into {resolved.topic_trades} "
            f"(pid {producer.pid}, log {producer.log_path})")
        say(f"{'running':<9} Ctrl-C or SIGTERM stops everything")
        return supervisor.watch(stop)
