"""What a backtest refuses to do, each with a message that says what would work instead.

All are `AlphaPlusError`s, so the CLI prints the message and exits with status 2.
"""

from __future__ import annotations

from core.exceptions import AlphaPlusError


class BacktestError(AlphaPlusError):
    """Base of the backtest's own errors."""


class UnknownStrategy(BacktestError):
    """No strategy of that name; the message lists the ones that exist."""


class InvalidParams(BacktestError):
    """A strategy parameter or a backtest setting is unknown or out of range."""


class NoData(BacktestError):
    """The run holds no closed candles for that symbol and timeframe; the message lists what
    it does hold."""
