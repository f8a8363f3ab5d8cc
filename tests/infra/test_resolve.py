from __future__ import annotations

import socket
import uuid
from pathlib import Path

import psycopg2

from core.secrets import redact
from core.settings import Settings
from infra.stack.ports import free_port
from infra.stack.process import process_alive
from infra.stack.resolve import Stack, preferred_port

MACHINE_REDIS = "redis://127.0.0.1:6379/0"
MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def test_reachable_servers_are_used_as_configured(tmp_path: Path, kafka_bootstrap: str) -> None:
    name = f"alphaplus_test_{uuid.uuid4().hex[:10]}"
    try:
        with Stack(tmp_path, tmp_path / "logs") as stack:
            kafka = stack.kafka(kafka_bootstrap)
            redis = stack.redis(MACHINE_REDIS)
            postgres = stack.postgres(f"{MACHINE_POSTGRES}/{name}")
            assert not any(s.embedded for s in stack.services)
        assert kafka.address == kafka_bootstrap
        assert redis.line() == f"redis     configured {MACHINE_REDIS}"
        assert postgres.address == f"{MACHINE_POSTGRES}/{name}"
        assert postgres.how.endswith(f"(database {name} created)")
        assert not (tmp_path / "logs").exists()  # nothing was started
    finally:
        conn = psycopg2.connect(f"{MACHINE_POSTGRES}/postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()


def test_unreachable_servers_are_replaced_by_embedded_ones(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    configured = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=f"127.0.0.1:{ports[0]}",
        redis_url=f"redis://127.0.0.1:{ports[1]}/2",
        database_url=f"postgresql://postgres@127.0.0.1:{ports[2]}/alphaplus",
    )
    with Stack(tmp_path / "state", tmp_path / "logs") as stack:
        resolved = stack.resolve(configured)
        assert resolved is not None
        assert [s.name for s in stack.services] == ["kafka", "redis", "postgres"]
        assert all(s.embedded for s in stack.services)
        # Free configured ports on this machine are kept, so the configured URLs stay right.
        assert resolved.kafka_bootstrap == configured.kafka_bootstrap
        assert resolved.redis_url == configured.redis_url
        assert resolved.database_url == configured.database_url
        lines = [s.line() for s in stack.services]
        assert lines[0].startswith(f"kafka     embedded Tansu 0.6.0 at 127.0.0.1:{ports[0]} ")
        assert lines[1].startswith("redis     embedded redis-server ")
        assert lines[2].startswith("postgres  embedded PostgreSQL ")
        pids = [s.server.pid for s in stack.services if s.server is not None]
        assert all(pid is not None and process_alive(pid) for pid in pids)
    assert stack.services == []
    assert not any(process_alive(pid) for pid in pids if pid is not None)
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {
        "kafka.log", "redis.log", "postgres.log"}
    assert (tmp_path / "state" / "postgres" / "PG_VERSION").is_file()


def test_resolve_stops_early_when_asked(tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    stop.set()
    with Stack(tmp_path, tmp_path / "logs") as stack:
        assert stack.resolve(Settings.from_env(environ={}, env_file=None), stop) is None
        assert stack.services == []


def test_preferred_port_only_when_local_and_free() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert preferred_port("127.0.0.1", taken) == 0
    port = free_port()
    assert preferred_port("localhost", port) == port
    assert preferred_port("kafka.internal", port) == 0
    assert preferred_port(None, port) == 0


def test_redact_hides_passwords() -> None:
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact("host=h password=pw dbname=x") == "host=h password=*** dbname=x"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
