"""What only TimescaleDB mode has: retention that keeps imported history, late data into
compressed chunks, and the hourly continuous aggregate against the stream's own 1h candles.
Skipped, with the reason, where the server has no preloaded TimescaleDB."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.connect import connect, engine
from core.db.retention import apply_trades_retention, retention_job
from core.db.scratch import scratch_database
from core.db.writer import upsert_candles, write_trades
from core.models import Trade
from infra.migrations import upgrade
from tests.core.db.dbutil import count, query
from tests.core.test_candles import recorded_trades, run

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def ts_url(pg_server: str, timescaledb_missing: str | None) -> Iterator[str]:
    if timescaledb_missing is not None:
        pytest.skip(f"TimescaleDB mode: {timescaledb_missing}")
    with scratch_database(pg_server) as url:
        upgrade(url, timescaledb="on")
        yield url


@pytest.fixture
def db(ts_url: str) -> Iterator[PGConnection]:
    c = connect(ts_url)
    c.autocommit = True  # run_job, compress_chunk and refresh_continuous_aggregate want it
    try:
        with c.cursor() as cur:
            cur.execute("TRUNCATE trades, candles")
        yield c
    finally:
        c.close()


def trade(trade_id: int, ts: int, symbol: str = "BTCUSDT", price: str = "100.5") -> Trade:
    return {"v": 1, "exchange": "binance", "market": "spot", "symbol": symbol,
            "trade_id": trade_id, "price": price, "qty": "0.25", "ts": ts,
            "buyer_maker": trade_id % 2 == 0, "recv_ts": ts}


def set_retention(url: str, days: int) -> str:
    eng = engine(url, pooled=False)
    try:
        with eng.begin() as conn:
            return apply_trades_retention(conn, days)
    finally:
        eng.dispose()


def job_id(url: str) -> int | None:
    eng = engine(url, pooled=False)
    try:
        with eng.connect() as conn:
            return retention_job(conn)
    finally:
        eng.dispose()


# --- retention --------------------------------------------------------------------------------

def test_retention_keeps_imported_history_and_replays_and_drops_aged_live_trades(
        db: PGConnection, ts_url: str) -> None:
    now = int(time.time() * 1000)
    year_2023 = int(datetime(2023, 3, 1, tzinfo=UTC).timestamp() * 1000)
    imported = [trade(i, year_2023 + i * 1000) for i in range(1, 2001)]  # 2023, as an import
    write_trades(db, imported)
    assert "deleted 90 days after" in set_retention(ts_url, 90)
    job = job_id(ts_url)
    assert job is not None
    # Retention has been on for 30 days: move its floor back as those days would have.
    with db.cursor() as cur:
        cur.execute("SELECT alter_job(job_id, config => jsonb_set(config, '{floor}', "
                    "to_jsonb(now() - interval '120 days'))) "
                    "FROM timescaledb_information.jobs WHERE job_id = %s", (job,))
    aged = [trade(10_001 + i, now - 100 * DAY_MS + i) for i in range(50)]  # live, aged out
    recent = [trade(20_001 + i, now - 10 * DAY_MS + i) for i in range(50)]
    write_trades(db, aged + recent)
    write_trades(db, aged, run_id="replay-1")  # a replay's copy of the same days
    # Their chunks compressed, as 7 days on would have left them.
    with db.cursor() as cur:
        cur.execute("SELECT count(compress_chunk(c)) FROM show_chunks('trades') c")
    with db.cursor() as cur:
        cur.execute("CALL run_job(%s)", (job,))
    assert count(db, "trades", "live") == len(imported) + len(recent)
    kept = query(db, "SELECT min(trade_id), max(trade_id), count(*) FROM trades "
                     "WHERE run_id = 'live' AND time < '2024-01-01'")
    assert kept == [(1, 2000, 2000)]
    assert count(db, "trades", "replay-1") == len(aged)
    # Running again deletes nothing more: the floor moved on.
    with db.cursor() as cur:
        cur.execute("CALL run_job(%s)", (job,))
    assert count(db, "trades", "live") == len(imported) + len(recent)


def test_retention_is_off_by_default_and_a_setting_changes_or_removes_the_job(
        db: PGConnection, ts_url: str) -> None:
    assert "trades kept" in set_retention(ts_url, 0)
    assert job_id(ts_url) is None
    set_retention(ts_url, 30)
    first = job_id(ts_url)
    set_retention(ts_url, 45)
    assert job_id(ts_url) == first
    config = query(db, "SELECT config FROM timescaledb_information.jobs WHERE job_id = %s",
                   (first,))[0][0]
    assert config["days"] == 45
    set_retention(ts_url, 0)
    assert job_id(ts_url) is None


# --- late data into compressed chunks -----------------------------------------------------------

def compress_all(db: PGConnection, table: str) -> int:
    with db.cursor() as cur:
        cur.execute(f"SELECT count(compress_chunk(c, if_not_compressed => true)) "
                    f"FROM show_chunks('{table}') c")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def compressed_chunks(db: PGConnection, table: str) -> int:
    return int(query(db, "SELECT count(*) FROM timescaledb_information.chunks "
                         "WHERE hypertable_name = %s AND is_compressed", (table,))[0][0])


def test_a_late_trade_into_a_compressed_chunk_is_stored_once(db: PGConnection) -> None:
    day = int(time.time() * 1000) - 60 * DAY_MS
    write_trades(db, [trade(i, day + i * 10) for i in range(1, 1001)])
    assert compress_all(db, "trades") >= 1
    assert compressed_chunks(db, "trades") >= 1
    late = trade(5000, day + 5_000, price="101.25")
    # The late trade, then the whole batch re-emitted (a stream stage resuming): no double.
    assert write_trades(db, [late]) == 1
    assert write_trades(db, [trade(i, day + i * 10) for i in range(1, 1001)] + [late]) == 0
    assert count(db, "trades", "live") == 1001
    assert query(db, "SELECT price::text FROM trades WHERE trade_id = 5000") == [("101.25",)]


def candle(open_time: int, close: float, volume: float, trades: int) -> Candle:
    return Candle(symbol="BTCUSDT", timeframe="1m", open_time=open_time,
                  close_time=open_time + 59_999, open=100.0, high=max(102.0, close), low=99.0,
                  close=close, volume=volume, quote_volume=volume * 100, trades=trades,
                  taker_buy_volume=volume / 2, taker_buy_quote_volume=volume * 50, closed=True)


def test_an_amended_candle_into_a_compressed_chunk_replaces_the_stored_one(
        db: PGConnection) -> None:
    start = (int(time.time() * 1000) - 90 * DAY_MS) // 60_000 * 60_000
    upsert_candles(db, [candle(start + i * 60_000, 101.0, 2.0, 10) for i in range(120)])
    assert compress_all(db, "candles") >= 1
    assert compressed_chunks(db, "candles") >= 1
    amended = candle(start + 7 * 60_000, 103.5, 2.5, 11)  # a late trade amended minute 7
    assert upsert_candles(db, [amended]) == 1
    assert upsert_candles(db, [amended]) == 0  # the same again changes nothing
    rows = query(db, "SELECT close, high, volume, trades FROM candles "
                     "WHERE open_time = to_timestamp(%s / 1000.0)", (amended.open_time,))
    assert rows == [(103.5, 103.5, 2.5, 11)]
    assert count(db, "candles", "live") == 120


# --- the continuous aggregate -------------------------------------------------------------------

def test_the_hourly_aggregate_equals_the_streams_own_1h_candles(db: PGConnection) -> None:
    """On the real recordings (two files across midnight: two hours, both partial)."""
    candles = run(recorded_trades(), ("1m", "1h"))
    upsert_candles(db, [c for c in candles if c.timeframe == "1m"])
    with db.cursor() as cur:
        cur.execute("CALL refresh_continuous_aggregate('candles_1h_from_1m', NULL, NULL)")
    got = query(db, "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, "
                    "close, volume, quote_volume, trades, taker_buy_volume, "
                    "taker_buy_quote_volume, minutes FROM candles_1h_from_1m "
                    "WHERE run_id = 'live' AND symbol = 'BTCUSDT' ORDER BY open_time")
    hourly = [c for c in candles if c.timeframe == "1h"]
    assert len(got) == len(hourly) == 2
    for row, want in zip(got, hourly, strict=True):
        assert row[0] == want.open_time
        assert row[1:5] == (want.open, want.high, want.low, want.close)
        assert row[7] == want.trades
        for value, expected in zip(row[5:7] + row[8:10], (
                want.volume, want.quote_volume, want.taker_buy_volume,
                want.taker_buy_quote_volume), strict=True):
            assert math.isclose(value, expected, rel_tol=1e-9)
        minutes = [c for c in candles if c.timeframe == "1m"
                   and want.open_time <= c.open_time <= want.close_time]
        assert row[10] == len(minutes)
