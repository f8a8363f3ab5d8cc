"""REST throughput and latency: a cached `GET /api/real-time/{symbol}/{timeframe}` on one uvicorn
worker, beside a bare Starlette JSON endpoint returning a body of the same size, same run.

Targets (issue 4): requests/s ≥ 0.6 of the bare endpoint's; p99 < 5 ms at half the maximum rate.

- Maximum rate: `wrk` (Debian package; one thread, 32 keep-alive connections, 10 s), servers and
  wrk taking turns, three rounds, medians. The API answers from its memory layer (a real-time
  value is re-read from Redis only after an update or its TTL: both happen here too, the TTL
  is the API's default).
- Latency at half the API's maximum rate: an open-loop generator (its own process, asyncio, raw
  HTTP/1.1 keep-alive), each request's latency measured from when it was *due*, so a stall
  shows up in the figures instead of slowing the sender down (no coordinated omission).

Run: `.venv/bin/python benchmarks/api_rest.py` (needs `wrk`: apt-get install wrk; Redis at
ALPHAPLUS_REDIS_URL or 127.0.0.1:6379; no database is needed for this endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import redis_keys  # noqa: E402
from core.settings import Settings  # noqa: E402
from infra.stack.ports import free_port  # noqa: E402
from infra.stack.redis import delete_keys  # noqa: E402
from tests.api.seed import T0, candle  # noqa: E402

PATH = "/api/real-time/BTCUSDT/1m"
BARE_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

BODY = orjson.loads(open({body!r}, "rb").read())

async def endpoint(request):
    return JSONResponse(BODY)

app = Starlette(routes=[Route("{path}", endpoint)])
'''


def seed(redis_url: str, ns: str) -> None:
    c = candle("BTCUSDT", "1m", T0, 30_000.5, closed=False)
    values = {k: 1234.5678 for k in ("rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper",
                                     "bb_middle", "bb_lower", "ema_9", "ema_21", "ema_50",
                                     "ema_200", "sma_20", "sma_50", "sma_200", "atr_14",
                                     "stoch_k", "stoch_d", "obv", "vwap", "adx_14")}
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(redis_keys.candle(ns, "BTCUSDT", "1m"), orjson.dumps(
            {f: getattr(c, f) for f in c.__struct_fields__}))
        client.set(redis_keys.indicators(ns, "BTCUSDT", "1m"), orjson.dumps(
            {"symbol": "BTCUSDT", "timeframe": "1m", "open_time": T0 - 60_000,
             "values": values}))
        for i in range(5):
            client.lpush(redis_keys.signals(ns, "BTCUSDT", "1m"), orjson.dumps(
                {"symbol": "BTCUSDT", "timeframe": "1m", "time": T0 - i * 60_000,
                 "name": "ema_9_21_cross", "direction": "bullish", "strength": 0.5,
                 "values": {"ema_9": 1.0, "ema_21": 0.9}}))
    finally:
        client.close()


def start(argv: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv} did not come up:\n{log.read_text()}")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms (closed loop: at saturation)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m is not None, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses")
    return rps, pct("50"), pct("99")


async def _open_loop(port: int, path: str, rate: float, seconds: float,
                     connections: int) -> list[float]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[float] = []
    interval = connections / rate  # each connection sends every `interval`, staggered
    start_at = time.perf_counter() + 0.2

    async def conn(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = start_at + i * interval / connections
        end = start_at + seconds
        try:
            while due < end:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - due) * 1000)
                due += interval
        finally:
            writer.close()

    await asyncio.gather(*(conn(i) for i in range(connections)))
    return latencies


def open_loop_main(port: int, path: str, rate: float, seconds: float, connections: int,
                   out: Any) -> None:
    import uvloop

    out.send(uvloop.run(_open_loop(port, path, rate, seconds, connections)))


def open_loop(port: int, rate: float, seconds: float, connections: int = 16) -> list[float]:
    ctx = mp.get_context("spawn")
    rx, tx = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=open_loop_main, args=(port, PATH, rate, seconds, connections, tx))
    proc.start()
    latencies: list[float] = rx.recv()
    proc.join()
    return latencies


def hey(url: str, rate: float, seconds: int, workers: int = 16) -> tuple[float, float, float]:
    """Paced load from `hey` (Go, Debian package): each worker at rate/workers requests/s.
    Returns achieved req/s, p50 ms, p99 ms. Paced per worker, not open loop: a stall delays
    the next request, so its p99 can read lower than the open loop's."""
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(workers), "-q",
                          f"{rate / workers:.1f}", url], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def q(p: int) -> float:
        m = re.search(rf"{p}% in ([\d.]+) secs", out)
        assert m is not None, out
        return float(m.group(1)) * 1000

    return rps, q(50), q(99)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis-url", default=os.environ.get("ALPHAPLUS_REDIS_URL",
                                                               "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("api_rest: needs wrk (apt-get install wrk)")
    ns = f"bench-rest-{uuid.uuid4().hex[:8]}"
    seed(args.redis_url, ns)
    work = Path(tempfile.mkdtemp(prefix="alphaplus-bench-rest-"))
    api_port, bare_port = free_port(), free_port()
    settings = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=args.redis_url, api_namespace=ns, api_port=api_port,
        symbols=("BTCUSDT", "ETHUSDT"))
    env = {**os.environ, **settings.as_env()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        api_url = f"http://127.0.0.1:{api_port}{PATH}"
        procs.append(start([sys.executable, "-m", "alphaplus.cli", "api"], env, api_url,
                           work / "api.log"))
        body = httpx.get(api_url).content
        (work / "body.json").write_bytes(body)
        (work / "bare_app.py").write_text(BARE_APP.format(body=str(work / "body.json"),
                                                          path=PATH))
        bare_url = f"http://127.0.0.1:{bare_port}{PATH}"
        procs.append(start([sys.executable, "-m", "uvicorn", "--app-dir", str(work),
                            "bare_app:app", "--port", str(bare_port), "--log-level", "warning",
                            "--no-access-log"], env, bare_url, work / "bare.log"))
        bare_len = len(httpx.get(bare_url).content)
        print(f"body: API {len(body)} bytes, bare Starlette {bare_len} bytes; wrk -t1 "
              f"-c{args.connections} -d{args.seconds}s, {args.rounds} rounds taking turns")
        for url in (api_url, bare_url):
            wrk(url, 2, args.connections)  # warm-up
        rows: dict[str, list[tuple[float, float, float]]] = {"api": [], "bare": []}
        for _ in range(args.rounds):
            rows["api"].append(wrk(api_url, args.seconds, args.connections))
            rows["bare"].append(wrk(bare_url, args.seconds, args.connections))
        med = {k: [statistics.median(r[i] for r in v) for i in range(3)]
               for k, v in rows.items()}
        ratio = med["api"][0] / med["bare"][0]
        for name, label in (("api", f"AlphaPlus GET {PATH} (cached)"),
                            ("bare", "bare Starlette JSONResponse, same body")):
            rps, p50, p99 = med[name]
            print(f"  {label:<52} {rps:>9,.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
                  "   (at saturation)")
        print(f"  ratio AlphaPlus / bare: {ratio:.2f} (target >= 0.6: "
              f"{'MET' if ratio >= 0.6 else 'NOT MET'})")
        half = med["api"][0] / 2
        lat = open_loop(api_port, half, args.seconds)
        p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
        print(f"  open loop at half the API's maximum ({half:,.0f} req/s, {len(lat):,} "
              f"requests): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(lat):.2f} ms "
              f"(target p99 < 5 ms: {'MET' if p99 < 5 else 'NOT MET'})")
        bare_lat = open_loop(bare_port, half, args.seconds)
        print(f"  same load on the bare endpoint: p50 {pct(bare_lat, 0.5):.2f} ms, "
              f"p99 {pct(bare_lat, 0.99):.2f} ms")
        if shutil.which("hey"):
            for name, url in (("AlphaPlus", api_url), ("bare", bare_url)):
                got, h50, h99 = hey(url, half, args.seconds)
                print(f"  hey -c16 paced to {half:,.0f} req/s, {name}: achieved {got:,.0f} req/s, "
                      f"p50 {h50:.2f} ms, p99 {h99:.2f} ms")
        stats = httpx.get(f"http://127.0.0.1:{api_port}/api/cache/stats").json()["cache_stats"]
        print(f"  API cache during the run: hit rate {stats['hit_rate']:.4f}, memory hits "
              f"{stats['memory_hits']:,}, misses {stats['misses']:,}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        delete_keys(args.redis_url, [redis_keys.namespace_pattern(ns)])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
