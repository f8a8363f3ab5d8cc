"""The stream stage: a Kafka consumer group turning `market.trades` into candles."""
