"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, start_http_server

TRADES_INGESTED = Counter(
    "alphaplus_trades_ingested", "Trades validated and handed to Kafka", ["source", "symbol"]
)
DEAD_LETTERS = Counter(
    "alphaplus_dead_letters", "Inputs rejected to the dead-letter topic", ["source", "reason"]
)
DUPLICATES = Counter(
    "alphaplus_duplicate_trades", "Trades dropped as already seen (same trade id)", ["source"]
)
TRADE_GAPS = Counter("alphaplus_trade_gaps", "Trade-id gaps detected", ["source", "symbol"])
MISSING_TRADES = Counter(
    "alphaplus_missing_trades", "Trade ids missing inside detected gaps", ["source", "symbol"]
)
KAFKA_DELIVERY_ERRORS = Counter(
    "alphaplus_kafka_delivery_errors", "Kafka deliveries that failed (then retried)", ["topic"]
)
WS_RECONNECTS = Counter(
    "alphaplus_ws_reconnects", "Exchange WebSocket reconnects", ["reason"]
)


def serve(port: int) -> None:
    """Expose this process's metrics on `port` (0 = off)."""
    if port:
        start_http_server(port, addr="127.0.0.1")
