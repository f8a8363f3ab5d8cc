"""Replays: a time range of `market.trades` through the stream stage and the Celery tasks into
a namespace of its own (docs/REPLAY.md)."""
