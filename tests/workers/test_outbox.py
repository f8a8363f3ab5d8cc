"""The task outbox closes the hole Celery's Redis transport leaves: a task popped by a worker
that dies before recording it is sent again, and a finished task removes itself."""

from __future__ import annotations

import time
from pathlib import Path

import redis

import celeryconfig
from core import redis_keys
from core.db.connect import connect
from core.settings import Settings
from tests.workers.helpers import Processes
from workers.celery_app import make_app
from workers.stream.handoff import TASK_TRADES
from workers.stream.outbox import TaskOutbox, task_done

ROW = ["spot", "BTCUSDT", 7, "61800.10", "0.5", 1723161600000, False]


def test_a_lost_task_is_sent_again_and_a_done_one_is_not(
    stage_settings: Settings, namespace: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = celeryconfig.queue_name(stage_settings, "persist")
    try:
        outbox = TaskOutbox(client, make_app(stage_settings), namespace, redeliver_s=0.5)
        lost = outbox.send(TASK_TRADES, (namespace, [ROW]))
        done = outbox.send(TASK_TRADES, (namespace, [ROW]))
        assert client.llen(queue) == 2
        # What a worker killed between its BRPOP and its bookkeeping leaves: nothing.
        client.delete(queue)
        task_done(client, namespace, done)  # this one did finish
        assert outbox.redeliver() == 0  # not overdue yet
        time.sleep(0.6)
        assert outbox.redeliver() == 1
        body = client.lrange(queue, 0, -1)
        assert len(body) == 1 and lost.encode() in body[0]
        assert client.hkeys(redis_keys.task_outbox(namespace)) == [lost.encode()]
    finally:
        client.close()


def test_tasks_run_by_a_real_worker_leave_the_outbox_empty(
    stage_settings: Settings, namespace: str, redis_url: str, migrated_db: str, tmp_path: Path
) -> None:
    settings = stage_settings.replace(database_url=migrated_db)
    client = redis.Redis.from_url(redis_url)
    outbox = TaskOutbox(client, make_app(settings), namespace, redeliver_s=60)
    db = connect(migrated_db)
    try:
        with Processes(settings, namespace, tmp_path) as procs:
            procs.worker("worker")
            for i in range(5):
                outbox.send(TASK_TRADES, (namespace, [[*ROW[:2], 100 + i, *ROW[3:]]]))
            deadline = time.monotonic() + 60
            while client.hlen(redis_keys.task_outbox(namespace)):
                procs.check_running()
                assert time.monotonic() < deadline, "the worker did not finish the tasks"
                time.sleep(0.2)
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM trades WHERE run_id = %s", (namespace,))
            row = cur.fetchone()
        assert row is not None and row[0] == 5
        assert client.zcard(redis_keys.task_outbox_due(namespace)) == 0
    finally:
        db.close()
        client.close()
