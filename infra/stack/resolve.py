"""Configured or embedded, per service: use the server the settings name when it answers a real
protocol check, otherwise start the embedded one.

An embedded server takes the configured port when the configured host is this machine and the
port is free, so the configured URLs stay right for every other tool (`alphaplus topics`, psql,
redis-cli); otherwise it takes a free port and the resolved settings carry it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from psycopg2.extensions import parse_dsn

from core.exceptions import ServiceUnavailable
from core.kafka import wait_for_broker
from core.secrets import redact
from core.settings import Settings
from infra.stack.kafka import EmbeddedKafka
from infra.stack.ports import is_listening
from infra.stack.postgres import EmbeddedPostgres, database_name, prepare_database
from infra.stack.redis import EmbeddedRedis, redis_answers

LOOPBACK = ("localhost", "127.0.0.1", "::1")


class EmbeddedServer(Protocol):
    service: str

    @property
    def address(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def describe(self) -> str: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...


@dataclass
class Service:
    name: str
    #: What clients connect to: a bootstrap list for Kafka, a URL otherwise.
    address: str
    #: How it is provided, as shown to the user.
    how: str
    server: EmbeddedServer | None = None

    @property
    def embedded(self) -> bool:
        return self.server is not None

    def line(self) -> str:
        return f"{self.name:<9} {self.how}"


def free_to_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections of a previous run in TIME_WAIT must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def preferred_port(host: str | None, port: int | None) -> int:
    """The configured port when it is on this machine and free, else 0 (any free port)."""
    if host in LOOPBACK and port and free_to_bind("127.0.0.1", port):
        return port
    return 0


def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    # A TCP check first: librdkafka logs every refused connection to stderr, which would
    # clutter `alphaplus up` for the common case of nothing listening at all.
    endpoints = [e.strip().rpartition(":") for e in bootstrap.split(",") if e.strip()]
    if not any(is_listening(h.strip("[]"), int(p)) for h, _, p in endpoints if p.isdigit()):
        return False
    try:
        wait_for_broker(bootstrap, timeout=timeout)
    except ServiceUnavailable:
        return False
    return True


class Stack:
    """The servers `alphaplus up` uses; `stop()` stops the embedded ones, last started first."""

    def __init__(self, state_dir: Path, log_dir: Path) -> None:
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.services: list[Service] = []

    def kafka(self, bootstrap: str) -> Service:
        if kafka_answers(bootstrap):
            return self._add(Service("kafka", bootstrap, f"configured {bootstrap}"))
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        one = "," not in bootstrap
        server = EmbeddedKafka(
            port=preferred_port(host if one else None, int(port) if port.isdigit() else None),
            log_path=self.log_dir / "kafka.log",
        )
        service = self._add(Service("kafka", server.bootstrap, "", server))
        server.start()
        wait_for_broker(server.bootstrap, timeout=20)
        service.how = server.describe()
        return service

    def redis(self, url: str) -> Service:
        if redis_answers(url):
            return self._add(Service("redis", url, f"configured {redact(url)}"))
        parts = urlsplit(url)
        db = parts.path.strip("/")
        server = EmbeddedRedis(
            self.state_dir / "redis",
            port=preferred_port(parts.hostname, parts.port or 6379)
            if parts.scheme == "redis" else 0,
            log_path=self.log_dir / "redis.log",
            db=int(db) if db.isdigit() else 0,
        )
        service = self._add(Service("redis", server.url, "", server))
        server.start()
        service.how = server.describe()
        return service

    def postgres(self, url: str) -> Service:
        state = prepare_database(url)
        if state is not None:
            note = f" (database {database_name(url)} created)" if state == "created" else ""
            return self._add(Service("postgres", url, f"configured {redact(url)}{note}"))
        params = parse_dsn(url)
        port = params.get("port")
        server = EmbeddedPostgres(
            self.state_dir / "postgres",
            port=preferred_port(params.get("host"), int(port) if port else 5432),
            log_path=self.log_dir / "postgres.log",
            dbname=database_name(url),
        )
        service = self._add(Service("postgres", server.url, "", server))
        server.start()
        service.how = server.describe()
        return service

    def resolve(self, settings: Settings, stop: threading.Event | None = None,
                report: Callable[[Service], None] | None = None) -> Settings | None:
        """Settings pointing at the servers in use, starting embedded ones as needed; None when
        `stop` was set meanwhile (whatever was started stays in `services`, for `stop()`)."""
        steps: list[tuple[str, Callable[[str], Service]]] = [
            ("kafka_bootstrap", self.kafka),
            ("redis_url", self.redis),
            ("database_url", self.postgres),
        ]
        for field, resolve in steps:
            if stop is not None and stop.is_set():
                return None
            service = resolve(getattr(settings, field))
            if report is not None:
                report(service)
            settings = settings.replace(**{field: service.address})
        return settings

    def stop(self) -> None:
        while self.services:
            service = self.services.pop()
            if service.server is not None:
                service.server.stop()

    def _add(self, service: Service) -> Service:
        # Recorded before the server starts, so a failed or interrupted start is still
        # stopped by `stop()`.
        self.services.append(service)
        return service

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
