"""Producers: sources of trades (Binance WebSocket, recordings, public-data CSV, synthetic),
validation and normalisation, and the Kafka sink."""
