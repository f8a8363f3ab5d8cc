"""The pipeline processes `alphaplus up` runs: a list of named child specs, one log file each.

Kept deliberately simple: a child that fails stops everything (non-zero exit) rather than being
restarted, so a broken pipeline is noticed instead of flapping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.stack.process import ManagedProcess


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    #: False for a process whose work can end (replaying a recording): exit status 0 is then
    #: its normal end and the rest keeps running.
    must_run: bool = True


class Supervisor:
    def __init__(self, log_dir: Path, report: Callable[[str], None] = print) -> None:
        self.log_dir = log_dir
        self.report = report
        self._children: list[tuple[ChildSpec, ManagedProcess]] = []
        self._finished: set[str] = set()

    def start(self, spec: ChildSpec) -> ManagedProcess:
        proc = ManagedProcess(spec.name, spec.argv, log_path=self.log_dir / f"{spec.name}.log",
                              env=spec.env)
        self._children.append((spec, proc))
        return proc.start()

    @property
    def processes(self) -> list[ManagedProcess]:
        return [proc for _spec, proc in self._children]

    def watch(self, stop: threading.Event, poll: float = 0.2) -> int:
        """Block until `stop` is set (0) or a child fails (1)."""
        while not stop.wait(poll):
            for spec, proc in self._children:
                code = proc.returncode()
                if code is None or spec.name in self._finished:
                    continue
                if code == 0 and not spec.must_run:
                    self._finished.add(spec.name)
                    self.report(f"{spec.name:<9} finished (exit 0); the rest keeps running")
                    continue
                self.report(f"{spec.name:<9} exited with code {code} (see {proc.log_path}); "
                            "stopping everything")
                return 1
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the children in the reverse of their start order."""
        while self._children:
            _spec, proc = self._children.pop()
            proc.stop(timeout)
