"""Candles: the Binance kline contract and the event-time aggregation of trades into them.

A candle covers `[open_time, open_time + timeframe)`; `close_time` is the last millisecond of
that range, as in Binance's klines. Field names are Binance's kline names.
"""

from __future__ import annotations

import msgspec


class Candle(msgspec.Struct, gc=False):
    symbol: str
    timeframe: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float
    closed: bool = False
