"""PostgreSQL/TimescaleDB storage: the schema, the bulk writer and the storage mode.

The schema itself is made by the Alembic migrations in `infra.migrations`
(`alphaplus migrate`); docs/STORAGE.md describes the tables and the row shapes.
"""

from __future__ import annotations

from core.db.connect import connect, engine, libpq_url, sqlalchemy_url
from core.db.mode import Mode, storage_mode, timescaledb_available, timescaledb_version
from core.db.schema import LIVE_RUN_ID, TABLES, epoch_ms, metadata
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

__all__ = [
    "LIVE_RUN_ID",
    "RETRYABLE_DB_ERRORS",
    "TABLES",
    "IndicatorRow",
    "Mode",
    "PatternRow",
    "SignalRow",
    "connect",
    "engine",
    "epoch_ms",
    "insert_patterns",
    "insert_signals",
    "libpq_url",
    "metadata",
    "sqlalchemy_url",
    "storage_mode",
    "timescaledb_available",
    "timescaledb_version",
    "upsert_candles",
    "upsert_indicators",
    "write_trades",
]
