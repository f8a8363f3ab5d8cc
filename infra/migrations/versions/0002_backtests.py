"""Backtest reports: one row per report (workers/backtest/store.py writes it).

The same plain table in both storage modes: a report is a document looked up by id or listed
per run, a few rows per run rather than a time series, so a hypertable, compression or
retention would only add cost. Its row's trade list and equity curve are JSONB documents (not a
table of trades), as the API returns them whole.

Frozen like 0001: it spells out its table instead of importing core.db.schema.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = TIMESTAMP(timezone=True)


def _json(name: str, empty: str) -> sa.Column[object]:
    return sa.Column(name, JSONB, nullable=False, server_default=sa.text(f"'{empty}'::jsonb"))


def upgrade() -> None:
    op.create_table(
        "backtests",
        sa.Column("id", sa.Text, nullable=False),
        # The run whose candles, indicators and signals were tested (`live` or a replay's).
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("candles", sa.BigInteger, nullable=False),
        sa.Column("start_time", TIMESTAMPTZ, nullable=False),
        sa.Column("end_time", TIMESTAMPTZ, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        _json("params", "{}"),
        _json("config", "{}"),
        _json("metrics", "{}"),
        _json("trades", "[]"),
        _json("equity", "{}"),
        sa.PrimaryKeyConstraint("id", name="backtests_pkey"),
    )
    # "The reports of a run, newest first."
    op.create_index("backtests_run_created_idx", "backtests",
                    ["run_id", sa.text("created_at DESC")])


def downgrade() -> None:
    op.drop_table("backtests")
