"""What the workers publish on Redis pub/sub, as the API sees it.

The stream stage and the indicator tasks publish on `redis_keys.channel(ns, kind, symbol, tf)`;
the listener (api/pubsub.py) turns each message into an `Update` and hands it to every handler:
the cache (to drop what it makes stale) first, then the WebSocket hub (to push it), so a REST
reader never gets data older than what was already pushed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

KINDS = ("kline", "indicators", "signals", "patterns")


@dataclass(frozen=True, slots=True)
class Update:
    kind: str  # one of KINDS
    symbol: str  # upper case, as stored: BTCUSDT
    timeframe: str  # 1m, 5m, ...
    payload: bytes  # the JSON the worker published, untouched
    received: float  # time.monotonic() when the listener got it


UpdateHandler = Callable[[Update], Awaitable[None]]


def parse_channel(channel: str, prefix: str) -> tuple[str, str, str] | None:
    """`<prefix><kind>:<symbol>:<tf>` -> (kind, symbol, tf); None for anything else."""
    if not channel.startswith(prefix):
        return None
    parts = channel[len(prefix):].split(":")
    if len(parts) != 3 or parts[0] not in KINDS:
        return None
    return parts[0], parts[1], parts[2]
