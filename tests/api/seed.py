"""Data for the API tests, put exactly where the workers put it: closed candles in the Redis
window and the database, the forming candle in its Redis key, indicators and signals in both,
and updates published on the workers' channels."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import redis

from core import redis_keys
from core.candles import Candle
from core.db.connect import connect
from core.db.writer import (
    IndicatorRow,
    SignalRow,
    insert_signals,
    upsert_candles,
    upsert_indicators,
)
from core.timeframes import TIMEFRAME_MS

encode = msgspec.json.Encoder().encode
T0 = 1_700_000_040_000  # a whole minute


def candle(symbol: str, tf: str, open_time: int, close: float, closed: bool = True) -> Candle:
    return Candle(symbol=symbol, timeframe=tf, open_time=open_time,
                  close_time=open_time + TIMEFRAME_MS[tf] - 1, open=close - 1.0,
                  high=close + 2.0, low=close - 3.0, close=close, volume=1.5,
                  quote_volume=1.5 * close, trades=7, taker_buy_volume=0.5,
                  taker_buy_quote_volume=0.5 * close, closed=closed)


@dataclass
class Seeded:
    closed: list[Candle]
    forming: Candle
    indicators: list[IndicatorRow]
    signals: list[SignalRow] = field(default_factory=list)


def seed(redis_url: str, database_url: str, ns: str, symbol: str = "BTCUSDT",
         tf: str = "1m", n: int = 30, t0: int = T0, seed_: int = 3) -> Seeded:
    rng = random.Random(seed_)
    step = TIMEFRAME_MS[tf]
    closes = [30_000.0 + rng.uniform(-50, 50) for _ in range(n + 1)]
    closed = [candle(symbol, tf, t0 + i * step, closes[i]) for i in range(n)]
    forming = candle(symbol, tf, t0 + n * step, closes[n], closed=False)
    indicators: list[IndicatorRow] = [
        {"symbol": symbol, "timeframe": tf, "open_time": c.open_time,
         "values": {"rsi_14": None if i < 13 else 40.0 + i, "ema_9": None if i < 8 else c.close}}
        for i, c in enumerate(closed)]
    signals: list[SignalRow] = [
        {"symbol": symbol, "timeframe": tf, "time": closed[-1].open_time, "name": "rsi_cross_70",
         "direction": "bearish", "strength": 0.4, "values": {"rsi_14": 71.0}}]
    conn = connect(database_url)
    try:
        upsert_candles(conn, closed, run_id=ns)
        upsert_indicators(conn, indicators, run_id=ns)
        insert_signals(conn, signals, run_id=ns)
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline()
        pipe.zadd(redis_keys.candle_window(ns, symbol, tf),
                  {encode(c): c.open_time for c in closed})
        pipe.set(redis_keys.candle(ns, symbol, tf), encode(forming))
        pipe.set(redis_keys.indicators(ns, symbol, tf), orjson.dumps(indicators[-1]))
        for s in signals:
            pipe.lpush(redis_keys.signals(ns, symbol, tf), orjson.dumps(s))
        pipe.execute()
    finally:
        client.close()
    return Seeded(closed, forming, indicators, signals)


def publish_live(redis_url: str, ns: str, c: Candle) -> None:
    """What workers/stream/live.py does for a forming candle: the key, then the channel."""
    client = redis.Redis.from_url(redis_url)
    try:
        payload = encode(c)
        pipe = client.pipeline(transaction=False)
        pipe.set(redis_keys.candle(ns, c.symbol, c.timeframe), payload)
        pipe.publish(redis_keys.channel(ns, "kline", c.symbol, c.timeframe), payload)
        pipe.execute()
    finally:
        client.close()


def as_dict(c: Candle) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(c)
    return out
