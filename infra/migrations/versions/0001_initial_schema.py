"""Initial schema: trades, candles, indicators, signals, patterns.

With the timescaledb extension (available and loadable): the tables become hypertables, with
compression and retention policies and a continuous aggregate of hourly candles. Without it: the
same tables, with ordinary indexes. The TimescaleDB branch follows the TimescaleDB 2.x docs and
runs in the test suite on TimescaleDB 2.28 (docs/STORAGE.md).

This file is frozen: it spells out its tables instead of importing core.db.schema, so that later
schema changes go into new revisions and this one keeps meaning what it meant.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from core.db.mode import prepare_timescaledb

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TIMESTAMPTZ = TIMESTAMP(timezone=True)
HOURLY_VIEW = "candles_1h_from_1m"


def _run_id() -> sa.Column[str]:
    return sa.Column("run_id", sa.Text, nullable=False, server_default=sa.text("'live'"))


def _json(name: str) -> sa.Column[object]:
    return sa.Column(name, JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"))


def _timescaledb_version(bind: sa.Connection) -> tuple[int, ...] | None:
    """The extension's version once created here; None when the tables are to be plain
    (ALPHAPLUS_TIMESCALEDB, passed by `infra.migrations.upgrade`, decides)."""
    if not prepare_timescaledb(bind, context.config.attributes.get("timescaledb", "auto")):
        return None
    version = bind.exec_driver_sql(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").scalar()
    return tuple(int(p) for p in str(version).split("-")[0].split(".")[:2])


def upgrade() -> None:
    version = _timescaledb_version(op.get_bind())
    timescale = version is not None

    op.create_table(
        "trades",
        _run_id(),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("trade_id", sa.BigInteger, nullable=False),
        sa.Column("time", TIMESTAMPTZ, nullable=False),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("qty", sa.Numeric, nullable=False),
        sa.Column("buyer_maker", sa.Boolean, nullable=False),
        sa.Column("market", sa.Text, nullable=False),
        sa.Column("exchange", sa.Text, nullable=False),
        sa.Column("first_trade_id", sa.BigInteger),
        sa.Column("last_trade_id", sa.BigInteger),
        # A hypertable's unique indexes must contain its time column; a trade id has one time,
        # so the key with it appended is the same key.
        sa.PrimaryKeyConstraint("run_id", "symbol", "trade_id", *(["time"] if timescale else []),
                                name="trades_pkey"),
    )
    op.create_table(
        "candles",
        _run_id(),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("open_time", TIMESTAMPTZ, nullable=False),
        sa.Column("close_time", TIMESTAMPTZ, nullable=False),
        *(sa.Column(name, sa.Double, nullable=False)
          for name in ("open", "high", "low", "close", "volume", "quote_volume")),
        sa.Column("trades", sa.BigInteger, nullable=False),
        sa.Column("taker_buy_volume", sa.Double, nullable=False),
        sa.Column("taker_buy_quote_volume", sa.Double, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "symbol", "timeframe", "open_time",
                                name="candles_pkey"),
    )
    op.create_table(
        "indicators",
        _run_id(),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("open_time", TIMESTAMPTZ, nullable=False),
        sa.Column("values", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "symbol", "timeframe", "open_time",
                                name="indicators_pkey"),
    )
    op.create_table(
        "signals",
        _run_id(),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("time", TIMESTAMPTZ, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("strength", sa.Double),
        _json("values"),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("run_id", "symbol", "timeframe", "time", "name",
                                name="signals_pkey"),
    )
    op.create_table(
        "patterns",
        _run_id(),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("time", TIMESTAMPTZ, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("direction", sa.Text),
        _json("details"),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("run_id", "symbol", "timeframe", "time", "name",
                                name="patterns_pkey"),
    )
    # Candles and indicators need none: their primary keys end in open_time and are read
    # backwards for "latest first".
    for table in ("trades", "signals", "patterns"):
        op.create_index(f"{table}_symbol_time_idx", table,
                        ["run_id", "symbol", sa.text("time DESC")])

    if version is not None:
        _timescale(version)


def _hypertable(version: tuple[int, ...], table: str, column: str, chunk: str) -> None:
    # No default (time DESC) index: the keys and indexes above serve every query we make, and
    # each extra index costs ingest throughput.
    if version >= (2, 13):
        op.execute(f"SELECT create_hypertable('{table}', by_range('{column}', "
                   f"INTERVAL '{chunk}'), create_default_indexes => FALSE)")
    else:
        op.execute(f"SELECT create_hypertable('{table}', '{column}', "
                   f"chunk_time_interval => INTERVAL '{chunk}', "
                   "create_default_indexes => FALSE)")


def _compress(table: str, segment_by: str, order_by: str, after: str) -> None:
    # Segmenting by the key's leading columns keeps a compressed chunk searchable by symbol
    # and lets a late upsert decompress only its own segment; segmentby plus orderby cover the
    # whole unique key, which TimescaleDB needs to check conflicts in compressed chunks.
    op.execute(f"ALTER TABLE {table} SET (timescaledb.compress, "
               f"timescaledb.compress_segmentby = '{segment_by}', "
               f"timescaledb.compress_orderby = '{order_by}')")
    op.execute(f"SELECT add_compression_policy('{table}', compress_after => INTERVAL '{after}')")


def _timescale(version: tuple[int, ...]) -> None:
    _hypertable(version, "trades", "time", "1 day")
    _hypertable(version, "candles", "open_time", "7 days")
    _hypertable(version, "indicators", "open_time", "7 days")
    _hypertable(version, "signals", "time", "30 days")
    _hypertable(version, "patterns", "time", "30 days")

    _compress("trades", "run_id, symbol", "time DESC, trade_id DESC", "7 days")
    op.execute("SELECT add_retention_policy('trades', drop_after => INTERVAL '90 days')")
    _compress("candles", "run_id, symbol, timeframe", "open_time DESC", "30 days")
    _compress("indicators", "run_id, symbol, timeframe", "open_time DESC", "30 days")

    # WITH NO DATA: materialising at creation cannot run inside the migration's transaction;
    # the refresh policy fills the view instead.
    op.execute(f"""
        CREATE MATERIALIZED VIEW {HOURLY_VIEW} WITH (timescaledb.continuous) AS
        SELECT run_id, symbol,
               time_bucket(INTERVAL '1 hour', open_time) AS open_time,
               first(open, open_time) AS open,
               max(high) AS high,
               min(low) AS low,
               last(close, open_time) AS close,
               sum(volume) AS volume,
               sum(quote_volume) AS quote_volume,
               sum(trades) AS trades,
               sum(taker_buy_volume) AS taker_buy_volume,
               sum(taker_buy_quote_volume) AS taker_buy_quote_volume,
               count(*) AS minutes
        FROM candles
        WHERE timeframe = '1m'
        GROUP BY run_id, symbol, time_bucket(INTERVAL '1 hour', open_time)
        WITH NO DATA
    """)
    op.execute(f"SELECT add_continuous_aggregate_policy('{HOURLY_VIEW}', "
               "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
               "schedule_interval => INTERVAL '15 minutes')")


def downgrade() -> None:
    # Dropping a hypertable drops its chunks and policies too. The extension stays: other
    # databases' objects or other applications may use it, and dropping it needs a superuser.
    op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {HOURLY_VIEW}")
    for table in ("patterns", "signals", "indicators", "candles", "trades"):
        op.drop_table(table)
