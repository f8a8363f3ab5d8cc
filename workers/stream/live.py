"""Forming candles to Redis (latest value + pub/sub), throttled per symbol and timeframe.

Leading edge and trailing edge: the first change after a quiet spell is published at once, and
changes inside the throttle interval are published when it ends, so a reader is never more than
one interval behind and the API can push a tick within milliseconds of it.

The published message is the stored candle plus, at the end, the batch's correlation id
(`"cid"`, core/logs.py): readers that do not know the field ignore it. The stored latest value
stays the plain candle.
"""

from __future__ import annotations

import time

import msgspec
import redis

from core import logs, metrics, redis_keys
from core.candles import Candle, SymbolCandles

_encode = msgspec.json.Encoder().encode


class LivePublisher:
    def __init__(self, client: redis.Redis, ns: str, throttle_ms: int, window: int) -> None:
        self.client = client
        self.ns = ns
        self.window = window
        self.throttle_s = throttle_ms / 1000
        self._last: dict[str, float] = {}  # symbol -> when its candles were last published
        self._dirty: dict[str, SymbolCandles] = {}
        self.published = 0
        self.cid: str | None = None  # of the batch being handled; set by the stage
        self._latency = metrics.stream_candle_latency()

    def touched(self, symbols: dict[str, SymbolCandles], names: set[str]) -> None:
        for name in names:
            self._dirty[name] = symbols[name]

    def publish_due(self, now: float | None = None, force: bool = False) -> None:
        """Publish every changed symbol whose interval has passed (all of them with `force`,
        when the stage stops: the trailing edge must not be lost)."""
        if not self._dirty:
            return
        now = time.monotonic() if now is None else now
        due = [s for s in self._dirty
               if force or now - self._last.get(s, 0.0) >= self.throttle_s]
        if not due:
            return
        pipe = self.client.pipeline(transaction=False)
        newest: list[int] = []
        for symbol in due:
            sc = self._dirty.pop(symbol)
            for candle in sc.forming():
                self._write(pipe, candle)
            if sc.base is not None:
                newest.append(sc.base.last_ts)
            self._last[symbol] = now
        pipe.execute()
        self._observe(newest)

    def closed(self, candles: list[Candle]) -> None:
        """Closed candles replace the latest value at once (no throttle: one per range) and
        join the window of recent closed candles.

        The window is written here, before the indicator tasks are sent, because it is the
        order of record: an indicator task works through every window candle newer than its
        engine's state, so tasks may run in any order and any number of times.
        """
        if not candles:
            return
        pipe = self.client.pipeline(transaction=True)
        for candle in candles:
            self._write(pipe, candle)
            key = redis_keys.candle_window(self.ns, candle.symbol, candle.timeframe)
            # An amended candle replaces the one of the same range.
            pipe.zremrangebyscore(key, candle.open_time, candle.open_time)
            pipe.zadd(key, {_encode(candle): candle.open_time})
            pipe.zremrangebyrank(key, 0, -self.window - 1)
        # The candle that closed is no longer the latest of its timeframe when the trade that
        # closed it opened the next one: write the forming candles after it, unthrottled, so
        # the latest value never goes back in time.
        newest: list[int] = []
        for symbol in {c.symbol for c in candles}:
            sc = self._dirty.pop(symbol, None)
            if sc is not None:
                for candle in sc.forming():
                    self._write(pipe, candle)
                if sc.base is not None:
                    newest.append(sc.base.last_ts)
                self._last[symbol] = time.monotonic()
        pipe.execute()
        self._observe(newest)

    def _observe(self, newest_ts: list[int]) -> None:
        """Per symbol published, the age of its newest trade (one observation per symbol and
        publish, never per trade)."""
        if newest_ts:
            now_ms = time.time() * 1000
            for ts in newest_ts:
                self._latency.observe(max(now_ms - ts, 0.0) / 1000)

    def _write(self, pipe: redis.client.Pipeline, candle: Candle) -> None:
        payload = _encode(candle)
        ns, symbol, tf = self.ns, candle.symbol, candle.timeframe
        pipe.set(redis_keys.candle(ns, symbol, tf), payload, ex=redis_keys.LATEST_TTL_S)
        pipe.publish(redis_keys.channel(ns, "kline", symbol, tf),
                     logs.with_cid(payload, self.cid))
        self.published += 1
