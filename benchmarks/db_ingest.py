"""Database ingest throughput: the COPY writer (core.db.writer) beside row-by-row upserts.

In a scratch database it creates, migrates and drops (on the server of ALPHAPLUS_DATABASE_URL,
or --url), measured in one run on the same tables:
  1. trades through `write_trades` (COPY → INSERT ... SELECT, ON CONFLICT only on a duplicate),
     into an empty table, in one call and in calls of --batch rows; then into a table that holds
     them all already (every row a conflict: what a replayed Kafka range costs);
  2. candles through `upsert_candles`: new, and every candle amended (all rows updated);
  3. the baselines, on the same rows (the first --row-count of them): one
     `INSERT ... ON CONFLICT` executed per row, committed once at the end; and psycopg2's
     `execute_values` multi-row upsert (1,000 rows a statement).
Times include building the rows in Python. Each figure is the median of --repeats runs (the
slow row-by-row baselines: at most 3), the cases run round-robin so the machine's noise hits
target and baselines alike, and the table is emptied (or refilled) before each run, untimed.

    .venv/bin/python benchmarks/db_ingest.py [--trades 200000] [--candles 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2.extensions import connection as PGConnection
from psycopg2.extras import execute_values

from core.candles import Candle
from core.db.connect import connect
from core.db.mode import storage_mode
from core.db.scratch import scratch_database
from core.db.writer import upsert_candles, write_trades
from core.models import Trade
from core.settings import Settings
from infra.migrations import upgrade

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
TF_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
         "1d": 86_400_000}
T0 = 1_722_470_400_000  # 2024-08-01

TRADE_SQL = (
    "INSERT INTO trades (run_id, symbol, trade_id, time, price, qty, buyer_maker, market, "
    "exchange) VALUES (%s, %s, %s, TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond', %s, %s, "
    "%s, %s, %s) ON CONFLICT DO NOTHING"
)
TRADE_VALUES_SQL = (
    "INSERT INTO trades (run_id, symbol, trade_id, time, price, qty, buyer_maker, market, "
    "exchange) VALUES %s ON CONFLICT DO NOTHING"
)
TRADE_TEMPLATE = ("(%s, %s, %s, TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond', "
                  "%s::numeric, %s::numeric, %s, %s, %s)")
CANDLE_COLUMNS = ("close_time", "open", "high", "low", "close", "volume", "quote_volume",
                  "trades", "taker_buy_volume", "taker_buy_quote_volume", "closed")
CANDLE_SQL = (
    "INSERT INTO candles (run_id, symbol, timeframe, open_time, close_time, open, high, low, "
    "close, volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume, closed) "
    "VALUES (%s, %s, %s, TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond', "
    "TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond', %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s) ON CONFLICT (run_id, symbol, timeframe, open_time) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in CANDLE_COLUMNS)
)


def make_trades(n: int, seed: int = 1) -> list[Trade]:
    rng = random.Random(seed)
    price = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0, "BNBUSDT": 550.0}
    next_id = dict.fromkeys(SYMBOLS, 3_000_000_000)
    out: list[Trade] = []
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        price[sym] *= 1 + rng.uniform(-2e-4, 2e-4)
        next_id[sym] += 1
        out.append({"v": 1, "exchange": "binance", "market": "spot", "symbol": sym,
                    "trade_id": next_id[sym], "price": f"{price[sym]:.2f}",
                    "qty": f"{rng.uniform(0.0001, 2):.8f}", "ts": T0 + i * 3,
                    "buyer_maker": rng.random() < 0.5, "recv_ts": T0 + i * 3 + 40})
    return out


def make_candles(n: int, seed: int = 2, bump: float = 0.0) -> list[Candle]:
    rng = random.Random(seed)
    series = [(s, tf) for s in SYMBOLS for tf in TIMEFRAMES]
    out: list[Candle] = []
    for i in range(n):
        sym, tf = series[i % len(series)]
        open_time = T0 + (i // len(series)) * TF_MS[tf]
        o = rng.uniform(100, 200)
        c = o * (1 + rng.uniform(-0.01, 0.01)) + bump
        vol = rng.uniform(1, 500) + bump
        out.append(Candle(symbol=sym, timeframe=tf, open_time=open_time,
                          close_time=open_time + TF_MS[tf] - 1, open=o, high=max(o, c) * 1.001,
                          low=min(o, c) * 0.999, close=c, volume=vol, quote_volume=vol * o,
                          trades=rng.randint(1, 5000), taker_buy_volume=vol / 2,
                          taker_buy_quote_volume=vol * o / 2, closed=True))
    return out


def truncate(conn: PGConnection, table: str) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {table}")


@dataclass
class Case:
    name: str
    rows: int
    setup: Callable[[], object]  # before each run, not timed
    run: Callable[[], object]
    repeats: int
    rates: list[float] = field(default_factory=list)


def measure(cases: list[Case]) -> None:
    """Run the cases round-robin, so that the machine's noise hits target and baselines alike."""
    for round_ in range(max(c.repeats for c in cases)):
        for case in cases:
            if round_ < case.repeats:
                case.setup()
                start = time.perf_counter()
                case.run()
                case.rates.append(case.rows / (time.perf_counter() - start))
    for case in cases:
        print(f"  {case.name:<50} {statistics.median(case.rates):>10,.0f} rows/s   "
              f"({min(case.rates):,.0f} to {max(case.rates):,.0f})", flush=True)


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def row_by_row(conn: PGConnection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    with conn, conn.cursor() as cur:
        for row in rows:
            cur.execute(sql, row)


def execute_values_upsert(conn: PGConnection, rows: list[tuple[Any, ...]]) -> None:
    with conn, conn.cursor() as cur:
        execute_values(cur, TRADE_VALUES_SQL, rows, template=TRADE_TEMPLATE, page_size=1000)


def trade_params(trades: list[Trade]) -> list[tuple[Any, ...]]:
    return [("live", t["symbol"], t["trade_id"], t["ts"], t["price"], t["qty"], t["buyer_maker"],
             t["market"], t["exchange"]) for t in trades]


def candle_params(candles: list[Candle]) -> list[tuple[Any, ...]]:
    return [("live", c.symbol, c.timeframe, c.open_time, c.close_time, c.open, c.high, c.low,
             c.close, c.volume, c.quote_volume, c.trades, c.taker_buy_volume,
             c.taker_buy_quote_volume, c.closed) for c in candles]


def trade_cases(conn: PGConnection, n: int, n_rows: int, batch: int,
                repeats: int) -> list[Case]:
    trades = make_trades(n)
    few = trade_params(trades[:n_rows])

    def empty() -> None:
        truncate(conn, "trades")

    def stored() -> None:
        truncate(conn, "trades")
        write_trades(conn, trades)

    slow = min(repeats, 3)
    return [
        Case("trades: COPY writer, one call", n, empty, lambda: write_trades(conn, trades),
             repeats),
        Case(f"trades: COPY writer, calls of {batch:,}", n, empty,
             lambda: [write_trades(conn, b) for b in batched(trades, batch)], repeats),
        Case("trades: COPY writer, all already stored", n, stored,
             lambda: write_trades(conn, trades), repeats),
        Case("trades: execute_values upsert, 1,000 rows/stmt", len(few), empty,
             lambda: execute_values_upsert(conn, few), repeats),
        Case("trades: row-by-row INSERT ON CONFLICT", len(few), empty,
             lambda: row_by_row(conn, TRADE_SQL, few), slow),
    ]


def candle_cases(conn: PGConnection, n: int, n_rows: int, repeats: int) -> list[Case]:
    candles = make_candles(n)
    amended = make_candles(n, bump=1.0)
    few = candle_params(candles[:n_rows])

    def empty() -> None:
        truncate(conn, "candles")

    def stored() -> None:
        truncate(conn, "candles")
        upsert_candles(conn, candles)

    return [
        Case("candles: COPY writer upsert, new", n, empty, lambda: upsert_candles(conn, candles),
             repeats),
        Case("candles: COPY writer upsert, all amended", n, stored,
             lambda: upsert_candles(conn, amended), repeats),
        Case("candles: row-by-row INSERT ON CONFLICT DO UPDATE", len(few), empty,
             lambda: row_by_row(conn, CANDLE_SQL, few), min(repeats, 3)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="server to use (default: ALPHAPLUS_DATABASE_URL); a "
                                      "scratch database is created there and dropped")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--row-count", type=int, default=20_000,
                        help="rows for the row-by-row and execute_values baselines")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    server = args.url or Settings.from_env().database_url
    with scratch_database(server, prefix="alphaplus_bench") as url:
        upgrade(url)
        conn = connect(url, application_name="alphaplus db_ingest benchmark")
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                row = cur.fetchone()
            conn.rollback()
            print(f"PostgreSQL {row[0] if row else '?'}, storage mode {storage_mode(conn)}; "
                  f"median of {args.repeats} runs (row-by-row: {min(args.repeats, 3)})")
            trades = trade_cases(conn, args.trades, args.row_count, args.batch, args.repeats)
            measure(trades)
            candles = candle_cases(conn, args.candles, args.row_count, args.repeats)
            measure(candles)
        finally:
            conn.close()
    rate = {c.name: statistics.median(c.rates) for c in trades + candles}
    copy_t = rate["trades: COPY writer, one call"]
    copy_c = rate["candles: COPY writer upsert, new"]
    print("\nratios (COPY writer / baseline, medians):")
    print(f"  trades  vs row-by-row:     "
          f"{copy_t / rate['trades: row-by-row INSERT ON CONFLICT']:6.1f}x")
    print(f"  trades  vs execute_values: "
          f"{copy_t / rate['trades: execute_values upsert, 1,000 rows/stmt']:6.1f}x")
    print(f"  candles vs row-by-row:     "
          f"{copy_c / rate['candles: row-by-row INSERT ON CONFLICT DO UPDATE']:6.1f}x")


if __name__ == "__main__":
    main()
