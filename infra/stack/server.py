"""What the embedded servers share: a loopback port, one managed process, a log file, and the
wait until the server answers its own protocol."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from core.exceptions import ServiceUnavailable
from infra.stack.ports import free_port
from infra.stack.process import ManagedProcess


class ServerProcess:
    service: str
    #: How long `stop()` waits after the stop signal before it kills.
    stop_timeout = 10.0

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: ManagedProcess | None = None

    @property
    def address(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=self.stop_timeout)
            self._proc = None

    def _launch(self, process: ManagedProcess, ready: Callable[[], bool], timeout: float,
                what: str) -> None:
        """Start `process`, then poll `ready` until it answers; on failure stop it and raise
        with the end of its log, so the user sees why."""
        self._proc = process.start()
        deadline = time.monotonic() + timeout
        while not ready():
            if not process.running() or time.monotonic() > deadline:
                tail = process.log_tail()
                self.stop()
                raise ServiceUnavailable(f"{what} did not answer at {self.address}\n{tail}")
            time.sleep(0.05)
