"""Celery settings, read from the environment (ALPHAPLUS_* variables, see docs/CONFIGURATION.md).

Every setting that matters for not losing work is explicit here: tasks are acknowledged after
they ran (`task_acks_late`), a worker killed mid-task gives its task back
(`task_reject_on_worker_lost`), and the Redis visibility timeout is the one bound on how long an
unacknowledged task stays invisible before another worker gets it.

`celery -A workers.celery_app` loads this module; `from_settings` gives the same configuration
for explicit settings (tests, replays with their own queues).
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from core.settings import Settings

# Longer than any task runs; a task whose worker died is redelivered after this many seconds.
VISIBILITY_TIMEOUT_S = 300
KINDS = ("indicators", "persist", "jobs")
ROUTES = {
    "alphaplus.candles_closed": "indicators",
    "alphaplus.persist_trades": "persist",
    "alphaplus.amend_late_trades": "persist",
}


def queue_name(settings: Settings, kind: str) -> str:
    return f"{settings.celery_queue_prefix}.{kind}"


def from_settings(settings: Settings) -> dict[str, Any]:
    broker_url = settings.celery_broker_url or settings.redis_url
    return {
        "broker_url": broker_url,
        # kombu's Redis transport with a guard that keeps a worker alive when Redis goes away
        # (workers/broker.py). Any other URL keeps the transport of its scheme; rediss:// too,
        # since kombu may tie its TLS set-up to that scheme and it was not tried here.
        "broker_transport": ("workers.broker:Transport"
                             if broker_url.startswith("redis://") else None),
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Late acks with a large prefetch would hold many tasks hostage in a dying worker.
        "worker_prefetch_multiplier": 4,
        "task_queues": tuple(Queue(queue_name(settings, k)) for k in KINDS),
        "task_default_queue": queue_name(settings, "jobs"),
        "task_routes": {task: {"queue": queue_name(settings, kind)}
                        for task, kind in ROUTES.items()},
        # Flower shows tasks as they are sent and run.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }


globals().update(from_settings(Settings.from_env()))
