"""`alphaplus.candles_closed`: indicators, signals and patterns for closed candles.

The stream stage writes closed candles to a bounded window in Redis (the order of record) and
then sends this task with the same candles. Per symbol and timeframe, under a Redis lock, the
task takes every window candle newer than its indicator engine's state and applies them in
order, so tasks may arrive in any order, be retried or run twice, and the values come out the
same. The engine's state (and the state before its last candle, to redo that candle when a late
trade amends it) lives in Redis, so any worker continues where another stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import redis
from celery import Task

from core import logs, redis_keys
from core.candles import Candle
from core.db.writer import (
    IndicatorRow,
    PatternRow,
    SignalRow,
    insert_patterns,
    insert_signals,
    upsert_candles,
    upsert_indicators,
)
from core.indicators import CandleOutOfOrder, IndicatorEngine
from core.patterns import detect
from core.signals import evaluate
from workers.celery_app import app
from workers.stream.outbox import task_done
from workers.tasks.observe import rows_written
from workers.tasks.resources import RETRYABLE, database, redis_client

log = logging.getLogger(__name__)

# A key's work under its lock takes milliseconds. The timeout is also how long a worker killed
# inside the lock blocks that key, so it is short; a holder slower than that only lets a second
# worker compute the same values (idempotent writes), and its release then fails with
# LockNotOwnedError. A task that cannot get a lock within the wait, or loses it, retries (with
# backoff) rather than fail: failing would drop its keys' indicators until some later candle of
# each came along, which for a replay's last candles is never.
LOCK_TIMEOUT_S = 10
LOCK_WAIT_S = 5
RECENT_EVENTS = 100  # signals and patterns kept per symbol and timeframe in Redis
_decode_candle = msgspec.json.Decoder(Candle).decode


@dataclass
class KeyOutput:
    candles: list[Candle] = field(default_factory=list)
    indicators: list[IndicatorRow] = field(default_factory=list)
    signals: list[SignalRow] = field(default_factory=list)
    patterns: list[PatternRow] = field(default_factory=list)


def advance(state: dict[str, Any] | None, window: Sequence[Candle]) -> tuple[
        dict[str, Any], KeyOutput]:
    """Apply the window candles the state has not seen; return the new state and the output.

    `state` is {"engine": ..., "before_last": ...} as stored in Redis, or None for a new key.
    """
    engine = IndicatorEngine() if state is None else IndicatorEngine.from_state(state["engine"])
    before_last = None if state is None else state.get("before_last")
    prev: dict[str, Any] | None = None if state is None else state["engine"].get("last")
    out = KeyOutput()
    last = engine.last_open_time
    pending = [c for c in window if last is None or c.open_time >= last]
    for candle in pending:
        if candle.open_time == engine.last_open_time:
            try:
                engine.update(candle)  # the same candle again: nothing changes
                continue
            except CandleOutOfOrder:
                # A late trade amended the last candle: redo it from the state before it.
                engine = (IndicatorEngine() if before_last is None
                          else IndicatorEngine.from_state(before_last))
                prev = None if before_last is None else before_last.get("last")
        before_last = engine.state()
        values = engine.update(candle)
        recent = [c for c in window if c.open_time <= candle.open_time][-3:]
        out.candles.append(candle)
        out.indicators.append({"symbol": candle.symbol, "timeframe": candle.timeframe,
                               "open_time": candle.open_time, "values": values})
        for sig in evaluate(prev, values, candle):
            out.signals.append({"symbol": sig.symbol, "timeframe": sig.timeframe,
                                "time": sig.time, "name": sig.name, "direction": sig.direction,
                                "strength": sig.strength, "values": sig.values})
        for pat in detect(recent):
            out.patterns.append(msgspec.to_builtins(pat))
        prev = values
    return {"engine": engine.state(), "before_last": before_last}, out


def _window(client: redis.Redis, ns: str, symbol: str, tf: str) -> list[Candle]:
    raw: list[bytes] = client.zrange(  # type: ignore[assignment]
        redis_keys.candle_window(ns, symbol, tf), 0, -1)
    return [_decode_candle(r) for r in raw]


def _publish(pipe: redis.client.Pipeline, ns: str, symbol: str, tf: str,
             out: KeyOutput) -> None:
    # What is published carries the task's correlation id (what is stored does not).
    cid = logs.current()
    if out.indicators:
        latest = orjson.dumps(out.indicators[-1])
        pipe.set(redis_keys.indicators(ns, symbol, tf), latest, ex=redis_keys.LATEST_TTL_S)
        pipe.publish(redis_keys.channel(ns, "indicators", symbol, tf),
                     logs.with_cid(latest, cid))
    for kind, rows, key in (("signals", out.signals, redis_keys.signals),
                            ("patterns", out.patterns, redis_keys.patterns)):
        for row in rows:
            payload = orjson.dumps(row)
            pipe.lpush(key(ns, symbol, tf), payload)
            pipe.publish(redis_keys.channel(ns, kind, symbol, tf), logs.with_cid(payload, cid))
        if rows:
            pipe.ltrim(key(ns, symbol, tf), 0, RECENT_EVENTS - 1)


def written_part(out: KeyOutput, write_from: int) -> KeyOutput:
    """What of `out` a replay stores: its warm-up (candles opening before `write_from`) only
    advances the indicator state."""
    if not write_from:
        return out
    return KeyOutput(
        candles=[c for c in out.candles if c.open_time >= write_from],
        indicators=[r for r in out.indicators if r["open_time"] >= write_from],
        signals=[r for r in out.signals if r["time"] >= write_from],
        patterns=[r for r in out.patterns if r["time"] >= write_from])


def process_key(client: redis.Redis, ns: str, symbol: str, tf: str,
                write_from: int = 0) -> KeyOutput:
    """Bring one symbol/timeframe's indicators up to its window, under its lock; store and
    publish what opens at or after `write_from`.

    The database is written before the new engine state is stored: if the database is down,
    the task fails with the state unchanged and its retry computes the same rows again.
    """
    state_key = redis_keys.indicator_state(ns, symbol, tf)
    with client.lock(f"{state_key}:lock", timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_WAIT_S):
        raw = client.get(state_key)
        state = None if raw is None else orjson.loads(raw)
        new_state, out = advance(state, _window(client, ns, symbol, tf))
        out = written_part(out, write_from)
        if out.indicators:
            with database() as conn:
                rows_written("indicators", upsert_indicators(conn, out.indicators, run_id=ns))
                rows_written("signals", insert_signals(conn, out.signals, run_id=ns))
                rows_written("patterns", insert_patterns(conn, out.patterns, run_id=ns))
        pipe = client.pipeline(transaction=True)
        pipe.set(state_key, orjson.dumps(new_state))
        _publish(pipe, ns, symbol, tf, out)
        pipe.execute()
    return out


@app.task(name="alphaplus.candles_closed",
          autoretry_for=(*RETRYABLE, redis.exceptions.LockError), retry_backoff=True,
          retry_backoff_max=60, retry_jitter=True, max_retries=None, bind=True)
def candles_closed(self: Task, ns: str, candles: list[dict[str, Any]],
                   write_from: int = 0) -> int:
    """Closed (or amended) candles of one stream batch: store them, then indicators,
    signals and patterns for every symbol/timeframe they touch. A replay's warm-up candles
    (opening before `write_from`) only advance the indicators."""
    closed = [Candle(**c) for c in candles]
    stored = [c for c in closed if c.open_time >= write_from]
    if stored:
        with database() as conn:
            # Amended candles replace their first version.
            rows_written("candles", upsert_candles(conn, stored, run_id=ns))
    client = redis_client()
    for symbol, tf in sorted({(c.symbol, c.timeframe) for c in closed}):
        process_key(client, ns, symbol, tf, write_from)
    task_done(client, ns, self.request.id)
    return len(closed)
