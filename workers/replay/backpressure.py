"""Keeps a replay from running further ahead of the indicator tasks than the Redis window
allows.

The indicator task of a symbol/timeframe works through the window candles newer than its
engine's state (workers/tasks/indicators.py). The window holds the newest `redis_window` closed
candles, so if the stream side closes more candles of a key than that before a task catches
up, the oldest unprocessed ones fall out and their indicators are never computed. Live, a
key closes one candle per timeframe interval and that never happens; a replay closes
thousands per second. So the replay counts, per key, the candles of its candle tasks that are
not done yet (a task deletes its outbox entry when done), and hands off no more while any key
has more than half a window pending. Each hand-off spans at most a quarter window of base
candles of trade time (the stage cuts its batches so), so a key never exceeds three quarters
of the window plus one, and the tasks always find every candle and the two before it that the
pattern detector looks at.
"""

from __future__ import annotations

from collections import Counter

import redis

from core import redis_keys
from core.candles import Candle
from core.timeframes import TIMEFRAME_MS

MIN_WINDOW = 16  # below this the bound leaves no room for the pattern detector's look-back


class PendingCandles:
    def __init__(self, client: redis.Redis, ns: str, window: int) -> None:
        if window < MIN_WINDOW:
            raise ValueError(f"a replay needs a Redis window of at least {MIN_WINDOW} candles "
                             f"(ALPHAPLUS_REDIS_WINDOW={window})")
        self.client = client
        self.outbox_key = redis_keys.task_outbox(ns)
        self.limit = window // 2
        self.span_candles = window // 4
        self.tasks: dict[str, Counter[tuple[str, str]]] = {}
        self.totals: Counter[tuple[str, str]] = Counter()
        self.completed = 0  # candle tasks seen done

    def span_ms(self, base_timeframe: str) -> int:
        """The most trade time one hand-off may cover."""
        return self.span_candles * TIMEFRAME_MS[base_timeframe]

    def add(self, task_id: str, candles: list[Candle]) -> None:
        counts = Counter((c.symbol, c.timeframe) for c in candles)
        self.tasks[task_id] = counts
        self.totals.update(counts)

    def over(self) -> bool:
        """Whether a key has more pending than allowed, after forgetting the tasks done."""
        if not self.totals or max(self.totals.values()) <= self.limit:
            return False
        self.refresh()
        return bool(self.totals) and max(self.totals.values()) > self.limit

    def refresh(self) -> int:
        """Forget the tasks that are done; returns how many were."""
        ids = list(self.tasks)
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hexists(self.outbox_key, task_id)
        done = 0
        for task_id, pending in zip(ids, pipe.execute(), strict=True):
            if not pending:
                self.totals.subtract(self.tasks.pop(task_id))
                done += 1
        if done:
            self.totals = +self.totals  # drop the zeros
            self.completed += done
        return done
