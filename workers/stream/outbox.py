"""The task outbox: every task the stream stage sends is recorded in Redis first and deleted by
the task itself once its work is committed; what stays too long is sent again.

Why: Celery's Redis transport takes a task off its queue (BRPOP) before it records it as
unacknowledged, so a worker killed between the two loses that task for good (celery/kombu#305);
late acknowledgement cannot help with a task that was never recorded. The outbox makes delivery
the sender's responsibility: a task runs at least once, and the tasks are idempotent, so at least
once is exactly once in the stored data.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import redis
from celery import Celery

from core import logs, redis_keys

SWEEP_BATCH = 200


class TaskOutbox:
    def __init__(self, client: redis.Redis, celery: Celery, ns: str, redeliver_s: float) -> None:
        self.client = client
        self.celery = celery
        self.ns = ns
        self.redeliver_s = redeliver_s
        self.key = redis_keys.task_outbox(ns)
        self.due_key = redis_keys.task_outbox_due(ns)
        self.sent = 0
        self.resent = 0

    def send(self, task: str, args: tuple[Any, ...], cid: str | None = None) -> str:
        """Record and send `task`; `cid` (the correlation id) travels as a message header,
        so the task's signature and arguments stay as they are."""
        task_id = uuid.uuid4().hex
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key, task_id, orjson.dumps([task, args, cid]))
        pipe.zadd(self.due_key, {task_id: time.time() + self.redeliver_s})
        pipe.execute()
        self._send(task, args, task_id, cid)
        self.sent += 1
        return task_id

    def _send(self, task: str, args: tuple[Any, ...], task_id: str, cid: str | None) -> None:
        headers = None if cid is None else {logs.TASK_HEADER: cid}
        self.celery.send_task(task, args=args, task_id=task_id, headers=headers)

    def redeliver(self, now: float | None = None) -> int:
        """Send again the tasks that are overdue; return how many."""
        now = time.time() if now is None else now
        due: list[bytes] = self.client.zrangebyscore(  # type: ignore[assignment]
            self.due_key, "-inf", now, start=0, num=SWEEP_BATCH)
        count = 0
        for raw_id in due:
            task_id = raw_id.decode()
            entry = self.client.hget(self.key, task_id)
            if entry is None:  # finished meanwhile
                self.client.zrem(self.due_key, task_id)
                continue
            # Entries of an older version hold no correlation id.
            task, args, *rest = orjson.loads(entry)
            self.client.zadd(self.due_key, {task_id: now + self.redeliver_s})
            self._send(task, tuple(args), task_id, rest[0] if rest else None)
            count += 1
        self.resent += count
        return count


def task_done(client: redis.Redis, ns: str, task_id: str | None) -> None:
    """Called by a task after its work is committed (a task sent without the outbox, such as
    one started by hand, has no entry and this does nothing)."""
    if task_id:
        pipe = client.pipeline(transaction=True)
        pipe.hdel(redis_keys.task_outbox(ns), task_id)
        pipe.zrem(redis_keys.task_outbox_due(ns), task_id)
        pipe.execute()
