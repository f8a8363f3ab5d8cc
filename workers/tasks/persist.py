"""Persistence tasks: trade batches, and late trades that amend stored candles.

Both are idempotent: a trade is keyed by (run_id, symbol, trade_id), and a late trade amends
the candles only in the transaction that first inserts it, so a retried or redelivered task
changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from psycopg2.extensions import connection as PGConnection

from core.db.writer import write_trades
from core.models import SCHEMA_VERSION, TradeRecord
from core.timeframes import TIMEFRAME_MS
from workers.celery_app import app
from workers.stream.outbox import task_done
from workers.tasks.observe import rows_written
from workers.tasks.resources import RETRYABLE, database, redis_client, settings

# Row shape sent by the stream stage (workers/stream/handoff.py: trade_rows).
Row = list[Any]  # [market, symbol, trade_id, price, qty, ts, buyer_maker]


def records(rows: list[Row]) -> list[TradeRecord]:
    return [TradeRecord(SCHEMA_VERSION, "binance", market, symbol, trade_id, price, qty, ts,
                        maker, ts)
            for market, symbol, trade_id, price, qty, ts, maker in rows]


@app.task(name="alphaplus.persist_trades", autoretry_for=RETRYABLE, retry_backoff=True,
          retry_backoff_max=60, retry_jitter=True, max_retries=None, bind=True)
def persist_trades(self: Task, ns: str, rows: list[Row]) -> int:
    with database() as conn:
        written = write_trades(conn, records(rows), run_id=ns)
    rows_written("trades", written)
    task_done(redis_client(), ns, self.request.id)
    return written


# One statement per late trade: insert it, and only if that inserted a row, fold it into every
# stored candle of its ranges. Open and close stay as they are: a trade later than the whole
# grace is no longer known to be first or last of its range. Late trades are rare (a grace of
# a minute covers reordering on the way from the exchange), so row-at-a-time is fine here.
_AMEND = """
WITH new AS (
    INSERT INTO trades (run_id, symbol, trade_id, time, price, qty, buyer_maker, market,
                        exchange)
    VALUES (%(run_id)s, %(symbol)s, %(trade_id)s,
            TIMESTAMPTZ 'epoch' + %(ts)s * INTERVAL '1 millisecond',
            %(price)s::numeric, %(qty)s::numeric, %(maker)s, %(market)s, 'binance')
    ON CONFLICT DO NOTHING
    RETURNING price::float8 AS p, qty::float8 AS q, buyer_maker
)
UPDATE candles c SET
    high = GREATEST(c.high, new.p),
    low = LEAST(c.low, new.p),
    volume = c.volume + new.q,
    quote_volume = c.quote_volume + new.p * new.q,
    trades = c.trades + 1,
    taker_buy_volume = c.taker_buy_volume + CASE WHEN new.buyer_maker THEN 0 ELSE new.q END,
    taker_buy_quote_volume = c.taker_buy_quote_volume
        + CASE WHEN new.buyer_maker THEN 0 ELSE new.p * new.q END
FROM new, unnest(%(timeframes)s::text[], %(starts)s::bigint[]) AS r(tf, start_ms)
WHERE c.run_id = %(run_id)s AND c.symbol = %(symbol)s AND c.timeframe = r.tf
  AND c.open_time = TIMESTAMPTZ 'epoch' + r.start_ms * INTERVAL '1 millisecond'
"""


def amend(conn: PGConnection, ns: str, rows: list[Row], timeframes: tuple[str, ...]) -> int:
    """Insert late trades and amend their stored candles; return how many were new."""
    amended = 0
    with conn, conn.cursor() as cur:
        for market, symbol, trade_id, price, qty, ts, maker in rows:
            starts = [ts - ts % TIMEFRAME_MS[tf] for tf in timeframes]
            cur.execute(_AMEND, {
                "run_id": ns, "symbol": symbol, "trade_id": trade_id, "ts": ts,
                "price": price, "qty": qty, "maker": maker, "market": market,
                "timeframes": list(timeframes), "starts": starts,
            })
            amended += 1 if cur.rowcount else 0
    return amended


@app.task(name="alphaplus.amend_late_trades", autoretry_for=RETRYABLE, retry_backoff=True,
          retry_backoff_max=60, retry_jitter=True, max_retries=None, bind=True)
def amend_late_trades(self: Task, ns: str, rows: list[Row]) -> int:
    with database() as conn:
        amended = amend(conn, ns, rows, settings().timeframes)
    rows_written("trades", amended)
    task_done(redis_client(), ns, self.request.id)
    return amended
