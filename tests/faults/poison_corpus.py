"""What the poison-corpus tests share: a case record, `alphaplus` sub-commands as real child
processes, and reading the dead-letter topic.

Each entry point's corpus lives in its own test file (test_poison_<entry>.py), one test id per
kind of input; docs/RELIABILITY.md lists them with the outcome observed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from core.kafka import read_topic
from core.models import DeadLetter
from core.serde import decode_deadletter
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """One kind of bad input: its test id, the raw input, and the outcome it must get (a
    dead-letter reason, an HTTP status, a /ws error code or close code)."""

    id: str
    raw: bytes | str
    outcome: str | int

    @property
    def raw_bytes(self) -> bytes:
        return self.raw.encode() if isinstance(self.raw, str) else self.raw


def ids(cases: Sequence[Case]) -> list[str]:
    return [c.id for c in cases]


#: Set to a file path to have each poison test append what it observed (one JSON line per
#: case): the source of the table in docs/RELIABILITY.md.
REPORT_ENV = "ALPHAPLUS_POISON_REPORT"


def record(entry: str, case_id: str, outcome: str) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "ab") as out:
            out.write(orjson.dumps({"entry": entry, "case": case_id, "outcome": outcome}) + b"\n")


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def dead_letters(settings: Settings) -> list[DeadLetter]:
    return [decode_deadletter(m.value())
            for m in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]


class CliProcess:
    """`python -m alphaplus.cli <args>` as a child process with `settings` in its environment,
    in its own session (so a stop reaches everything it started), logging to `log_path`."""

    def __init__(self, args: Sequence[str], settings: Settings, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.log_path = log_path
        self.args = list(args)
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "alphaplus.cli", *args], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_alive(self) -> None:
        assert self.alive, (f"alphaplus {' '.join(self.args)} exited with "
                            f"{self.proc.returncode}:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"alphaplus {' '.join(self.args)} did not finish in "
                                 f"{timeout} s:\n{self.log()[-3000:]}") from None
