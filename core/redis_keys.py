"""Every Redis key and pub/sub channel AlphaPlus uses, and their TTLs, in one place.

A namespace separates live data (`live`) from each replay or backtest run (its run id), so a
replay never touches what the live pipeline serves: `alphaplus:<ns>:...`.
"""

from __future__ import annotations

PREFIX = "alphaplus"
LIVE = "live"

#: The forming candle and latest values: refreshed continuously while the feed runs.
LATEST_TTL_S = 24 * 60 * 60
#: Closed candles kept per symbol and timeframe (the API's recent window).
WINDOW_DEFAULT = 500


def _ns(ns: str) -> str:
    if not ns or ":" in ns:
        raise ValueError(f"namespace must be non-empty and without ':': {ns!r}")
    return f"{PREFIX}:{ns}"


def candle(ns: str, symbol: str, timeframe: str) -> str:
    """The latest candle (forming or just closed), JSON."""
    return f"{_ns(ns)}:candle:{symbol}:{timeframe}"


def candle_window(ns: str, symbol: str, timeframe: str) -> str:
    """Closed candles, a sorted set scored by open_time, bounded to the window size."""
    return f"{_ns(ns)}:candles:{symbol}:{timeframe}"


def indicators(ns: str, symbol: str, timeframe: str) -> str:
    return f"{_ns(ns)}:indicators:{symbol}:{timeframe}"


def indicator_state(ns: str, symbol: str, timeframe: str) -> str:
    """The incremental indicator engine's state, so any worker continues where another left."""
    return f"{_ns(ns)}:indicator-state:{symbol}:{timeframe}"


def signals(ns: str, symbol: str, timeframe: str) -> str:
    return f"{_ns(ns)}:signals:{symbol}:{timeframe}"


def patterns(ns: str, symbol: str, timeframe: str) -> str:
    return f"{_ns(ns)}:patterns:{symbol}:{timeframe}"


def stream_checkpoint(ns: str, group: str, topic: str, partition: int) -> str:
    """A stream partition's open-candle state with the Kafka offset it reflects."""
    return f"{_ns(ns)}:stream:checkpoint:{group}:{topic}:{partition}"


def task_outbox(ns: str) -> str:
    """Tasks sent and not yet done: a hash of task id -> [task name, args], kept until the
    task itself deletes its entry after it committed (see workers/stream/outbox.py)."""
    return f"{_ns(ns)}:tasks:outbox"


def task_outbox_due(ns: str) -> str:
    """When each outbox task is due to be sent again: a sorted set of task id by epoch s."""
    return f"{_ns(ns)}:tasks:outbox-due"


def stream_stats(ns: str) -> str:
    """A hash of the stream stage's counters (summed over its processes)."""
    return f"{_ns(ns)}:stream:stats"


def namespace_pattern(ns: str) -> str:
    """A glob of every key of a namespace (to remove one run's keys, and nothing else)."""
    return f"{_ns(ns)}:*"


def celery_queue_patterns(prefix: str) -> tuple[str, ...]:
    """Globs of the Redis keys of Celery queues named `<prefix>.<kind>` (the queue lists and
    kombu's bindings of them)."""
    return (f"{prefix}.*", f"_kombu.binding.{prefix}.*", f"_kombu.binding_permanent.{prefix}.*")


# Pub/sub channels: the API subscribes to `channel_pattern(ns)` and fans out to WebSockets.
def channel(ns: str, kind: str, symbol: str, timeframe: str) -> str:
    """kind: kline | indicators | signals | patterns."""
    return f"{_ns(ns)}:pub:{kind}:{symbol}:{timeframe}"


def channel_pattern(ns: str) -> str:
    return f"{_ns(ns)}:pub:*"


# The API's Redis cache layer (api/cache.py), shared by every API process.
def api_cache(ns: str, key: str) -> str:
    """One cached API response body, bytes, with the API's Redis cache TTL."""
    return f"{_ns(ns)}:api-cache:{key}"


def api_cache_tag(ns: str, tag: str) -> str:
    """The set of `api_cache` keys that carry `tag`, so an update can delete them all."""
    return f"{_ns(ns)}:api-cache-tag:{tag}"


# Replays (workers/replay): each replay's keys live in its own namespace, the run id.
def replay_status(run_id: str) -> str:
    """A replay's progress and outcome, JSON (fields: docs/REPLAY.md), kept after it ends."""
    return f"{_ns(run_id)}:replay:status"


def replay_lock(run_id: str) -> str:
    """Held (with a short TTL the replay keeps renewing) while a process runs the replay, so
    the same run id never runs twice at once."""
    return f"{_ns(run_id)}:replay:lock"


def replay_cancel(run_id: str) -> str:
    """Set to ask a running replay to stop; it ends as `cancelled`."""
    return f"{_ns(run_id)}:replay:cancel"
