"""Celery's Redis transport with one guard, so that a worker survives Redis going away.

When the broker connection breaks while the worker waits in BRPOP, Celery 5.7 first
`collect()`s the connection, then closes it. In the collect, kombu's Redis channel fails its
close on the pending BRPOP read (a connection error, swallowed) before it marks itself closed,
and the transport is detached from its connection anyway. The close that follows then tries to
put the unacknowledged messages back, needs a new Redis connection pool, and builds it from the
detached transport: AttributeError ('NoneType' object has no attribute 'hostname'), which is no
connection error, so the worker stops with "Unrecoverable error" (seen in
tests/faults/test_redis_outage.py about one run in three, whenever tasks were unacknowledged).

Here the detached transport raises a Redis connection error instead, which the close ignores
like any other: the worker reconnects. The messages it could not put back stay in the
unacknowledged set in Redis, restored after the visibility timeout, and the stream stage's task
outbox sends them again sooner.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
