"""Fixtures of the fault suite: settings for a whole pipeline of real processes in the test's
own topics, Redis namespace, Celery queues and scratch database."""

from __future__ import annotations

import pytest

from core.kafka import ensure_topics
from core.settings import Settings
from tests.core.test_candles import ALL
from tests.workers.helpers import SYMBOLS


@pytest.fixture
def fault_settings(settings: Settings, redis_url: str, namespace: str,
                   migrated_db: str) -> Settings:
    s = settings.replace(
        redis_url=redis_url, database_url=migrated_db, symbols=SYMBOLS, timeframes=ALL,
        celery_queue_prefix=namespace, stream_group=f"{namespace}-stream",
        api_namespace=namespace, api_token="fault-token",
        # A task no worker finished (one lost with a killed worker, or one whose retry could
        # not be sent while Redis was away) is sent again after 5 s, not the default 2 minutes.
        task_redeliver_s=5)
    ensure_topics(s.kafka_bootstrap, [s.topic_candles], 3)
    return s
