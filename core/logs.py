"""Logging of every AlphaPlus process: plain text or one JSON object per line, each carrying the
correlation id of the work in hand, and a counter of ERROR records for Prometheus.

The correlation id (`cid`) follows a batch of trades through the pipeline: the producer stamps
it on the Kafka messages it sends (header `alphaplus-cid`, one id per batch of messages, not
per trade), the stream stage reads it from the last message of its batch and passes it on with
the Celery tasks it sends (message header `alphaplus_cid`) and in the live candles it
publishes (a `cid` field the API ignores), the tasks log and publish with it, and the API logs
the push of an update with it. Within a process the id lives in a context variable, so every
log record made while handling that batch carries it without being passed around.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

from core import metrics

#: Kafka message header of the producer's batch id.
KAFKA_HEADER = "alphaplus-cid"
#: Celery message header (custom headers become attributes of `task.request`).
TASK_HEADER = "alphaplus_cid"
#: Field of a published update (pub/sub payload) that carries the id.
PAYLOAD_FIELD = "cid"

CID: contextvars.ContextVar[str | None] = contextvars.ContextVar("alphaplus_cid", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attributes that are not a caller's `extra`; anything else on a record is.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "cid"}
_MARK = "_alphaplus"  # handlers this module installed carry this attribute


_VALID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


def valid_cid(text: str) -> bool:
    """An id from outside (a Kafka header anyone can set) is used only when it is short and
    plain: it goes into JSON payloads and log lines as is."""
    return _VALID.fullmatch(text) is not None


def new_cid() -> str:
    """A fresh id: 16 hex digits (64 random bits; ~0.3 µs)."""
    return os.urandom(8).hex()


def current() -> str | None:
    return CID.get()


def set_cid(cid: str | None) -> contextvars.Token[str | None]:
    return CID.set(cid)


def with_cid(payload: bytes, cid: str | None) -> bytes:
    """A JSON object `payload` with `"cid": cid` added at its end (unchanged without an id).
    The API's readers ignore fields they do not know; `cid_in` finds it again cheaply."""
    if cid is None or not payload.endswith(b"}"):
        return payload
    return b'%s,"cid":"%s"}' % (payload[:-1], cid.encode())


_CID_MARK = b',"cid":"'


def cid_in(payload: bytes) -> str | None:
    """The id `with_cid` added, looked for at the end only (no JSON parse)."""
    at = payload.rfind(_CID_MARK, max(0, len(payload) - 64))
    if at < 0:
        return None
    end = payload.find(b'"', at + len(_CID_MARK))
    return payload[at + len(_CID_MARK):end].decode(errors="replace") if end > 0 else None


def cid_of(record: logging.LogRecord) -> str | None:
    explicit = record.__dict__.get("cid")
    return explicit if explicit is not None else CID.get()


class JsonFormatter(logging.Formatter):
    """One line per record: ts (UTC, ISO 8601, ms), level, logger, msg, process (the kind:
    stream, worker, api, ...), pid, cid when there is one, exc (the traceback) when there is
    one, and any `extra={...}` fields of the call."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": self.process,
            "pid": record.process,
        }
        cid = cid_of(record)
        if cid is not None:
            out["cid"] = cid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=repr).decode()


class TextFormatter(logging.Formatter):
    """The usual one-line text, with ` [cid=...]` appended when a correlation id is set."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        cid = cid_of(record)
        return text if cid is None else f"{text} [cid={cid}]"


class ErrorCounter(logging.Handler):
    """Counts ERROR-and-above records as `alphaplus_log_errors_total{process}`."""

    def __init__(self, process: str) -> None:
        super().__init__(logging.ERROR)
        self.process = process
        metrics.LOG_ERRORS.labels(process)  # exported as 0 from the start, for rate()

    def emit(self, record: logging.LogRecord) -> None:
        # Resolved per record, not once: in a Celery pool process the metric's value lives in
        # that process's own file (multiprocess mode), created on first use after the fork.
        metrics.LOG_ERRORS.labels(self.process).inc()


def make_handler(process: str, fmt: str = "text", stream: IO[str] | None = None
                 ) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else TextFormatter())
    return handler


def setup(process: str, level: int | str = logging.INFO, fmt: str = "text",
          stream: IO[str] | None = None) -> None:
    """Make the root logger write `fmt` lines to `stream` (stderr) and count errors, replacing
    whatever handlers it had (so calling it again, or after a library's own set-up, leaves one
    of each)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _MARK, False):
            old.close()
    for handler in (make_handler(process, fmt, stream), ErrorCounter(process)):
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(level)


def installed() -> bool:
    return any(getattr(h, _MARK, False) for h in logging.getLogger().handlers)


def uvicorn_config(process: str, fmt: str, level: int | str = logging.INFO
                   ) -> dict[str, Any]:
    """A `log_config` for uvicorn: the root logger as `setup` makes it, and uvicorn's own
    loggers propagating to it (by default they write to their own handler, bypassing both
    the JSON format and the error counter). uvicorn applies it in every worker process, also
    in those it spawns, which never run the CLI's own set-up."""
    handler_args: Mapping[str, Any] = {"process": process, "fmt": fmt}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "main": {"()": "core.logs.make_handler", **handler_args},
            "errors": {"()": "core.logs.ErrorCounter", "process": process},
        },
        "root": {"handlers": ["main", "errors"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


class Every:
    """Leading-edge rate limit for progress lines: `due()` is True at most once per
    `interval_s` (always when the interval is 0), and True the first time."""

    __slots__ = ("_last", "interval_s")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        return False
