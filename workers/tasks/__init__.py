"""Celery tasks. Importing this package registers them on `workers.celery_app.app`."""

from workers.tasks import backtest, indicators, observe, persist, replay

__all__ = ["backtest", "indicators", "observe", "persist", "replay"]
