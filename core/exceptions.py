"""The whole error vocabulary shared across AlphaPlus services."""

from __future__ import annotations


class AlphaPlusError(Exception):
    """Base of every error AlphaPlus raises on purpose."""


class ConfigError(AlphaPlusError):
    """A setting has a value that cannot be used; the message names the variable."""


class InvalidInput(AlphaPlusError):
    """Input from a source failed validation; `reason` is a short machine-friendly code.

    Raised on the hot path, so it carries a code plus detail instead of a formatted message.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ServiceUnavailable(AlphaPlusError):
    """A required server (Kafka, Redis, PostgreSQL, the exchange) cannot be reached."""


class StorageModeUnavailable(AlphaPlusError):
    """ALPHAPLUS_TIMESCALEDB=on, and the database cannot run in TimescaleDB mode; the message
    says what to do."""


class DeliveryError(AlphaPlusError):
    """Kafka did not accept messages after retries; nothing was silently dropped."""
