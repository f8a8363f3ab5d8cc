"""The replay driver, the same for the CLI and the Celery task: look up where the range
starts, run the replay stage until every partition is done, close the range's candles, wait
until the run's Celery tasks are done, and keep the status in Redis current throughout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from celery import Celery

from core import redis_keys
from core import replays as p
from core.exceptions import AlphaPlusError
from core.replays import ReplayRequest, ReplayStatus
from core.settings import Settings
from workers.replay.stage import ReplayStage, Window
from workers.replay.timerange import BROKER, Start, TopicTimes, start_offsets

log = logging.getLogger(__name__)

STATUS_EVERY_S = 0.5
LOCK_TTL_S = 30  # a replay whose process died frees its run id this long after
DEFAULT_TASK_TIMEOUT_S = 600.0
WAIT_SLEEP_S = 0.05


class ReplayStalled(AlphaPlusError):
    """The run's Celery tasks made no progress for the task timeout (no worker running?)."""


class ReplayCancelled(AlphaPlusError):
    pass


def estimate(times: TopicTimes, slack_starts: dict[int, Start], from_ms: int,
             to_ms: int) -> int | None:
    """Trades in the range by offsets, when the broker's answers for both ends verify (not
    asked when they did not for the start less the slack: the same broker)."""
    if any(s.source != BROKER for s in slack_starts.values()):
        return None
    starts = start_offsets(times, from_ms)
    ends = start_offsets(times, to_ms)
    if any(s.source != BROKER for s in (*starts.values(), *ends.values())):
        return None
    return sum(max(0, ends[part].offset - s.offset) for part, s in starts.items())


class Replay:
    """One replay run. `on_progress` is called with the status at each update (the CLI's
    progress bar); `stop` (an event) cancels it from the same process, the cancel key
    (`progress.request_cancel`) from anywhere."""

    def __init__(self, settings: Settings, celery: Celery, request: ReplayRequest, *,
                 task_id: str | None = None,
                 task_timeout_s: float = DEFAULT_TASK_TIMEOUT_S,
                 on_progress: Callable[[ReplayStatus], None] | None = None) -> None:
        if request.timeframes:
            settings = settings.replace(timeframes=request.timeframes)
        self.settings = settings
        self.celery = celery
        self.request = request
        self.task_timeout_s = task_timeout_s
        self.on_progress = on_progress
        self.client = redis.Redis.from_url(settings.redis_url)
        old = p.read_status(self.client, request.run_id)
        self.status = ReplayStatus(
            run_id=request.run_id, state=p.QUEUED, request=request, task_id=task_id,
            created_at=old.created_at if old is not None else p.now_ms())
        # Not thread-local: a heartbeat thread keeps it, so that no single slow step (a
        # lookup on a loaded broker, a long paced wait) can let it expire mid-run.
        self._lock = self.client.lock(redis_keys.replay_lock(request.run_id),
                                      timeout=LOCK_TTL_S, thread_local=False)
        self._last_status = 0.0
        self._read_started = 0.0
        self._read_seconds = 0.0
        self._by_offsets: int | None = None

    # -- the run ---------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> ReplayStatus:
        stop = stop or threading.Event()
        p.check_startable(self.client, self.request, self.status.task_id)
        if not self._lock.acquire(blocking=False):
            raise p.ReplayConflict(f"replay {self.request.run_id} is running")
        beating = threading.Event()
        heartbeat = threading.Thread(target=self._keep_lock, args=(beating,), daemon=True,
                                     name=f"replay-lock-{self.request.run_id}")
        heartbeat.start()
        try:
            self.client.delete(redis_keys.replay_cancel(self.request.run_id))
            self.status.state = p.RUNNING
            self.status.started_at = p.now_ms()
            self._update("lookup", force=True)
            self._run(stop)
            self.status.state = p.DONE
        except ReplayCancelled as exc:
            self.status.state, self.status.error = p.CANCELLED, str(exc)
        except BaseException as exc:
            self.status.state = p.FAILED
            self.status.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.status.finished_at = p.now_ms()
            self._update("", force=True)
            self.client.delete(redis_keys.replay_cancel(self.request.run_id))
            beating.set()
            heartbeat.join()
            try:
                self._lock.release()
            except redis.exceptions.LockError:
                log.warning("replay %s: its lock had expired", self.request.run_id)
            self.client.close()
        return self.status

    def _run(self, stop: threading.Event) -> None:
        req = self.request
        window = Window(req.from_ms, req.to_ms, self.settings.late_grace_ms,
                        frozenset(req.symbols) or None, req.speed, req.read_from_ms)
        with TopicTimes(self.settings.kafka_bootstrap, self.settings.topic_trades) as times:
            # Where the range starts, less the disorder allowance: a trade of the range may
            # sit a little after one that is past it.
            starts = start_offsets(times, max(0, window.start_ms - window.slack_ms))
            self.status.lookup = {str(s.partition): s.source for s in starts.values()}
            self._by_offsets = estimate(times, starts, window.start_ms, req.to_ms)
        log.debug("replay %s: starts %s", req.run_id, starts)
        stage = ReplayStage(self.settings, self.celery, req.run_id, window,
                            persist_trades=req.persist_trades)
        try:
            stage.start({part: s.offset for part, s in starts.items()})
            self._read_started = time.monotonic()
            self._update("reading", stage, force=True)
            while not stage.finished:
                stage.step()
                self._check(stage, stop)
                self._update("reading", stage)
            self._update("reading", stage, force=True)
            self._update("finishing", stage, force=True)
            stage.finish()
            self._update("tasks", stage, force=True)
            while True:
                pending = stage.wait_step()
                if pending < self.status.pending_tasks:
                    stage.last_progress = time.monotonic()
                self.status.pending_tasks = pending
                if not pending:
                    break
                self._check(stage, stop)
                self._update("tasks", stage)
                time.sleep(WAIT_SLEEP_S)
            stage.drop_warmup()
            self._update("tasks", stage, force=True)
        finally:
            stage.close()

    def _keep_lock(self, done: threading.Event) -> None:
        while not done.wait(LOCK_TTL_S / 3):
            try:
                self._lock.reacquire()
            except redis.exceptions.RedisError as exc:
                log.warning("replay %s: could not renew its lock: %s", self.request.run_id, exc)

    def _check(self, stage: ReplayStage, stop: threading.Event) -> None:
        if stop.is_set():
            raise ReplayCancelled("stopped")
        now = time.monotonic()
        if now - stage.last_progress > self.task_timeout_s:
            raise ReplayStalled(
                f"no Celery task of this replay finished in {self.task_timeout_s:g} s: is a "
                f"worker consuming {self.settings.celery_queue_prefix}.indicators (besides "
                "the one running this replay)?")

    # -- status ------------------------------------------------------------------------------
    def _update(self, phase: str, stage: ReplayStage | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        st = self.status
        st.phase = phase
        if stage is not None:
            stats = stage.stats
            st.trades, st.candles = stats.trades, stats.candles_closed
            st.duplicates, st.late, st.rejected = stats.duplicates, stats.late, stats.rejected
            st.skipped = stage.skipped
            if phase == "reading":
                self._read_seconds = now - self._read_started
            # Over the reading only: waiting for the last tasks is not replay speed.
            st.rate = st.trades / self._read_seconds if self._read_seconds > 0 else 0.0
            st.progress = stage.progress()
            reading = phase == "reading"
            if not reading:
                st.estimated_trades = st.trades
            elif self._by_offsets is not None:
                st.estimated_trades = self._by_offsets
            elif st.progress >= 0.01:
                # No offsets to count by: the trades so far over the share of time read.
                st.estimated_trades = int(st.trades / st.progress)
            st.eta_s = None
            if reading and st.estimated_trades is not None and st.rate > 0:
                st.eta_s = max(0.0, (st.estimated_trades - st.trades) / st.rate)
        if st.state == p.RUNNING and p.cancel_requested(self.client, st.run_id):
            raise ReplayCancelled("cancelled on request")
        p.write_status(self.client, st)
        if self.on_progress is not None:
            self.on_progress(st)
