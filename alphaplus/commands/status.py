"""`alphaplus status`: a one-screen summary of the running system, from the API's
`/api/system/overview` (the same data a dashboard polls): services and their state, Kafka lag,
Celery queues and workers, the stream stage's counters, the cache and the WebSocket clients."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from core.settings import Settings

EXIT_UNREACHABLE = 2


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "status", help="one-screen summary of the running system (from the API)")
    parser.add_argument("--url", help="the API's base URL (default: http://ALPHAPLUS_API_HOST:"
                                      "ALPHAPLUS_API_PORT)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the API (default 10)")
    parser.add_argument("--json", action="store_true", help="print the overview as JSON")
    parser.set_defaults(func=run)


def default_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):  # bound to every address: this machine answers
        host = "127.0.0.1"
    return f"http://{host}:{settings.api_port}"


class Unreachable(Exception):
    """The API did not give an overview; the message says what to do."""


def fetch(url: str, timeout: float) -> dict[str, Any]:
    import httpx

    # httpx logs every request at INFO; this command's output is its own summary.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    target = url.rstrip("/") + "/api/system/overview"
    try:
        response = httpx.get(target, timeout=timeout)
    except httpx.TimeoutException:
        raise Unreachable(f"the API at {url} did not answer within {timeout:g} s; it may be "
                          "overloaded (try --timeout 30)") from None
    except httpx.TransportError as exc:
        raise Unreachable(
            f"cannot reach the API at {url} ({exc or type(exc).__name__}).\n"
            "Start it with `alphaplus api` (or the whole system with `alphaplus up`), or point "
            "at a running one with --url http://HOST:PORT") from None
    if response.status_code != 200:
        raise Unreachable(f"{target} answered HTTP {response.status_code}: "
                          f"{response.text[:200]}\nIs {url} an AlphaPlus API?")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "health" not in body:
        raise Unreachable(f"{target} did not answer with an overview; is {url} an AlphaPlus "
                          "API?")
    return body


def run(args: argparse.Namespace) -> int:
    url = args.url or default_url(Settings.from_env())
    try:
        overview = fetch(url, args.timeout)
    except Unreachable as exc:
        print(f"alphaplus status: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(overview, indent=2, sort_keys=True))
    else:
        print(render(overview, url))
    return 0


# -- rendering ----------------------------------------------------------------------------------

def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else "?"


def _ms(value: Any) -> str:
    return f"{float(value):.2f} ms" if isinstance(value, int | float) else "?"


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {s:02d}s"


def _service(name: str, check: dict[str, Any] | None) -> str:
    if not check:
        return f"{name:<12} ?"
    if check.get("ok"):
        parts = ["ok"]
        if "latency_ms" in check:
            parts.append(_ms(check["latency_ms"]))
        if check.get("mode"):
            parts.append(str(check["mode"]))
        return f"{name:<12} " + "  ".join(parts)
    state = "DOWN" if check.get("required") else "down"
    detail = check.get("error") or check.get("note") or ""
    note = f" ({check['note']})" if check.get("note") and check.get("error") else ""
    return f"{name:<12} {state}  {detail}{note}".rstrip()


def _kafka(lag: dict[str, Any] | None) -> str:
    if not lag:
        return "kafka        ?"
    if "error" in lag:
        return f"kafka        DOWN  {lag['error']}"
    parts = ", ".join(f"p{p} {_n(v)}" for p, v in sorted(
        lag.get("partitions", {}).items(), key=lambda kv: int(kv[0])))
    return (f"kafka        ok  lag {_n(lag.get('total'))} messages ({parts or 'no partitions'})"
            f"  group {lag.get('group', '?')}, topic {lag.get('topic', '?')}")


def _celery(celery: dict[str, Any]) -> list[str]:
    lines = []
    workers = celery.get("workers")
    if workers is None:
        lines.append(f"celery       DOWN  {celery.get('error', 'no answer')}")
    else:
        names = celery.get("names") or []
        shown = ", ".join(names[:4]) + (f", +{len(names) - 4} more" if len(names) > 4 else "")
        state = "ok" if workers else "NO WORKERS"
        lines.append(f"celery       {state}  {workers} worker(s)" + (f": {shown}" if shown
                                                                      else ""))
    queues = celery.get("queues")
    if queues is None:
        lines.append("queues       ? (the broker is not answering)")
    else:
        lines.append("queues       " + "   ".join(f"{k} {_n(v)}" for k, v in queues.items())
                     + "   (tasks waiting)")
    return lines


def render(o: dict[str, Any], url: str) -> str:
    health = o.get("health") or {}
    deps = health.get("dependencies") or {}
    status = str(health.get("status", "?")).upper()
    lines = [f"AlphaPlus at {url}   namespace {o.get('namespace', '?')}   status {status}   "
             f"API up {_uptime(health.get('uptime_s'))}"]
    lines.append(_service("database", deps.get("database")))
    lines.append(_service("redis", deps.get("redis")))
    lines.append(_service("pub/sub", deps.get("pubsub")))
    lines.append(_kafka((o.get("kafka") or {}).get("consumer_lag")))
    lines += _celery(o.get("celery") or {})

    p = o.get("pipeline_stats") or {}
    if p.get("stream_counters_available") is False:
        lines.append("stream       ? (its counters are in Redis, which is not answering)")
    else:
        lines.append(
            f"stream       {_n(p.get('total_processed'))} trades   "
            f"{_n(p.get('candles_closed'))} candles closed   {_n(p.get('duplicates'))} "
            f"duplicates   {_n(p.get('late_trades'))} late   {_n(p.get('errors_count'))} "
            f"rejected   {_n(p.get('batches'))} batches, {_ms(p.get('avg_processing_time_ms'))}"
            " each")
    c = o.get("cache_stats") or {}
    rate = c.get("hit_rate")
    rate_text = f"{rate * 100:.1f}%" if isinstance(rate, int | float) else "?"
    lines.append(
        f"cache        hit rate {rate_text} (memory {_n(c.get('memory_hits'))}, redis "
        f"{_n(c.get('redis_hits'))}, misses {_n(c.get('misses'))})   "
        f"{_n(c.get('memory_cache_size'))} entries   avg {_ms(c.get('avg_response_time_ms'))}"
        + ("" if c.get("redis_enabled", True) else "   redis layer OFF"))
    w = o.get("websocket_stats") or {}
    p99 = f", p99 {_ms(w['p99_latency_ms'])}" if "p99_latency_ms" in w else ""
    lines.append(
        f"websocket    {_n(w.get('active_connections'))} clients   "
        f"{_n(w.get('total_messages_sent'))} messages sent   latency avg "
        f"{_ms(w.get('avg_latency_ms'))}{p99}   {_n(w.get('errors_count'))} errors")
    return "\n".join(lines)
