"""Reading a process's /metrics: which metric families it exports, with their type and the label
names their samples carry, named as Prometheus stores them (counters with `_total`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.files import REPO


@dataclass
class Family:
    kind: str
    #: Label names of the family's samples (`le` of histogram buckets left out); empty when the
    #: family has no sample yet (a labelled metric before its first use).
    labels: set[frozenset[str]] = field(default_factory=set)


def families(text: str) -> dict[str, Family]:
    out: dict[str, Family] = {}
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("alphaplus_") or fam.name.endswith("_created"):
            continue
        # The parser names a counter's family without `_total`; queries use the sample name.
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        entry = out.setdefault(name, Family(fam.type))
        for sample in fam.samples:
            if sample.name.endswith("_created"):
                continue
            entry.labels.add(frozenset(sample.labels) - {"le"})
    return out


def fetch(url: str, timeout: float, until: str | None = None) -> str:
    """The metrics page at `url` once it answers 200 (and, with `until`, once a sample line
    starts with it), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            last = f"HTTP {response.status_code}"
            if response.status_code == 200 and (
                    until is None or any(line.startswith(until)
                                         for line in response.text.splitlines())):
                return response.text
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise TimeoutError(f"{url}: {last} after {timeout} s" + (f" (waiting for {until})"
                                                                if until else ""))


class CliProcess:
    """`python -m alphaplus.cli ARGS` in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "alphaplus.cli", *args], cwd=REPO,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # Whatever of the group is left (a Celery pool child, a process that ignored SIGTERM).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
