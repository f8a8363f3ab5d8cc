"""The storage schema as SQLAlchemy Core tables: what readers query and what tests hold the
migrations to (the migrations in infra/migrations create it; a test checks both agree).

Times are `timestamptz` rather than the contract's integer milliseconds: hypertables, retention,
`time_bucket` and continuous aggregates all want a real time type, and it prints readably in psql.
`epoch_ms()` turns a column back into the contract's milliseconds, exactly.

Every table has `run_id` first in its natural key: replays and backtests write into the same
tables under their own run id, and a key that starts with it keeps them from ever touching live
rows (and makes "delete one run" an index range).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Double,
    Index,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    cast,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

LIVE_RUN_ID = "live"

metadata = MetaData()

TIMESTAMPTZ = TIMESTAMP(timezone=True)


def _run_id() -> Column[str]:
    return Column("run_id", Text, nullable=False, server_default=text(f"'{LIVE_RUN_ID}'"))


def _json_object(name: str) -> Column[object]:
    return Column(name, JSONB, nullable=False, server_default=text("'{}'::jsonb"))


trades = Table(
    "trades",
    metadata,
    _run_id(),
    Column("symbol", Text, nullable=False),
    Column("trade_id", BigInteger, nullable=False),
    # The trade time, to the microsecond when the source gave `ts_us`, else to the millisecond.
    Column("time", TIMESTAMPTZ, nullable=False),
    # NUMERIC without precision: the exchange's decimal strings are stored exactly, scale included.
    Column("price", Numeric(asdecimal=True), nullable=False),
    Column("qty", Numeric(asdecimal=True), nullable=False),
    Column("buyer_maker", Boolean, nullable=False),
    Column("market", Text, nullable=False),
    Column("exchange", Text, nullable=False),
    # Set for aggregate trades only: they keep candle trade counts exact when rebuilt from here.
    Column("first_trade_id", BigInteger),
    Column("last_trade_id", BigInteger),
    # In TimescaleDB mode the migration appends `time` to this key, because a hypertable's unique
    # indexes must contain its time column; a trade id has exactly one time, so it is the same key.
    PrimaryKeyConstraint("run_id", "symbol", "trade_id", name="trades_pkey"),
)

candles = Table(
    "candles",
    metadata,
    _run_id(),
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("open_time", TIMESTAMPTZ, nullable=False),
    Column("close_time", TIMESTAMPTZ, nullable=False),
    # double precision, like the Candle struct's floats: a float round-trips through it exactly.
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False),
    Column("quote_volume", Double, nullable=False),
    Column("trades", BigInteger, nullable=False),
    Column("taker_buy_volume", Double, nullable=False),
    Column("taker_buy_quote_volume", Double, nullable=False),
    Column("closed", Boolean, nullable=False),
    # Also the (symbol, time DESC) index: a B-tree is read backwards for "latest N candles".
    PrimaryKeyConstraint("run_id", "symbol", "timeframe", "open_time", name="candles_pkey"),
)

indicators = Table(
    "indicators",
    metadata,
    _run_id(),
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("open_time", TIMESTAMPTZ, nullable=False),
    # JSONB so that adding an indicator (rsi_14, macd, ...) needs no migration. `values` is an SQL
    # keyword: raw SQL must quote it ("values").
    Column("values", JSONB, nullable=False),
    PrimaryKeyConstraint("run_id", "symbol", "timeframe", "open_time", name="indicators_pkey"),
)

signals = Table(
    "signals",
    metadata,
    _run_id(),
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("time", TIMESTAMPTZ, nullable=False),
    Column("name", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("strength", Double),
    _json_object("values"),
    # When the row was first written: the time column is the candle's, this is the emission's.
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("run_id", "symbol", "timeframe", "time", "name", name="signals_pkey"),
)

patterns = Table(
    "patterns",
    metadata,
    _run_id(),
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("time", TIMESTAMPTZ, nullable=False),
    Column("name", Text, nullable=False),
    # Nullable: some patterns (a doji) have no direction.
    Column("direction", Text),
    _json_object("details"),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("run_id", "symbol", "timeframe", "time", "name", name="patterns_pkey"),
)

# "Latest rows of a symbol" across trade ids / timeframes, which the primary keys cannot serve.
Index("trades_symbol_time_idx", trades.c.run_id, trades.c.symbol, trades.c.time.desc())
Index("signals_symbol_time_idx", signals.c.run_id, signals.c.symbol, signals.c.time.desc())
Index("patterns_symbol_time_idx", patterns.c.run_id, patterns.c.symbol, patterns.c.time.desc())

backtests = Table(
    "backtests",
    metadata,
    Column("id", Text, nullable=False),
    # The run whose candles, indicators and signals were tested (`live` or a replay's).
    Column("run_id", Text, nullable=False),
    Column("strategy", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False),
    Column("candles", BigInteger, nullable=False),
    Column("start_time", TIMESTAMPTZ, nullable=False),  # the first candle's open
    Column("end_time", TIMESTAMPTZ, nullable=False),  # the last candle's close (exclusive)
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=func.now()),
    # The report's parts as workers/backtest/report.py writes them (docs/BACKTEST.md).
    _json_object("params"),
    _json_object("config"),
    _json_object("metrics"),
    Column("trades", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    _json_object("equity"),
    PrimaryKeyConstraint("id", name="backtests_pkey"),
)
Index("backtests_run_created_idx", backtests.c.run_id, backtests.c.created_at.desc())

TABLES = (trades, candles, indicators, signals, patterns, backtests)


def epoch_ms(column: ColumnElement[object]) -> ColumnElement[int]:
    """`column` (a timestamptz) as integer milliseconds since the epoch, exactly: EXTRACT returns
    numeric on PostgreSQL 14+, so no float rounding happens on the way."""
    return cast(func.extract("epoch", column) * 1000, BigInteger)
