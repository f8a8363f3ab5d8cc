"""The Celery application: `celery -A workers.celery_app worker` (or `alphaplus worker`)."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from core.settings import Settings


def make_app(settings: Settings | None = None) -> Celery:
    """An app for explicit settings; without them, celeryconfig (the environment)."""
    celery = Celery("alphaplus")
    if settings is None:
        celery.config_from_object("celeryconfig")
    else:
        celery.conf.update(celeryconfig.from_settings(settings))
    return celery


app = make_app()
# Registers the tasks; after `app` exists because the task modules import it.
import workers.tasks  # noqa: E402, F401
