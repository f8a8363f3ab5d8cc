"""Trades retention that never deletes history a user put there on purpose.

0001's `add_retention_policy('trades', 90 days)` drops whole chunks by trade time, whatever
their run id: a data.binance.vision import of last year, or a persisted replay, went the first
time the job ran. This revision removes that policy and installs the procedure that
`core.db.retention` schedules when ALPHAPLUS_TRADES_RETENTION_DAYS is set: it deletes only the
live run's trades, and only those that were inside the retention window when it started (the
`floor` it keeps in its job config and moves forward on every run), so history that was already
older then is kept. TimescaleDB mode only; plain tables keep everything.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from core.db.mode import storage_mode

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCEDURE = "alphaplus_trades_retention"


def upgrade() -> None:
    if storage_mode(op.get_bind()) != "timescaledb":
        return
    op.execute("SELECT remove_retention_policy('trades', if_exists => true)")
    # The cutoff is taken once per run and the floor moves to it only after the delete, so a
    # run that fails half-way is repeated whole by the next one.
    op.execute(f"""
        CREATE OR REPLACE PROCEDURE {PROCEDURE}(job_id integer, config jsonb)
        LANGUAGE plpgsql AS $$
        DECLARE
            cutoff timestamptz := now() - make_interval(days => (config->>'days')::integer);
            floor_time timestamptz := (config->>'floor')::timestamptz;
        BEGIN
            IF cutoff > floor_time THEN
                DELETE FROM trades
                 WHERE run_id = 'live' AND time >= floor_time AND time < cutoff;
                PERFORM alter_job(job_id,
                                  config => jsonb_set(config, '{{floor}}', to_jsonb(cutoff)));
            END IF;
        END
        $$
    """)


def downgrade() -> None:
    if storage_mode(op.get_bind()) != "timescaledb":
        return
    op.execute(f"SELECT delete_job(job_id) FROM timescaledb_information.jobs "
               f"WHERE proc_name = '{PROCEDURE}'")
    op.execute(f"DROP PROCEDURE IF EXISTS {PROCEDURE}(integer, jsonb)")
    op.execute("SELECT add_retention_policy('trades', drop_after => INTERVAL '90 days')")
