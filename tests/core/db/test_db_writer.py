from __future__ import annotations

import math
import time
from decimal import Decimal

import psycopg2
import pytest
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.connect import connect
from core.db.writer import (
    RETRYABLE_DB_ERRORS,
    IndicatorRow,
    PatternRow,
    SignalRow,
    insert_patterns,
    insert_signals,
    upsert_candles,
    upsert_indicators,
    write_trades,
)
from core.models import Trade, TradeRecord
from tests.core.db.dbutil import count, query

T0 = 1_700_000_000_000  # ms, a minute boundary


def trade(trade_id: int, price: str = "65000.10", qty: str = "0.001", symbol: str = "BTCUSDT",
          ts_us: int | None = None, first_trade_id: int | None = None,
          last_trade_id: int | None = None) -> Trade:
    t: Trade = {"v": 1, "exchange": "binance", "market": "spot", "symbol": symbol,
                "trade_id": trade_id, "price": price, "qty": qty, "ts": T0 + trade_id,
                "buyer_maker": trade_id % 2 == 0, "recv_ts": T0 + trade_id + 5}
    if ts_us is not None:
        t["ts_us"] = ts_us
    if first_trade_id is not None and last_trade_id is not None:
        t["first_trade_id"], t["last_trade_id"] = first_trade_id, last_trade_id
    return t


def candle(open_time: int = T0, close: float = 101.5, volume: float = 3.25, trades: int = 7,
           closed: bool = True, timeframe: str = "1m", symbol: str = "BTCUSDT") -> Candle:
    return Candle(symbol=symbol, timeframe=timeframe, open_time=open_time,
                  close_time=open_time + 59_999, open=100.0, high=102.0, low=99.5, close=close,
                  volume=volume, quote_volume=volume * 101.0, trades=trades,
                  taker_buy_volume=volume / 2, taker_buy_quote_volume=volume * 50.5,
                  closed=closed)


# --- trades ---------------------------------------------------------------------------------

def test_trade_prices_and_times_are_stored_exactly(conn: PGConnection) -> None:
    prices = ["0.00000001", "123456789.123456789012345678", "65000.10000000", "1E-8", "42"]
    batch = [trade(i, price=p, qty=p) for i, p in enumerate(prices, start=1)]
    batch.append(trade(100, ts_us=(T0 + 100) * 1000 + 123))
    batch.append(trade(101, first_trade_id=90, last_trade_id=101))
    assert write_trades(conn, batch) == len(batch)

    rows = query(conn, "SELECT trade_id, price::text, qty, buyer_maker, market, exchange, "
                       "extract(epoch FROM time) * 1000000, first_trade_id, last_trade_id "
                       "FROM trades ORDER BY trade_id")
    # The text form keeps the scale too: "65000.10000000" stays "65000.10000000".
    as_text = [*prices[:3], "0.00000001", "42"]
    for (trade_id, price, qty, *_), p, text in zip(rows, prices, as_text, strict=False):
        assert price == text and qty == Decimal(p), trade_id
    by_id = {r[0]: r for r in rows}
    assert by_id[1][3:6] == (False, "spot", "binance")
    assert by_id[2][3] is True
    assert by_id[1][6] == (T0 + 1) * 1000
    assert by_id[100][6] == (T0 + 100) * 1000 + 123  # the microseconds kept
    assert by_id[101][7:] == (90, 101)
    assert by_id[1][7:] == (None, None)


def test_trade_structs_are_accepted(conn: PGConnection) -> None:
    records = [TradeRecord(**trade(i)) for i in range(1, 4)]
    assert write_trades(conn, records) == 3
    assert count(conn, "trades") == 3


def test_writing_the_same_trades_twice_keeps_one_copy(conn: PGConnection) -> None:
    batch = [trade(i) for i in range(1, 1001)]
    assert write_trades(conn, batch) == 1000
    assert write_trades(conn, batch) == 0
    overlapping = [trade(i) for i in range(900, 1101)]
    assert write_trades(conn, overlapping) == 100
    assert count(conn, "trades") == 1100


def test_duplicates_inside_one_batch_collapse(conn: PGConnection) -> None:
    assert write_trades(conn, [trade(1), trade(1), trade(2)]) == 2


def test_fifty_thousand_trades_in_one_call(conn: PGConnection) -> None:
    batch = [trade(i, symbol=("BTCUSDT", "ETHUSDT")[i % 2], price=f"{60000 + i % 977}.{i:08d}")
             for i in range(50_000)]
    start = time.perf_counter()
    assert write_trades(conn, batch) == 50_000
    elapsed = time.perf_counter() - start
    assert count(conn, "trades") == 50_000
    assert query(conn, "SELECT price::text FROM trades WHERE trade_id = 49999")[0][0] == \
        f"{60000 + 49999 % 977}.{49999:08d}"
    assert write_trades(conn, batch) == 0
    assert elapsed < 10, f"50,000 trades took {elapsed:.1f} s"


def test_run_ids_never_touch_each_other(conn: PGConnection) -> None:
    batch = [trade(i) for i in range(1, 11)]
    assert write_trades(conn, batch) == 10
    assert write_trades(conn, batch, run_id="backtest-7") == 10
    assert count(conn, "trades", "live") == 10 and count(conn, "trades", "backtest-7") == 10

    assert upsert_candles(conn, [candle(close=1.0)]) == 1
    assert upsert_candles(conn, [candle(close=2.0)], run_id="backtest-7") == 1
    assert upsert_candles(conn, [candle(close=3.0)], run_id="backtest-7") == 1
    rows = query(conn, "SELECT run_id, close FROM candles ORDER BY run_id")
    assert rows == [("backtest-7", 3.0), ("live", 1.0)]


def test_default_run_id_is_live(conn: PGConnection) -> None:
    write_trades(conn, [trade(1)])
    assert query(conn, "SELECT run_id FROM trades") == [("live",)]
    with pytest.raises(ValueError):
        write_trades(conn, [trade(2)], run_id="")


# --- candles --------------------------------------------------------------------------------

def test_candles_round_trip_every_field(conn: PGConnection) -> None:
    c = candle(close=0.1 + 0.2, volume=1e-9)
    assert upsert_candles(conn, [c]) == 1
    row = query(conn, "SELECT symbol, timeframe, (extract(epoch FROM open_time) * 1000)::bigint, "
                      "(extract(epoch FROM close_time) * 1000)::bigint, open, high, low, close, "
                      "volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume, "
                      "closed FROM candles")[0]
    assert row == (c.symbol, c.timeframe, c.open_time, c.close_time, c.open, c.high, c.low,
                   c.close, c.volume, c.quote_volume, c.trades, c.taker_buy_volume,
                   c.taker_buy_quote_volume, c.closed)


def test_candle_upsert_is_idempotent_and_takes_amendments(conn: PGConnection) -> None:
    batch = [candle(open_time=T0 + i * 60_000) for i in range(100)]
    assert upsert_candles(conn, batch) == 100
    assert upsert_candles(conn, batch) == 0  # nothing changed, nothing rewritten
    assert count(conn, "candles") == 100

    # A late trade amends one candle.
    amended = candle(open_time=T0 + 5 * 60_000, close=103.0, volume=4.0, trades=8)
    assert upsert_candles(conn, [amended]) == 1
    assert count(conn, "candles") == 100
    row = query(conn, "SELECT close, volume, trades FROM candles WHERE open_time = "
                      "TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 ms'", (amended.open_time,))
    assert row == [(103.0, 4.0, 8)]


def test_an_open_candle_never_replaces_a_closed_one(conn: PGConnection) -> None:
    assert upsert_candles(conn, [candle(close=101.0, closed=False)]) == 1
    assert upsert_candles(conn, [candle(close=102.0, closed=True)]) == 1
    assert upsert_candles(conn, [candle(close=99.0, closed=False)]) == 0  # stale, arrived late
    assert query(conn, "SELECT close, closed FROM candles") == [(102.0, True)]


def test_last_version_in_a_batch_wins_and_dicts_are_validated(conn: PGConnection) -> None:
    as_dict = {f: getattr(candle(close=105.0), f) for f in Candle.__struct_fields__}
    assert upsert_candles(conn, [candle(close=104.0), as_dict]) == 1
    assert query(conn, "SELECT close FROM candles") == [(105.0,)]
    with pytest.raises(Exception, match="open_time"):
        upsert_candles(conn, [{**as_dict, "open_time": "soon"}])


# --- indicators, signals, patterns ----------------------------------------------------------

def test_indicators_upsert_merges_values(conn: PGConnection) -> None:
    rows: list[IndicatorRow] = [
        {"symbol": "BTCUSDT", "timeframe": "1m", "open_time": T0 + i * 60_000,
         "values": {"rsi_14": 50.0 + i, "ema_20": math.nan}}
        for i in range(10)
    ]
    assert upsert_indicators(conn, rows) == 10
    assert upsert_indicators(conn, rows) == 0
    more: IndicatorRow = {"symbol": "BTCUSDT", "timeframe": "1m", "open_time": T0,
                          "values": {"macd": -1.25, "rsi_14": 49.0}}
    assert upsert_indicators(conn, [more]) == 1
    stored = query(conn, 'SELECT "values" FROM indicators WHERE open_time = '
                         "TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 ms'", (T0,))
    # NaN (warm-up) is stored as null; earlier keys are kept, newer ones win.
    assert stored == [({"rsi_14": 49.0, "ema_20": None, "macd": -1.25},)]
    assert count(conn, "indicators") == 10


def test_signals_insert_once_and_keep_any_text(conn: PGConnection) -> None:
    tricky = 'tab\there, newline\nthere, back\\slash, "quote", \\N, ünïcode'
    rows: list[SignalRow] = [
        {"symbol": "BTCUSDT", "timeframe": "1m", "time": T0, "name": "rsi_oversold",
         "direction": "buy", "strength": 0.8, "values": {"rsi_14": 25.1, "note": tricky}},
        {"symbol": "BTCUSDT", "timeframe": "1m", "time": T0, "name": tricky,
         "direction": "sell"},
    ]
    assert insert_signals(conn, rows) == 2
    changed: SignalRow = {**rows[0], "direction": "sell"}
    assert insert_signals(conn, [*rows, changed]) == 0  # first write wins: nothing new
    stored = query(conn, 'SELECT name, direction, strength, "values" FROM signals ORDER BY name')
    assert ("rsi_oversold", "buy", 0.8, {"rsi_14": 25.1, "note": tricky}) in stored
    assert (tricky, "sell", None, {}) in stored


def test_patterns_insert_once(conn: PGConnection) -> None:
    rows: list[PatternRow] = [
        {"symbol": "ETHUSDT", "timeframe": "5m", "time": T0 + i * 300_000, "name": "doji",
         "details": {"body_ratio": 0.05}}
        for i in range(5)
    ]
    rows.append({"symbol": "ETHUSDT", "timeframe": "5m", "time": T0, "name": "hammer",
                 "direction": "bullish"})
    assert insert_patterns(conn, rows) == 6
    assert insert_patterns(conn, rows) == 0
    assert insert_patterns(conn, rows, run_id="replay-1") == 6
    assert query(conn, "SELECT direction, details FROM patterns WHERE name = 'hammer' "
                       "AND run_id = 'live'") == [("bullish", {})]
    assert query(conn, "SELECT DISTINCT direction FROM patterns WHERE name = 'doji'") == [(None,)]


# --- transactions and errors ----------------------------------------------------------------

def test_a_bad_row_fails_the_whole_batch_and_the_connection_stays_usable(
        conn: PGConnection) -> None:
    batch = [trade(1), trade(2, price="not-a-number"), trade(3)]
    with pytest.raises(psycopg2.DataError):
        write_trades(conn, batch)
    assert count(conn, "trades") == 0
    assert write_trades(conn, [trade(1)]) == 1


def test_an_autocommit_connection_still_writes_atomically(conn: PGConnection) -> None:
    conn.autocommit = True
    assert write_trades(conn, [trade(1), trade(2)]) == 2
    assert conn.autocommit is True
    with pytest.raises(psycopg2.DataError):
        write_trades(conn, [trade(3), trade(4), trade(5, qty="1.2.3")])
    assert conn.autocommit is True
    assert count(conn, "trades") == 2


def test_malformed_rows_are_refused_before_anything_is_sent(conn: PGConnection) -> None:
    # Trades are formatted without per-field escaping; a character COPY would read as
    # structure must be refused, never shift a column.
    for bad in ("BTC\tUSDT", "BTC\nUSDT", "BTC\\USDT", "BTC\rUSDT"):
        with pytest.raises(ValueError, match="tab, newline"):
            write_trades(conn, [trade(1), trade(2, symbol=bad)])
    with pytest.raises(ValueError, match="wrong type"):
        upsert_candles(conn, [candle(), candle(open_time=T0 + 60_000, trades=2**63)])
    assert count(conn, "trades") == 0 and count(conn, "candles") == 0


def test_candle_text_and_special_floats_survive_binary_copy(conn: PGConnection) -> None:
    odd = candle(symbol="ÄÖÜ\tUSDT", timeframe="1m", volume=0.0)
    nan = Candle(**{**{f: getattr(candle(open_time=T0 + 60_000), f)
                       for f in Candle.__struct_fields__}, "high": math.inf, "low": -0.0})
    assert upsert_candles(conn, [odd, nan]) == 2
    assert query(conn, "SELECT symbol, volume FROM candles WHERE volume = 0") == \
        [("ÄÖÜ\tUSDT", 0.0)]
    assert query(conn, "SELECT high FROM candles WHERE high > 1e308") == [(math.inf,)]


def test_a_lost_connection_raises_a_retryable_error(migrated_db: str) -> None:
    victim = connect(migrated_db)
    killer = connect(migrated_db)
    try:
        pid = victim.get_backend_pid()
        killer.autocommit = True
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(RETRYABLE_DB_ERRORS):
            write_trades(victim, [trade(1)])
        with pytest.raises(RETRYABLE_DB_ERRORS):
            write_trades(victim, [trade(1)])  # and again, on the now closed connection
    finally:
        victim.close()
        killer.close()


def test_empty_input_does_not_touch_the_database(migrated_db: str) -> None:
    closed = connect(migrated_db)
    closed.close()
    assert write_trades(closed, []) == 0
    assert upsert_candles(closed, iter([])) == 0
    assert upsert_indicators(closed, []) == 0
    assert insert_signals(closed, []) == 0
    assert insert_patterns(closed, []) == 0
