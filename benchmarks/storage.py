"""The two storage modes side by side: TimescaleDB hypertables beside plain PostgreSQL tables.

Two scratch databases on one server (ALPHAPLUS_DATABASE_URL's, or --url), in one run: one
migrated with `upgrade(url, timescaledb="off")` (the baseline), one with `timescaledb="on"`;
both are dropped at the end. The TimescaleDB database's background jobs (compression and
refresh policies) are paused at once, so nothing compresses or refreshes behind the measures'
backs: the script calls `compress_chunk` and `refresh_continuous_aggregate` itself.
  1. Ingest, rows/s, through the project's writer on an autocommit connection: `write_trades`
     of --ingest-trades synthetic BTCUSDT trades (TradeRecords, as the persistence task builds
     them) in calls of --batch; `upsert_candles` of the candle set of 3 and 4 (BTCUSDT and
     ETHUSDT 1m candles over --days, in time order) in calls of --candle-batch. The table is
     truncated (untimed) before each of --repeats runs, the modes alternate; medians. The day of
     2b is written once more in each mode, timed, in calls of --batch.
  2. Compression of trades: (a) every trade of the hftbacktest recordings (tests/fixtures, spot
     and USD-M, BTCUSDT and ETHUSDT; frames parsed by producers.frames.FrameParser; each market
     under its own run_id, as its own database would hold it); (b) a synthetic BTCUSDT day of
     --day-trades trades: a random walk in 0.01 ticks, takers sweeping 1 to n fills in one ms,
     log-normal quantities in 0.00001 BTC, Binance's 8-decimal strings. Bytes: plain
     `pg_total_relation_size('trades')` (heap, indexes, TOAST); TimescaleDB `hypertable_size`
     before and after `compress_chunk` of every chunk, `hypertable_compression_stats` beside.
  3. The database read of `/api/market/data?symbol=BTCUSDT&timeframe=1m&limit=1000&end=T` on a
     cache miss: `api.store.MarketStore.candles` itself (its pool, thread hop, SQL and dicts),
     called directly so that no cache layer answers; --reads reads at random T (the same T in
     both modes, alternating); p50/p99. Beside it, to see where the time goes: the same SQL
     (`api.store._CANDLES_SQL`) on a kept connection, and on a new connection per read (connect,
     query, close), which is what MarketStore did before it kept its idle connections
     (psycopg2's pool with minconn 0 closed each one it was given back); a new backend's first
     TimescaleDB query also pays the extension's set-up. The
     candles are ANALYZEd first (as autovacuum would have); the TimescaleDB chunks are read
     uncompressed, then with every candles chunk compressed; each phase beside plain
     PostgreSQL.
  4. --hours of hourly candles for one symbol: the continuous aggregate `candles_1h_from_1m`
     (refreshed with `refresh_continuous_aggregate(.., NULL, NULL)`) beside the raw 1m candles
     grouped by hour, TimescaleDB: the view's own query (time_bucket, first, last), plain:
     date_bin and array_agg(.. ORDER BY open_time); --agg-reads reads each, p50/p99; the
     results are checked equal.

    .venv/bin/python benchmarks/storage.py [--url URL] [--quick] [--repeats 5]
        [--ingest-trades 200000] [--batch 10000] [--candle-batch 1000] [--days 30]
        [--day-trades 2000000] [--reads 200] [--hours 720] [--agg-reads 50]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg2.extensions import connection as PGConnection

from api.store import _CANDLES_SQL, MarketStore
from core.candles import Candle
from core.db.connect import connect
from core.db.scratch import scratch_database
from core.db.writer import upsert_candles, write_trades
from core.models import SCHEMA_VERSION, TradeRecord
from core.settings import Settings
from infra.migrations import upgrade
from producers.frames import FrameParser
from producers.sources.recording import read_lines

HFT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "binance" / "hftbacktest"
T0 = 1_722_470_400_000  # 2024-08-01 00:00 UTC: a trades chunk (1 day) boundary
DAY_MS = 86_400_000
MODES = ("plain", "tsdb")  # the baseline first
GOAL_MS = 10.0
QUICK = {"repeats": 2, "ingest_trades": 20_000, "days": 3, "day_trades": 100_000,
         "reads": 50, "hours": 72, "agg_reads": 10}

RAW_TSDB_SQL = """
SELECT time_bucket(INTERVAL '1 hour', open_time) AS hour, first(open, open_time), max(high),
       min(low), last(close, open_time), sum(volume), sum(trades), count(*)
FROM candles WHERE timeframe = '1m' AND run_id = 'live' AND symbol = %s
  AND open_time >= %s AND open_time < %s
GROUP BY hour ORDER BY hour"""
RAW_PLAIN_SQL = """
SELECT date_bin(INTERVAL '1 hour', open_time, TIMESTAMPTZ 'epoch') AS hour,
       (array_agg(open ORDER BY open_time))[1], max(high), min(low),
       (array_agg(close ORDER BY open_time DESC))[1], sum(volume), sum(trades), count(*)
FROM candles WHERE timeframe = '1m' AND run_id = 'live' AND symbol = %s
  AND open_time >= %s AND open_time < %s
GROUP BY hour ORDER BY hour"""
# MarketStore.candles's own SQL (without indicators), for the bare-cursor timing beside it.
API_SQL = _CANDLES_SQL.format(indicators="", join="")
# The stream stage stores 1h candles itself; here they are made from the 1m ones, in both modes.
STORE_HOURLY_SQL = """
INSERT INTO candles (run_id, symbol, timeframe, open_time, close_time, open, high, low, close,
                     volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume,
                     closed)
SELECT 'live', symbol, '1h', h, h + INTERVAL '59 minutes 59.999 seconds',
       (array_agg(open ORDER BY open_time))[1], max(high), min(low),
       (array_agg(close ORDER BY open_time DESC))[1], sum(volume), sum(quote_volume),
       sum(trades), sum(taker_buy_volume), sum(taker_buy_quote_volume), true
FROM (SELECT *, date_bin(INTERVAL '1 hour', open_time, TIMESTAMPTZ 'epoch') AS h
      FROM candles WHERE timeframe = '1m' AND run_id = 'live') m
GROUP BY symbol, h"""
CAGG_SQL = """
SELECT open_time, open, high, low, close, volume, trades, minutes FROM candles_1h_from_1m
WHERE run_id = 'live' AND symbol = %s AND open_time >= %s AND open_time < %s
ORDER BY open_time"""


# -- data


def day_trades(n: int, batch: int, seed: int = 7) -> Iterator[list[TradeRecord]]:
    """A synthetic BTCUSDT spot day of `n` trades, in batches of `batch`."""
    rng = random.Random(seed)
    orders = n / (1 + 1 / (math.e - 1))  # fills per taker order: 1 + floor(Exp(1)), mean 1.58
    gap_ms = DAY_MS / orders
    step = 0.03 * 6_000_000 / math.sqrt(orders * 0.4)  # ~3 % a day, in ticks, 40 % of orders
    ticks, t, trade_id, done = 6_000_000, 0.0, 3_735_000_000, 0
    out: list[TradeRecord] = []
    while done < n:
        t += rng.expovariate(1 / gap_ms)
        ts = T0 + min(int(t), DAY_MS - 1)
        maker = rng.random() < 0.5  # buyer is maker: a taker sell, fills walk down
        if rng.random() < 0.4:
            ticks += round(rng.gauss(0, step))
        for _ in range(min(1 + int(rng.expovariate(1.0)), n - done)):
            qty = max(1, round(math.exp(rng.gauss(math.log(200), 1.8))))  # in 0.00001 BTC
            trade_id += 1
            out.append(TradeRecord(SCHEMA_VERSION, "binance", "spot", "BTCUSDT", trade_id,
                                   f"{ticks // 100}.{ticks % 100:02d}000000",
                                   f"{qty // 100_000}.{qty % 100_000:05d}000", ts, maker, ts))
            done += 1
            if rng.random() < 0.3:
                ticks += -1 if maker else 1
        if len(out) >= batch:
            yield out[:batch]
            out = out[batch:]
    if out:
        yield out


def recorded_trades() -> dict[str, list[TradeRecord]]:
    """Every trade of the recordings, per market (the directory's name)."""
    out: dict[str, list[TradeRecord]] = {}
    for path in sorted(HFT.glob("*/*.gz")):
        parser = FrameParser(path.parent.name, ("BTCUSDT", "ETHUSDT"))
        for recv_ns, raw in read_lines(path):
            if recv_ns is not None and b"@trade" in raw[:40]:
                record = parser.parse_record(raw, recv_ns // 1_000_000)
                if record is not None:
                    out.setdefault(path.parent.name, []).append(record)
    return out


def minute_candles(days: int, seed: int = 3) -> list[Candle]:
    """BTCUSDT and ETHUSDT 1m candles over `days`, in time order: random walks."""
    rng = random.Random(seed)
    price = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}
    out: list[Candle] = []
    for minute in range(days * 1440):
        open_time = T0 + minute * 60_000
        for symbol in price:
            o = price[symbol]
            c = price[symbol] = o * (1 + rng.gauss(0, 0.0008))
            vol = math.exp(rng.gauss(2, 1)) * 60_000 / o
            taker = vol * rng.uniform(0.3, 0.7)
            out.append(Candle(symbol, "1m", open_time, open_time + 59_999, o,
                              max(o, c) * (1 + abs(rng.gauss(0, 3e-4))),
                              min(o, c) * (1 - abs(rng.gauss(0, 3e-4))), c, vol, vol * c,
                              rng.randint(50, 5000), taker, taker * c, True))
    return out


# -- measuring


def execute(conn: PGConnection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(conn: PGConnection, sql: str) -> int:
    return int(execute(conn, sql)[0][0])


def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(fn: Callable[..., object], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def ingest_rates(conns: dict[str, PGConnection], table: str, rows: int, repeats: int,
                 write: Callable[[PGConnection], object]) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:
            execute(conns[mode], f"TRUNCATE {table}")
            rates[mode].append(rows / timed(write, conns[mode]))
    return rates


def compress(conn: PGConnection, table: str) -> int:
    return scalar(conn, f"SELECT count(compress_chunk(c, if_not_compressed => true)) "
                        f"FROM show_chunks('{table}') c")


def sizes(conns: dict[str, PGConnection]) -> tuple[int, int, int, int, float]:
    """Plain bytes, TimescaleDB bytes before and after compressing every chunk, the stats'
    after-compression total, and the time compression took."""
    plain = scalar(conns["plain"], "SELECT pg_total_relation_size('trades')")
    before = scalar(conns["tsdb"], "SELECT hypertable_size('trades')")
    took = timed(lambda: compress(conns["tsdb"], "trades"))
    after = scalar(conns["tsdb"], "SELECT hypertable_size('trades')")
    stats = scalar(conns["tsdb"], "SELECT after_compression_total_bytes "
                                  "FROM hypertable_compression_stats('trades')")
    return plain, before, after, stats, took


def query_times(conn: PGConnection, sql: str, params: Sequence[Any],
                reads: int) -> tuple[list[float], list[tuple[Any, ...]]]:
    rows = execute(conn, sql, params)  # warm, and the result to check
    times = [timed(lambda: execute(conn, sql, params)) * 1000 for _ in range(reads)]
    return times, rows


def same_hours(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[1:5] == y[1:5] and math.isclose(x[5], y[5], rel_tol=1e-9)
        and x[6:] == y[6:] for x, y in zip(a, b, strict=True))


def fresh_read(url: str, end: int) -> None:
    """Connect, read, close: what MarketStore.candles does, without the thread and dicts."""
    conn = connect(url)
    try:
        conn.autocommit = True
        execute(conn, API_SQL, ("live", "BTCUSDT", "1m", 0, end, 1000))
    finally:
        conn.close()


def alternating(ends: list[int], read: Callable[[str, int], object]) -> dict[str, list[float]]:
    """ms per read(mode, end), the modes alternating."""
    out: dict[str, list[float]] = {m: [] for m in MODES}
    for t in ends:
        for mode in MODES:
            out[mode].append(1000 * timed(read, mode, t))
    return out


Rows = list[tuple[str, list[float], list[float]]]  # label, tsdb ms, plain ms


async def reads(args: argparse.Namespace, urls: dict[str, str],
                conns: dict[str, PGConnection], hours: int) -> tuple[Rows, Rows, float, int]:
    """Measures 3 and 4, before and after compressing the candles chunks."""
    tsdb = conns["tsdb"]
    rng = random.Random(11)
    last = T0 + (args.days * 1440 - 1) * 60_000
    ends = [rng.randrange(T0 + 1000 * 60_000, last + 1, 60_000) for _ in range(args.reads)]
    stores = {m: MarketStore(urls[m], "live", max_connections=2) for m in MODES}
    end = datetime.fromtimestamp((T0 + args.days * DAY_MS) / 1000, UTC)
    window = ("BTCUSDT", end - timedelta(hours=hours), end)
    refresh = timed(lambda: execute(
        tsdb, "CALL refresh_continuous_aggregate('candles_1h_from_1m', NULL, NULL)"))
    for conn in conns.values():  # as autovacuum would have by now
        execute(conn, "DELETE FROM candles WHERE timeframe = '1h'")
        execute(conn, STORE_HOURLY_SQL)
        execute(conn, "ANALYZE candles")
    end_ms = T0 + args.days * DAY_MS - 1
    read_rows: Rows = []
    agg_rows: Rows = []
    chunks = 0
    try:
        for store in stores.values():  # the pools' first connections, untimed
            await store.candles("BTCUSDT", "1m", 0, ends[0], 1000, False)
        for phase in ("uncompressed", "compressed"):
            if phase == "compressed":
                chunks = compress(tsdb, "candles")
            times: dict[str, list[float]] = {m: [] for m in MODES}
            for t in ends:  # alternating, the same reads in both modes
                for mode, store in stores.items():
                    started = time.perf_counter()
                    candles = await store.candles("BTCUSDT", "1m", 0, t, 1000, False)
                    times[mode].append((time.perf_counter() - started) * 1000)
                    assert len(candles) == 1000 and candles[-1]["open_time"] == t, mode
            read_rows.append((f"MarketStore.candles, tsdb {phase}", times["tsdb"],
                              times["plain"]))
            bare = alternating(ends, lambda mode, t: execute(
                conns[mode], API_SQL, ("live", "BTCUSDT", "1m", 0, t, 1000)))
            read_rows.append((f"its SQL on a kept connection, tsdb {phase}", bare["tsdb"],
                              bare["plain"]))
            new = alternating(ends, lambda mode, t: fresh_read(urls[mode], t))
            read_rows.append((f"its SQL on a new connection, tsdb {phase}", new["tsdb"],
                              new["plain"]))
            plain_t, plain_rows = query_times(conns["plain"], RAW_PLAIN_SQL, window,
                                              args.agg_reads)
            if phase == "uncompressed":
                cagg_t, cagg_rows = query_times(tsdb, CAGG_SQL, window, args.agg_reads)
                agg_rows.append(("tsdb continuous aggregate", cagg_t, plain_t))
                assert same_hours(cagg_rows, plain_rows), "the aggregate differs from plain"
            stored: dict[str, list[float]] = {m: [] for m in MODES}
            for _ in range(args.agg_reads):
                for mode, store in stores.items():
                    started = time.perf_counter()
                    got = await store.candles("BTCUSDT", "1h", 0, end_ms, hours, False)
                    stored[mode].append((time.perf_counter() - started) * 1000)
                    assert len(got) == hours, (mode, len(got))
            agg_rows.append((f"stored 1h, MarketStore.candles (API), {phase}",
                             stored["tsdb"], stored["plain"]))
            raw_t, raw_rows = query_times(tsdb, RAW_TSDB_SQL, window, args.agg_reads)
            agg_rows.append((f"tsdb raw GROUP BY time_bucket, {phase}", raw_t, plain_t))
            assert len(raw_rows) == hours and same_hours(raw_rows, plain_rows), phase
    finally:
        for store in stores.values():
            store.close()
    return read_rows, agg_rows, refresh, chunks


# -- reporting


def worst(rows: Rows, what: str, mode: str) -> str:
    """The worst p99 and p50 of the rows named `what`, and whether it meets the goal."""
    times = [tsdb if mode == "tsdb" else plain for label, tsdb, plain in rows
             if label.startswith(what)]
    p99, p50 = max(pct(t, .99) for t in times), max(pct(t, .5) for t in times)
    return f"{p99:.2f} ({p50:.2f}) ms, {'met' if p99 < GOAL_MS else 'NOT met'}"


W = 50  # label width


def versus(factor: float) -> str:
    """TimescaleDB against plain, from a factor > 1 when TimescaleDB is better."""
    return f"x{factor:.2f} better" if factor >= 1 else f"x{1 / factor:.2f} worse"


class Report:
    """Prints each measure's table and collects the markdown summary."""

    def __init__(self) -> None:
        self.summary: list[str] = []

    def header(self, title: str, unit: str) -> None:
        print(f"\n{title}\n  {'':{W}s} {'plain ' + unit:>19s} {'tsdb ' + unit:>19s}  tsdb vs plain")

    def rates(self, label: str, rates: dict[str, list[float]]) -> None:
        plain, tsdb = (statistics.median(rates[m]) for m in MODES)
        every = " / ".join(", ".join(f"{r:,.0f}" for r in rates[m]) for m in MODES)
        print(f"  {label:{W}s} {plain:>19,.0f} {tsdb:>19,.0f}  {versus(tsdb / plain):13s}"
              f"  (every run, plain / tsdb: {every})")
        self.summary.append(f"| {label} | {plain:,.0f} rows/s | {tsdb:,.0f} rows/s | "
                            f"{versus(tsdb / plain)} |")

    def compression(self, conns: dict[str, PGConnection], label: str) -> None:
        rows = scalar(conns["plain"], "SELECT count(*) FROM trades")
        plain, before, after, stats, secs = sizes(conns)
        mb = 1 << 20
        text = f"{label} ({rows:,} trades)"
        print(f"  {text:{W}s} {plain / mb:>19.2f} {after / mb:>19.2f}  "
              f"{versus(plain / after):13s}  (tsdb uncompressed {before / mb:.2f} MB: "
              f"compression x{before / after:.1f}, in {secs:.1f} s; "
              f"hypertable_compression_stats: {stats / mb:.2f} MB after)")
        self.summary.append(
            f"| trades on disk, {text} | {plain / mb:.1f} MB ({plain / rows:.0f} B/trade) | "
            f"{after / mb:.2f} MB compressed ({after / rows:.1f} B/trade; {before / mb:.1f} MB "
            f"before, x{before / after:.1f}) | x{plain / after:.1f} smaller |")

    def latency(self, label: str, tsdb: list[float], plain: list[float]) -> None:
        t50, t99, p50, p99 = pct(tsdb, .5), pct(tsdb, .99), pct(plain, .5), pct(plain, .99)
        print(f"  {label:{W}s} {p50:>9.2f} {p99:>9.2f} {t50:>9.2f} {t99:>9.2f}  "
              f"{versus(p50 / t50):13s}  (p50)")
        self.summary.append(f"| {label} | p50 {p50:.2f} ms, p99 {p99:.2f} ms | "
                            f"p50 {t50:.2f} ms, p99 {t99:.2f} ms | {versus(p50 / t50)} (p50) |")


def main() -> None:
    quick = "--quick" in sys.argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="server to use (default: ALPHAPLUS_DATABASE_URL); two "
                                      "scratch databases are created there and dropped")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of ~30 s: {QUICK} (explicit flags still win)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ingest-trades", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="trades per write_trades")
    parser.add_argument("--candle-batch", type=int, default=1000, help="candles per upsert")
    parser.add_argument("--days", type=int, default=30, help="of 1m candles, 2 symbols")
    parser.add_argument("--day-trades", type=int, default=2_000_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--hours", type=int, default=720, help="of hourly candles per read")
    parser.add_argument("--agg-reads", type=int, default=50)
    if quick:
        parser.set_defaults(**QUICK)
    args = parser.parse_args()
    hours = min(args.hours, args.days * 24)
    server = args.url or Settings.from_env().database_url
    report = Report()
    with ExitStack() as stack:
        urls = {m: stack.enter_context(scratch_database(server, prefix="alphaplus_bench"))
                for m in MODES}
        conns: dict[str, PGConnection] = {}
        for mode, url in urls.items():
            upgrade(url, timescaledb="off" if mode == "plain" else "on")
            conns[mode] = conn = connect(url, application_name="alphaplus storage benchmark")
            stack.callback(conn.close)
            conn.autocommit = True  # compress_chunk and the refresh want it; the writer copes
        tsdb = conns["tsdb"]
        execute(tsdb, "SELECT alter_job(job_id, scheduled => false) "
                      "FROM timescaledb_information.jobs WHERE job_id >= 1000")
        version = execute(tsdb, "SELECT current_setting('server_version'), extversion "
                                "FROM pg_extension WHERE extname = 'timescaledb'")[0]
        print(f"PostgreSQL {version[0]}, TimescaleDB {version[1]}; plain = "
              "timescaledb='off', tsdb = timescaledb='on', same server, same run")

        # 1. ingest
        report.header(f"1. ingest through core.db.writer, median of {args.repeats} runs",
                      "rows/s")
        trades = list(day_trades(args.ingest_trades, args.batch))
        rates = ingest_rates(conns, "trades", args.ingest_trades, args.repeats,
                             lambda c: [write_trades(c, b) for b in trades])
        report.rates(f"write_trades, {args.ingest_trades:,} in calls of {args.batch:,}", rates)
        candles = minute_candles(args.days)
        chunks = [candles[i:i + args.candle_batch]
                  for i in range(0, len(candles), args.candle_batch)]
        rates = ingest_rates(conns, "candles", len(candles), args.repeats,
                             lambda c: [upsert_candles(c, b) for b in chunks])
        report.rates(f"upsert_candles, {len(candles):,} 1m in calls of {args.candle_batch:,}",
                     rates)

        # 2. compression
        report.header("2. trades on disk (plain: pg_total_relation_size; tsdb: hypertable_size "
                      "after compress_chunk of every chunk)", "MB")
        recorded = recorded_trades()
        for conn in conns.values():
            execute(conn, "TRUNCATE trades")
            for market, records in recorded.items():
                write_trades(conn, records, run_id=market)
        report.compression(conns, "recordings (spot+usdm, 6 files)")
        took = dict.fromkeys(MODES, 0.0)
        for conn in conns.values():
            execute(conn, "TRUNCATE trades")
        for batch in day_trades(args.day_trades, args.batch):
            for mode in MODES:
                took[mode] += timed(write_trades, conns[mode], batch)
        report.compression(conns, "synthetic BTCUSDT day")
        report.rates(f"write_trades, that day once, calls of {args.batch:,}",
                     {m: [args.day_trades / took[m]] for m in MODES})

        # 3. and 4.: reads of the candles of 1. (its last run left them in both databases)
        read_rows, agg_rows, refresh, compressed = asyncio.run(reads(args, urls, conns, hours))
        report.header(f"3. /api/market/data's database read: 1,000 1m candles of BTCUSDT "
                      f"ending at a random minute, {args.reads} reads, ms; compressed phase: every "
                      f"candles chunk ({compressed})", "p50       p99")
        for label, ts_times, plain_times in read_rows:
            report.latency(label, ts_times, plain_times)
        goal = (f"Goal of the API's database read: under {GOAL_MS:.0f} ms (the seed's: 50-200 "
                f"ms). Worst p99 (and p50) over both phases: "
                + "; ".join(f"{what}: plain {worst(read_rows, what, 'plain')}, TimescaleDB "
                            f"{worst(read_rows, what, 'tsdb')}"
                            for what in ("MarketStore.candles", "its SQL on a kept connection"))
                + ".")
        print(f"  {goal}")
        report.header(f"4. {hours} hourly candles of BTCUSDT from {hours * 60:,} 1m candles "
                      f"(plain: raw GROUP BY date_bin), {args.agg_reads} reads, ms; refreshing "
                      f"the aggregate took {refresh:.2f} s", "p50       p99")
        for label, ts_times, plain_times in agg_rows:
            report.latency(f"{hours} h: {label}", ts_times, plain_times)

    print("\nFor docs/BENCHMARKS.md:\n")
    print(f"`.venv/bin/python benchmarks/storage.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print(f"\nPostgreSQL {version[0]}, TimescaleDB {version[1]}, both on one server in one run. "
          f"{goal}\n")
    print("| measure | plain PostgreSQL | TimescaleDB | TimescaleDB vs plain |")
    print("| --- | --- | --- | --- |")
    print("\n".join(report.summary))


if __name__ == "__main__":
    main()
