"""Soak: the whole pipeline under steady load for --minutes, watching memory and errors.

What runs, each a real process as `alphaplus up` would start it: the embedded Tansu broker and
a redis-server of this run's own (so its memory is this run's alone), PostgreSQL (a scratch
database on ALPHAPLUS_DATABASE_URL's server when it answers, else an embedded server),
`alphaplus produce --source synthetic --rate R` (10,000 trades/s by default, 4 symbols),
`alphaplus stream`, `alphaplus worker` (Celery, --concurrency 2), `alphaplus api` (one uvicorn
worker) and --clients WebSocket clients (1,000 by default, in --client-procs processes; each
subscribes to one stream: a kline stream of any symbol and timeframe, 1 in 50 a signals stream),
plus a REST poller hitting five read endpoints twice a second.

Measured:
  * RSS of every process over time (a process and its children together: Celery's pool,
    PostgreSQL's backends), sampled every --sample-s seconds, printed as a table and drawn to
    docs/img/soak_rss.png (--png);
  * verdict per process: memory is flat when the median of the last third of the samples is
    less than 10% above the median of the second third (the first third is warm-up). Tansu
    keeps the whole log in memory by design, so it grows with the trades sent; it is shown,
    not judged;
  * errors: REST 5xx (and failed requests), WebSocket closes and lost connections, dead
    letters, Celery task failures, ERROR lines in every process's log, and whether the stream
    stage kept up (trades produced vs processed when the load stops).

    .venv/bin/python benchmarks/soak.py                      # 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 2          # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import redis_keys  # noqa: E402
from core.kafka import read_topic  # noqa: E402
from core.settings import Settings  # noqa: E402
from infra.stack.ports import free_port  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
FLAT_GROWTH = 0.10
NOT_JUDGED = {"tansu": "keeps the log in memory: grows with the trades sent, by design",
              "redis (RSS)": "judged by what it holds, the line below"}
REST_PATHS = ("/api/real-time/BTCUSDT/1m", "/api/market/data?symbol=ETHUSDT&timeframe=1m&limit=100"
              "&include=indicators", "/api/signals?symbol=SOLUSDT", "/api/health",
              "/api/system/overview")
ERROR_LINE = re.compile(rb'\bERROR\b|"level":\s*"error"', re.IGNORECASE)
TASK_FAILURE = re.compile(rb"Task \S+\[[^\]]+\] raised|Task \S+ failed|task failed",
                          re.IGNORECASE)


# -- processes --------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_child(name: str, args: list[str], settings: Settings, logs: Path) -> Child:
    log = logs / f"{name}.log"
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "alphaplus.cli", *args], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Child(name, proc, log)


def stop_child(child: Child, timeout: float = 30.0) -> None:
    if child.proc.poll() is None:
        os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, RSS bytes) of a process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[21]) * PAGE


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(roots: dict[str, int]) -> dict[str, int]:
    """RSS of each named process and all its descendants (0 when it is gone), from one scan
    of /proc (psutil is not a dependency of the project)."""
    stats = {int(p): st for p in os.listdir("/proc") if p.isdigit()
             for st in [_stat(p)] if st is not None}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        total, todo = 0, [root] if root in stats else []
        while todo:
            pid = todo.pop()
            total += stats[pid][1]
            todo.extend(children.get(pid, ()))
        out[name] = total
    return out


class Sampler(threading.Thread):
    """RSS of each named process tree every `interval` seconds, and beside it what Redis holds
    (so that a growing redis-server can be told apart: a backlog of tasks, or a leak)."""

    def __init__(self, pids: dict[str, int], interval: float, redis_probe: RedisProbe) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids = pids
        self.interval = interval
        self.probe = redis_probe
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.redis: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            self.samples.append((now, tree_rss(self.pids)))
            with suppress(redis.RedisError):
                self.redis.append((now, self.probe.sample()))
            self.stop.wait(self.interval)


class RedisProbe:
    """Redis's used memory, the Celery queue depths and the stream stage's task outbox."""

    def __init__(self, url: str, settings: Settings, ns: str) -> None:
        import celeryconfig

        self.client = redis.Redis.from_url(url)
        self.queues = {k: celeryconfig.queue_name(settings, k) for k in celeryconfig.KINDS}
        self.outbox = redis_keys.task_outbox(ns)

    def sample(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        pipe.info("memory")
        for queue in self.queues.values():
            pipe.llen(queue)
        pipe.hlen(self.outbox)
        memory, *depths, outbox = pipe.execute()
        out = {"used MiB": int(memory["used_memory"]) // 2**20}
        out.update({f"queue {k}": int(d) for k, d in zip(self.queues, depths, strict=True)})
        out["outbox"] = int(outbox)
        return out

    def largest_keys(self, n: int = 5) -> list[tuple[str, int]]:
        sizes = []
        for key in self.client.scan_iter(count=1000):
            size = self.client.memory_usage(key) or 0
            sizes.append((key.decode(errors="replace"), int(size)))
        return sorted(sizes, key=lambda kv: -kv[1])[:n]

    def close(self) -> None:
        self.client.close()


class RestPoller(threading.Thread):
    def __init__(self, base: str) -> None:
        super().__init__(name="rest-poller", daemon=True)
        self.base = base
        self.status: Counter[int] = Counter()
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                for path in REST_PATHS:
                    try:
                        self.status[client.get(path).status_code] += 1
                    except httpx.HTTPError:
                        self.failed += 1
                self.stop.wait(0.5)


# -- WebSocket clients --------------------------------------------------------------------------
@dataclass
class ClientTally:
    messages: int = 0
    subscribed: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    lost: int = 0  # connections that ended without a close frame, while not asked to


class SoakClient(asyncio.Protocol):
    """A minimal WebSocket client (a few µs a message, so 1,000 fit in two processes beside
    the server): handshake, one SUBSCRIBE, then it counts messages and answers pings."""

    def __init__(self, stream: str, port: int, tally: ClientTally, stopping: asyncio.Event,
                 ready: asyncio.Future[None]) -> None:
        self.stream, self.port, self.tally = stream, port, tally
        self.stopping, self.ready = stopping, ready
        self.buf = bytearray()
        self.open = False
        self.closed_by_server = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                         ).encode())

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else \
            bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(bytes(buf[:200]).decode("latin-1")))
                return
            del buf[:end + 4]
            self.open = True
            self.send(1, b'{"method":"SUBSCRIBE","params":["%s"],"id":1}' % self.stream.encode())
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if size - pos < head + n:
                break
            start, pos = pos + head, pos + head + n
            if opcode == 1:
                if not self.ready.done():
                    if buf[start:pos] == b'{"result":null,"id":1}':
                        self.tally.subscribed += 1
                        self.ready.set_result(None)
                    else:
                        self.ready.set_exception(RuntimeError(bytes(buf[start:pos]).decode()))
                else:
                    self.tally.messages += 1
            elif opcode == 9:
                self.send(10, bytes(buf[start:pos]))
            elif opcode == 8:
                code = int.from_bytes(buf[start:start + 2], "big") if n >= 2 else 1005
                self.tally.closes[code] += 1
                self.closed_by_server = True
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"lost before subscribing: {exc}"))
        if not self.stopping.is_set() and not self.closed_by_server:
            self.tally.lost += 1


def streams_for(n: int) -> list[str]:
    kline = [f"{s.lower()}@kline_{tf}" for s in SYMBOLS for tf in ("1m", "5m", "15m", "1h")]
    return [f"{SYMBOLS[i % len(SYMBOLS)].lower()}@signals" if i % 50 == 49
            else kline[i % len(kline)] for i in range(n)]


async def clients_run(port: int, streams: list[str], ctl: Connection) -> ClientTally:
    loop = asyncio.get_running_loop()
    tally = ClientTally()
    stopping = asyncio.Event()
    gate = asyncio.Semaphore(50)  # handshakes in flight
    transports: list[asyncio.BaseTransport] = []

    async def one(stream: str) -> None:
        async with gate:
            ready: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: SoakClient(stream, port, tally, stopping, ready), "127.0.0.1", port)
            transports.append(transport)
            await asyncio.wait_for(ready, 60)

    await asyncio.gather(*(one(s) for s in streams))
    ctl.send("ready")
    await loop.run_in_executor(None, ctl.recv)  # the parent says when to stop
    stopping.set()
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.5)
    return tally


def client_main(port: int, streams: list[str], ctl: Connection) -> None:
    tally = asyncio.run(clients_run(port, streams, ctl))
    ctl.send((tally.messages, tally.subscribed, dict(tally.closes), tally.lost))


# -- the run ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    samples: list[tuple[float, dict[str, int]]]
    redis: list[tuple[float, dict[str, int]]]
    errors: dict[str, int]
    figures: dict[str, Any]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def log_counts(children: list[Child]) -> tuple[int, int, dict[str, int]]:
    """(ERROR lines, task failures, ERROR lines per process) over the children's logs."""
    per: dict[str, int] = {}
    failures = 0
    for child in children:
        text = child.log.read_bytes() if child.log.exists() else b""
        lines = text.splitlines()
        per[child.name] = sum(1 for ln in lines if ERROR_LINE.search(ln))
        failures += sum(1 for ln in lines if TASK_FAILURE.search(ln))
    return sum(per.values()), failures, per


def database(stack: ExitStack, logs: Path, url: str | None) -> tuple[str, int | None]:
    """A scratch database URL, and the PostgreSQL server's pid when it is ours."""
    import psycopg2

    from core.db.connect import with_database
    from core.db.scratch import scratch_database
    from infra.stack.postgres import EmbeddedPostgres

    server = url or os.environ.get("ALPHAPLUS_DATABASE_URL",
                                   "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg2.connect(with_database(server, "postgres"), connect_timeout=2).close()
        return stack.enter_context(scratch_database(server, "alphaplus_soak")), None
    except psycopg2.OperationalError:
        pg = EmbeddedPostgres(logs / "pgdata", log_path=logs / "postgres.log").start()
        stack.callback(pg.stop)
        return pg.url, pg.pid


def run(args: argparse.Namespace) -> Outcome:
    from infra.migrations import upgrade
    from infra.stack.kafka import EmbeddedKafka
    from infra.stack.redis import EmbeddedRedis

    raise_nofile()
    logs = Path(args.log_dir or tempfile.mkdtemp(prefix="alphaplus-soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"logs: {logs}", flush=True)
    ns = f"soak-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        kafka = EmbeddedKafka(log_path=logs / "tansu.log").start()
        stack.callback(kafka.stop)
        rds = EmbeddedRedis(logs / "redis").start()
        stack.callback(rds.stop)
        db_url, pg_pid = database(stack, logs, args.database_url)
        upgrade(db_url)
        settings = Settings.from_env(environ={}, env_file=None).replace(
            kafka_bootstrap=kafka.bootstrap, redis_url=rds.url, database_url=db_url,
            symbols=SYMBOLS, celery_queue_prefix=ns, stream_group=f"{ns}-stream",
            api_namespace=ns, api_host="127.0.0.1", api_port=free_port(), api_workers=1,
            api_token=uuid.uuid4().hex, kafka_partitions=3)
        children: list[Child] = []

        def stop_all() -> None:
            for child in reversed(children):
                stop_child(child)

        stack.callback(stop_all)
        children.append(start_child("worker", ["worker", "--concurrency", str(args.concurrency),
                                               "--loglevel", "INFO"], settings, logs))
        children.append(start_child("stream", ["stream", "--namespace", ns], settings, logs))
        children.append(start_child("api", ["api"], settings, logs))
        base = f"http://127.0.0.1:{settings.api_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/symbols", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or any(c.proc.poll() is not None
                                                      for c in children):
                    raise RuntimeError(f"the pipeline did not start; see {logs}") from None
                time.sleep(0.2)
        # Clients connect and subscribe before the load starts.
        ctx = mp.get_context("spawn")
        streams = streams_for(args.clients)
        pipes: list[Connection] = []
        client_procs = []
        for i in range(args.client_procs):
            parent, child_end = ctx.Pipe()
            p = ctx.Process(target=client_main,
                            args=(settings.api_port, streams[i::args.client_procs], child_end),
                            name=f"ws-clients-{i}")
            p.start()
            client_procs.append(p)
            pipes.append(parent)
        for pipe in pipes:
            if not pipe.poll(180) or pipe.recv() != "ready":
                raise RuntimeError("WebSocket clients did not connect")
        print(f"{args.clients} WebSocket clients subscribed", flush=True)
        producer = start_child("produce", ["produce", "--source", "synthetic", "--rate",
                                           str(args.rate)], settings, logs)
        children.append(producer)
        pids = {c.name: c.proc.pid for c in children}
        pids.update({"tansu": kafka.pid or 0, "redis": rds.pid or 0})
        if pg_pid:
            pids["postgres"] = pg_pid
        pids.update({p.name: p.pid or 0 for p in client_procs})
        probe = RedisProbe(rds.url, settings, ns)
        stack.callback(probe.close)
        sampler = Sampler(pids, args.sample_s, probe)
        poller = RestPoller(base)
        sampler.start()
        poller.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        next_note = started + 30
        while time.monotonic() < end:
            dead = [c.name for c in children if c.proc.poll() is not None]
            if dead:
                print(f"process(es) exited: {', '.join(dead)}", flush=True)
                break
            time.sleep(1)
            if time.monotonic() >= next_note:
                next_note += 30
                print(f"  {(time.monotonic() - started) / 60:4.1f} min", flush=True)
        load_minutes = (time.monotonic() - started) / 60
        sampler.stop.set()
        sampler.join()
        poller.stop.set()
        poller.join()
        exited = {c.name: c.proc.returncode for c in children if c.proc.poll() is not None}
        largest = probe.largest_keys()
        stop_child(producer)
        processed_at_stop = stage_trades(settings.redis_url, ns)
        # The stage's backlog when the load stopped: how far behind it was.
        time.sleep(10)
        processed = stage_trades(settings.redis_url, ns)
        for pipe in pipes:
            pipe.send("stop")
        tallies = [pipe.recv() for pipe in pipes]
        for p in client_procs:
            p.join(30)
        produced = sum(1 for _ in read_topic(settings.kafka_bootstrap, settings.topic_trades,
                                             timeout=120))
        letters = sum(1 for _ in read_topic(settings.kafka_bootstrap,
                                            settings.topic_deadletter))
        error_lines, task_failures, per_log = log_counts(children)
        closes: Counter[int] = Counter()
        for _, _, c, _ in tallies:
            closes.update(c)
        errors = {
            "REST 5xx": sum(n for s, n in poller.status.items() if s >= 500),
            "REST failed requests": poller.failed,
            "WS closes by the server": sum(closes.values()),
            "WS connections lost": sum(t[3] for t in tallies),
            "dead letters": letters,
            "Celery task failures": task_failures,
            "ERROR log lines": error_lines,
            "processes that exited": len(exited),
        }
        figures = {
            "minutes": round(load_minutes, 2),
            "trades produced": produced,
            "trades processed by the stage (at load stop)": processed_at_stop,
            "trades processed by the stage (10 s later)": processed,
            "REST requests by status": dict(poller.status),
            "WS messages received": sum(t[0] for t in tallies),
            "WS clients subscribed": sum(t[1] for t in tallies),
            "WS close codes": dict(closes),
            "ERROR lines per log": per_log,
            "exited": exited,
            "largest Redis keys at load stop (bytes)": largest,
            "logs": str(logs),
        }
        return Outcome(sampler.samples, sampler.redis, errors, figures)
    raise AssertionError("unreachable")


def stage_trades(redis_url: str, ns: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        value = client.hget(redis_keys.stream_stats(ns), "trades")
    finally:
        client.close()
    return int(float(value)) if value else 0


# -- report -----------------------------------------------------------------------------------
def verdicts(samples: list[tuple[float, dict[str, int]]]) -> dict[str, tuple[float, float, float]]:
    """Per process: (median MiB of the second third, of the last third, growth)."""
    n = len(samples)
    second, last = samples[n // 3:2 * n // 3], samples[2 * n // 3:]
    out = {}
    for name in samples[0][1]:
        a = statistics.median(s[name] for _, s in second) / 2**20
        b = statistics.median(s[name] for _, s in last) / 2**20
        out[name] = (a, b, (b - a) / a if a else 0.0)
    return out


def table(samples: list[tuple[float, dict[str, int]]], rows: int = 13,
          scale: int = 2**20) -> str:
    names = list(samples[0][1])
    step = max(1, (len(samples) - 1) // (rows - 1))
    picked = samples[::step]
    if picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    w = max(13, *(len(n) + 2 for n in names))
    lines = ["  min  " + "".join(f"{n:>{w}}" for n in names)]
    for t, s in picked:
        lines.append(f"{t / 60:5.1f}  " + "".join(f"{s[n] / scale:>{w}.1f}" for n in names))
    return "\n".join(lines)


def draw(samples: list[tuple[float, dict[str, int]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    times = [t / 60 for t, _ in samples]
    for name in samples[0][1]:
        ax.plot(times, [s[name] / 2**20 for _, s in samples], label=name)
    ax.set_yscale("log")
    third = times[len(times) // 3] if times else 0
    ax.axvline(third, color="grey", linestyle="--", linewidth=0.8)
    ax.text(third, ax.get_ylim()[0] * 1.05, " warm-up ends", color="grey", fontsize=8,
            va="bottom")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB, process and its children)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10_000.0, help="trades per second")
    parser.add_argument("--clients", type=int, default=1_000, help="WebSocket clients")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval")
    parser.add_argument("--database-url", help="PostgreSQL server for a scratch database")
    parser.add_argument("--log-dir", help="where the processes' logs go (default: a temp dir)")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "img" / "soak_rss.png")
    args = parser.parse_args()
    print(f"soak: {args.minutes:g} min at {args.rate:,.0f} trades/s, {args.clients:,} WebSocket "
          f"clients, Celery concurrency {args.concurrency}", flush=True)
    outcome = run(args)
    samples = outcome.samples
    print("\nRSS over time (MiB):")
    print(table(samples))
    if outcome.redis:
        print("\nwhat Redis holds over time:")
        print(table(outcome.redis, scale=1))
    print(f"\nmemory (median MiB, second third -> last third; flat: growth < "
          f"{FLAT_GROWTH:.0%}):")
    flat = True
    found = verdicts(samples)
    if outcome.redis:
        # Redis is judged by what it holds (used_memory), not its RSS: the allocator keeps
        # pages it freed, so a transient peak stays in the RSS.
        held = verdicts([(t, {"redis": v["used MiB"] * 2**20}) for t, v in outcome.redis])
        found["redis (RSS)"] = found.pop("redis")
        found["redis (used)"] = held["redis"]
    for name, (a, b, growth) in found.items():
        judged = (name not in NOT_JUDGED and not name.startswith("ws-clients")
                  and name != "redis (RSS)")
        ok = growth < FLAT_GROWTH
        flat &= ok or not judged
        note = ("flat" if ok else "GROWING") if judged else (
            f"not judged: {NOT_JUDGED.get(name, 'the load generator')}")
        print(f"  {name:<14} {a:9.1f} -> {b:9.1f}  {growth:+7.1%}  {note}")
    print("\nerrors:")
    for name, count in outcome.errors.items():
        print(f"  {name:<26} {count}")
    print("\nfigures:")
    for name, value in outcome.figures.items():
        print(f"  {name}: {value}")
    errors = sum(outcome.errors.values())
    print(f"\nverdict: memory {'flat' if flat else 'NOT flat'} after warm-up, {errors} errors "
          f"-> {'PASS' if flat and errors == 0 else 'FAIL'}")
    draw(samples, args.png, f"AlphaPlus soak: {outcome.figures['minutes']:g} min at "
                            f"{args.rate:,.0f} trades/s, {args.clients:,} WebSocket clients")
    print(f"chart: {args.png}")


if __name__ == "__main__":
    main()
