from __future__ import annotations

from pathlib import Path

import redis

from infra.stack.process import process_alive
from infra.stack.redis import EmbeddedRedis, redis_answers


def test_embedded_redis_answers_and_stops_without_leftovers(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", log_path=tmp_path / "redis.log").start()
    pid = server.pid
    assert pid is not None and process_alive(pid)
    try:
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            client.set("alphaplus:test", "1")
            assert client.get("alphaplus:test") == b"1"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()
    assert not process_alive(pid)
    assert not server.running()
    assert not redis_answers(server.url, timeout=0.5)
    assert (tmp_path / "redis.log").read_text()  # the server's output went to its log
    assert not any((tmp_path / "redis").iterdir())  # nothing persisted
