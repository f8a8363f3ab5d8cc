"""Shared fixtures: one embedded Kafka broker per test session, and per-test topic names;
Redis namespaces and PostgreSQL scratch databases of the tests' own.

A test never shares topics with another (names carry a random suffix), so nothing needs to be
flushed between tests and tests can run against a long-lived broker too. Set
ALPHAPLUS_TEST_KAFKA_BOOTSTRAP to run against an existing broker instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from core.db.connect import with_database
from core.db.mode import timescaledb_problem
from core.db.scratch import scratch_database
from core.kafka import ensure_topics, read_topic, wait_for_broker
from core.settings import Settings, Wanted
from infra.migrations import upgrade
from infra.stack.kafka import EmbeddedKafka
from infra.stack.postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "binance"
HFT = FIXTURES / "hftbacktest"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("ALPHAPLUS_TEST_KAFKA_BOOTSTRAP")
    if configured:
        wait_for_broker(configured)
        yield configured
        return
    log = tmp_path_factory.mktemp("kafka") / "tansu.log"
    broker = EmbeddedKafka(log_path=log).start()
    try:
        wait_for_broker(broker.bootstrap, timeout=20)
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    """Settings with this test's own topics (created), pointing at the session broker."""
    suffix = uuid.uuid4().hex[:10]
    s = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=kafka_bootstrap,
        topic_trades=f"test.trades.{suffix}",
        topic_candles=f"test.candles.{suffix}",
        topic_deadletter=f"test.deadletter.{suffix}",
        topic_gaps=f"test.gaps.{suffix}",
        kafka_partitions=3,
    )
    ensure_topics(kafka_bootstrap, [s.topic_trades, s.topic_deadletter, s.topic_gaps], 3)
    return s


def topic_values(bootstrap: str, topic: str) -> list[bytes | None]:
    return [m.value() for m in read_topic(bootstrap, topic)]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis when it answers (tests only touch keys of their own namespace),
    else an embedded redis-server for the session."""
    from infra.stack.redis import EmbeddedRedis, redis_answers

    url = os.environ.get("ALPHAPLUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url, timeout=1.0):
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A Redis namespace (and Celery queue prefix) of this test's own; its keys are deleted
    afterwards, by prefix, so nothing else in a shared Redis is touched."""
    from core import redis_keys
    from infra.stack.redis import delete_keys

    ns = f"test-{uuid.uuid4().hex[:10]}"
    yield ns
    delete_keys(redis_url, [redis_keys.namespace_pattern(ns),
                            *redis_keys.celery_queue_patterns(ns)])


# -- PostgreSQL: a scratch database per module, on ALPHAPLUS_TEST_DATABASE_URL's server (default
# the local PostgreSQL), or on an embedded PostgreSQL when nothing answers there.
DB_SERVER_ENV = "ALPHAPLUS_TEST_DATABASE_URL"
DB_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        psycopg2.connect(with_database(url, "postgres"), connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(DB_SERVER_ENV)
    url = configured or DB_DEFAULT_SERVER
    if _answers(url):
        yield url
        return
    if configured:
        pytest.fail(f"{DB_SERVER_ENV}={configured}: no PostgreSQL answers there")
    pgdata = tmp_path_factory.mktemp("pg") / "data"
    server = EmbeddedPostgres(pgdata, log_path=pgdata.parent / "postgres.log").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def timescaledb_missing(pg_server: str) -> str | None:
    """Why the test server cannot run TimescaleDB mode; None when it can."""
    conn = psycopg2.connect(pg_server)
    try:
        return timescaledb_problem(conn)
    finally:
        conn.close()


@pytest.fixture(scope="module", params=["postgresql", "timescaledb"])
def storage(request: pytest.FixtureRequest, timescaledb_missing: str | None) -> Wanted:
    """The storage mode a module's database is built in: every test that stores runs in both
    (ALPHAPLUS_TIMESCALEDB off and on); TimescaleDB mode skips where the server lacks it."""
    if request.param == "timescaledb":
        if timescaledb_missing is not None:
            pytest.skip(f"TimescaleDB mode: {timescaledb_missing}")
        return "on"
    return "off"


@pytest.fixture(scope="module")
def migrated_db(pg_server: str, storage: Wanted) -> Iterator[str]:
    with scratch_database(pg_server) as url:
        upgrade(url, timescaledb=storage)
        yield url
