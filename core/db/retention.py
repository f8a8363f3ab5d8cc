"""The live trades' retention job (TimescaleDB mode): scheduled, changed or removed to match
ALPHAPLUS_TRADES_RETENTION_DAYS each time the schema is brought to head.

The job runs the procedure of migration 0003 once a day. It deletes the live run's trades older
than `days`, but only from its `floor` on: the floor starts at "now - days" when retention is
turned on and moves forward with every run, so history that was already older than the window
(an import, say) is never deleted, and replay runs (other run ids) never are.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection

from core.db.mode import storage_mode

PROCEDURE = "alphaplus_trades_retention"
JOB_ID_SQL = ("SELECT job_id, config FROM timescaledb_information.jobs "
              f"WHERE proc_name = '{PROCEDURE}' ORDER BY job_id")


def retention_job(conn: Connection) -> int | None:
    """The retention job's id; None when there is none (or no TimescaleDB)."""
    if storage_mode(conn) != "timescaledb":
        return None
    row = conn.exec_driver_sql(JOB_ID_SQL).first()
    return None if row is None else int(row[0])


def apply_trades_retention(conn: Connection, days: int) -> str:
    """Make the retention job match `days` (0: none); returns a line saying what is in force."""
    if storage_mode(conn) != "timescaledb":
        return "trades kept (retention needs TimescaleDB mode)"
    rows = conn.exec_driver_sql(JOB_ID_SQL).all()
    if days == 0:
        for job_id, _ in rows:
            conn.exec_driver_sql("SELECT delete_job(%(id)s)", {"id": job_id})
        return "trades kept (ALPHAPLUS_TRADES_RETENTION_DAYS=0)"
    if rows:
        job_id, config = rows[0]
        if int(config["days"]) != days:
            conn.exec_driver_sql("SELECT alter_job(%(id)s, config => %(config)s::jsonb)",
                                 {"id": job_id, "config": json.dumps({**config, "days": days})})
    else:
        conn.exec_driver_sql(
            f"SELECT add_job('{PROCEDURE}', INTERVAL '1 day', config => jsonb_build_object("
            "'days', %(days)s::integer, "
            "'floor', now() - make_interval(days => %(days)s::integer)))",
            {"days": days})
    return (f"live trades deleted {days} days after their trade time (history older than the "
            "window when retention started is kept)")
