"""The API service: cache-first REST, WebSocket fan-out, stats and the dashboard page."""
