"""Celery tasks. Importing this package registers them on `workers.celery_app.app`."""

from workers.tasks import indicators, persist

__all__ = ["indicators", "persist"]
