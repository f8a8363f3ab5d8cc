"""Per-process connections of a Celery worker, opened on first use and dropped after an error,
so that the retry of a task reconnects instead of reusing a broken connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import redis
from psycopg2.extensions import connection as PGConnection

from core.db.connect import connect
from core.db.writer import RETRYABLE_DB_ERRORS
from core.settings import Settings

#: What a task retries on (with backoff): the server may come back.
RETRYABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    *RETRYABLE_DB_ERRORS,
)

_db: dict[str, PGConnection] = {}


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def redis_client() -> redis.Redis:
    # redis-py reconnects by itself on the next command after a connection error.
    return redis.Redis.from_url(settings().redis_url, socket_timeout=10,
                                socket_connect_timeout=5, health_check_interval=30)


@contextmanager
def database() -> Iterator[PGConnection]:
    url = settings().database_url
    conn = _db.get(url)
    if conn is None or conn.closed:
        conn = _db[url] = connect(url, application_name="alphaplus-worker")
    try:
        yield conn
    except RETRYABLE_DB_ERRORS:
        _db.pop(url, None)
        conn.close()  # psycopg2 closes a broken connection without raising
        raise
