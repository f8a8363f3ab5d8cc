"""Logs, metrics and correlation ids of a Celery worker, through Celery's signals (connected when
the task package is imported, so `celery -A workers.celery_app worker` and `alphaplus worker`
behave the same).

Logging: Celery's own set-up is replaced by core/logs.py's (`ALPHAPLUS_LOG_FORMAT`), at
Celery's `--loglevel`. Every record made while a task runs carries the correlation id the
stream stage sent with it (message header `alphaplus_cid`), Celery's own "Task ... succeeded"
line included.

Metrics: the prefork pool runs tasks in child processes, each with its own memory, so the
worker uses prometheus_client's multiprocess mode: every process writes its values to files in
a directory of this worker's own (PROMETHEUS_MULTIPROC_DIR), and the main process serves their
sum on `ALPHAPLUS_METRICS_PORT`. `alphaplus worker` prepares that directory before it starts
Celery, so prometheus_client is imported in multiprocess mode from the start; a worker started
as `celery ... worker` switches to it in `worker_init`, before the pool forks (the value class
is looked up each time a labelled metric's child is created, and every worker metric is
labelled). Files of other (earlier) processes are deleted at start: their counts would be
summed into this worker's.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from contextvars import Token
from typing import Any

from celery import Task, signals

from core import logs, metrics
from workers.tasks.resources import settings

log = logging.getLogger(__name__)

PRIVATE_PREFIX = metrics.WORKER_DIR_PREFIX
OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
_PID_FILE = re.compile(r"_(\d+)\.db$")

# Per task id being run in this process: (start, the correlation id's context token).
_running: dict[str, tuple[float, Token[str | None]]] = {}
_metrics_dir: str | None = None


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connecting this receiver is what stops Celery from installing its own handlers.
    logs.setup("worker", loglevel or logging.INFO, settings().log_format)


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    """Runs in the main process before the pool forks: the metrics directory."""
    global _metrics_dir
    if not settings().metrics_port:
        return
    from prometheus_client import values

    path = os.environ.get(metrics.MULTIPROC_ENV)
    if path:
        _drop_foreign_files(path)
    else:
        path = metrics.fresh_multiprocess_dir(PRIVATE_PREFIX)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _metrics_dir = path


def _drop_foreign_files(path: str) -> None:
    """Delete the value files of every process but this one (none of its children exist yet):
    they are left over from an earlier run."""
    own = os.getpid()
    for name in glob.glob(os.path.join(path, "*.db")):
        found = _PID_FILE.search(name)
        if found is None or int(found.group(1)) != own:
            os.remove(name)


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    # After the pool started, so its processes do not inherit the listening socket (those it
    # replaces later do, harmlessly: they never accept on it).
    s = settings()
    if _metrics_dir is not None and metrics.serve_multiprocess(s.metrics_port, _metrics_dir,
                                                               s.metrics_host):
        log.info("metrics of this worker and its pool on http://%s:%d/metrics (values in %s)",
                 s.metrics_host, s.metrics_port, _metrics_dir)


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    if _metrics_dir is not None and os.path.basename(_metrics_dir).startswith(PRIVATE_PREFIX):
        metrics.remove_multiprocess_dir(_metrics_dir)


@signals.task_prerun.connect
def _task_prerun(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    cid = getattr(task.request, logs.TASK_HEADER, None) if task is not None else None
    if task_id is not None:
        _running[task_id] = (time.perf_counter(), logs.CID.set(cid))


@signals.task_postrun.connect
def _task_postrun(task_id: str | None = None, task: Task | None = None,
                  state: str | None = None, **_: Any) -> None:
    started = _running.pop(task_id, None) if task_id is not None else None
    if started is None:
        return
    start, token = started
    name = task.name if task is not None else "?"
    metrics.TASK_DURATION.labels(name).observe(time.perf_counter() - start)
    outcome = OUTCOMES.get(state or "", (state or "unknown").lower())
    metrics.TASKS.labels(name, outcome).inc()
    logs.CID.reset(token)


def rows_written(table: str, n: int) -> None:
    if n:
        metrics.DB_ROWS_WRITTEN.labels(table).inc(n)
