"""Workers: the Kafka stream stage (trades → candles) and the Celery tasks (indicators,
signals, persistence)."""
