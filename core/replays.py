"""A replay's request and status, and where they live: one JSON value per run in Redis
(`redis_keys.replay_status`), written by whoever runs the replay (the CLI or the Celery task)
and read by the CLI's `--celery` mode and the API's `GET /api/replays/{id}`. The fields are
documented in docs/REPLAY.md. In the shared package because the workers (which run replays)
and the API (which starts them and reports on them) both speak it.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis
from celery import Celery

from core import redis_keys
from core.exceptions import AlphaPlusError
from core.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, parse_timeframes

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL = (DONE, FAILED, CANCELLED)

# Redis namespaces, Kafka group names and database run ids all take these.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DURATION = re.compile(r"(\d{1,9})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
WARMUP_ALL = "all"


class BadReplay(AlphaPlusError):
    """A replay request that cannot run (bad run id, empty range, ...)."""


class ReplayConflict(AlphaPlusError):
    """The run id is running now, or was used for another replay."""


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    from_ms: int
    to_ms: int
    symbols: tuple[str, ...] = ()  # empty: every symbol in the topic
    speed: float = 0.0  # 0: as fast as possible; else a multiple of real time
    timeframes: tuple[str, ...] = ()  # empty: the settings' timeframes
    persist_trades: bool = False
    # Trade time read before `from_ms` to warm the indicators up, writing nothing: None for
    # everything the topic holds (the live pipeline's own history), 0 for none.
    warmup_ms: int | None = None

    def task_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the `alphaplus.replay` Celery task for this request."""
        return {"run_id": self.run_id, "from_ms": self.from_ms, "to_ms": self.to_ms,
                "symbols": list(self.symbols), "speed": self.speed,
                "timeframes": list(self.timeframes), "persist_trades": self.persist_trades,
                "warmup": WARMUP_ALL if self.warmup_ms is None else self.warmup_ms}

    @property
    def read_from_ms(self) -> int:
        """Where reading starts: the warm-up's start (0: the topic's start)."""
        return 0 if self.warmup_ms is None else max(0, self.from_ms - self.warmup_ms)


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"replay-{stamp}-{secrets.token_hex(3)}"


def parse_speed(value: str | float | int | None) -> float:
    """`max` (or None, 0) → 0.0, as fast as possible; else a positive factor of real time."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("max", "", "0"):
            return 0.0
        try:
            value = float(text.removesuffix("x"))
        except ValueError:
            raise BadReplay(f"speed {value!r}: expected max or a positive number") from None
    speed = float(value)
    if speed < 0 or speed != speed or speed == float("inf"):
        raise BadReplay(f"speed {value!r}: expected max or a positive number")
    return speed


def parse_warmup(value: str | int | None) -> int | None:
    """`all` (or None) → None, from the topic's start; `none` → 0; a duration such as `90m`,
    `6h`, `2d` (or a number of milliseconds) → milliseconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadReplay(f"warm-up {value!r}: expected all, none or a duration such as 6h")
    if isinstance(value, int):
        if value < 0:
            raise BadReplay(f"warm-up {value}: a duration cannot be negative")
        return value
    text = str(value).strip().lower()
    if text == WARMUP_ALL:
        return None
    if text in ("none", "0"):
        return 0
    match = _DURATION.fullmatch(text)
    if match is None:
        raise BadReplay(f"warm-up {value!r}: expected all, none or a duration such as 90m, "
                        "6h or 2d")
    return int(match[1]) * _UNIT_MS[match[2]]


def make_request(run_id: str | None, from_ms: int, to_ms: int,
                 symbols: list[str] | tuple[str, ...] | None = None,
                 speed: str | float | int | None = None,
                 timeframes: list[str] | tuple[str, ...] | None = None,
                 persist_trades: bool = False,
                 warmup: str | int | None = None) -> ReplayRequest:
    """A checked request (raises `BadReplay`); what the CLI, the Celery task and the REST
    route build theirs with."""
    run_id = new_run_id() if run_id is None else run_id
    if run_id == redis_keys.LIVE:
        raise BadReplay(f"run id {run_id!r} is the live pipeline's")
    if not _RUN_ID.fullmatch(run_id):
        raise BadReplay(f"run id {run_id!r}: 1-100 letters, digits, '.', '_' or '-' "
                        "(it names a Redis namespace, a Kafka group and database rows)")
    if from_ms >= to_ms:
        raise BadReplay(f"empty range: from {from_ms} is not before to {to_ms}")
    try:
        tfs = parse_timeframes(",".join(timeframes)) if timeframes else ()
    except ValueError as exc:
        raise BadReplay(f"timeframes: {exc}") from None
    syms = tuple(dict.fromkeys(s.strip().upper() for s in symbols or () if s.strip()))
    return ReplayRequest(run_id=run_id, from_ms=int(from_ms), to_ms=int(to_ms), symbols=syms,
                         speed=parse_speed(speed), timeframes=tfs,
                         persist_trades=bool(persist_trades), warmup_ms=parse_warmup(warmup))


class ReplayStatus(msgspec.Struct, kw_only=True):
    run_id: str
    state: str  # one of STATES
    request: ReplayRequest
    phase: str = ""  # while running: lookup | reading | finishing | tasks
    task_id: str | None = None  # the Celery task's id when it runs as one
    trades: int = 0
    skipped: int = 0
    candles: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: int = 0
    estimated_trades: int | None = None
    progress: float = 0.0
    rate: float = 0.0
    eta_s: float | None = None
    pending_tasks: int = 0
    lookup: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    updated_at: int = 0
    error: str = ""


_decode = msgspec.json.Decoder(ReplayStatus).decode
_encode = msgspec.json.Encoder().encode


def now_ms() -> int:
    return int(time.time() * 1000)


def decode_status(raw: bytes) -> ReplayStatus:
    return _decode(raw)


def read_status(client: redis.Redis, run_id: str) -> ReplayStatus | None:
    raw = client.get(redis_keys.replay_status(run_id))
    return None if raw is None else _decode(raw)


def write_status(client: redis.Redis, status: ReplayStatus) -> None:
    status.updated_at = now_ms()
    client.set(redis_keys.replay_status(status.run_id), _encode(status))


def check_startable(client: redis.Redis, request: ReplayRequest,
                    task_id: str | None = None) -> None:
    """Raise `ReplayConflict` unless this run id is free for this request: never used, or
    used by this very request and not finished (queued, failed or cancelled: a retry)."""
    run_id = request.run_id
    if client.exists(redis_keys.replay_lock(run_id)):
        raise ReplayConflict(f"replay {run_id} is running")
    old = read_status(client, run_id)
    if old is None:
        return
    if old.request != request:
        raise ReplayConflict(f"run id {run_id} was used for another replay: choose another")
    if old.state == DONE:
        raise ReplayConflict(f"replay {run_id} is done already: choose another run id")
    if old.state == QUEUED and old.task_id is not None and old.task_id != task_id:
        raise ReplayConflict(f"replay {run_id} is queued already (task {old.task_id})")


def request_cancel(client: redis.Redis, run_id: str) -> bool:
    """Ask a running replay to stop; False when it is not running."""
    if not client.exists(redis_keys.replay_lock(run_id)):
        return False
    client.set(redis_keys.replay_cancel(run_id), b"1", ex=3600)
    return True


def cancel_requested(client: redis.Redis, run_id: str) -> bool:
    return bool(client.exists(redis_keys.replay_cancel(run_id)))


# -- starting one ------------------------------------------------------------------------
TASK = "alphaplus.replay"


def submit(client: redis.Redis, celery: Celery, request: ReplayRequest,
           task_timeout_s: float | None = None) -> ReplayStatus:
    """Start a replay as a Celery task (the API's `POST /api/replays`, the CLI's `--celery`):
    the request is checked, the status written as `queued`, then the task sent, so a reader
    never sees a task without a status. Raises `ReplayConflict` when the run id is taken."""
    task_id = uuid.uuid4().hex
    check_startable(client, request)
    old = read_status(client, request.run_id)
    status = ReplayStatus(run_id=request.run_id, state=QUEUED, request=request,
                          task_id=task_id,
                          created_at=now_ms() if old is None else old.created_at)
    write_status(client, status)
    kwargs = request.task_kwargs()
    if task_timeout_s is not None:
        kwargs["task_timeout_s"] = task_timeout_s
    celery.send_task(TASK, kwargs=kwargs, task_id=task_id)
    return status
