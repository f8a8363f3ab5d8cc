"""Per-connection limits: a request rate token bucket and the count of recent violations."""

from __future__ import annotations

from collections import deque

#: Violations within VIOLATION_WINDOW_S that close a connection.
MAX_VIOLATIONS = 5
VIOLATION_WINDOW_S = 60.0


class TokenBucket:
    """`rate` tokens a second, holding at most `burst` (the bucket starts full)."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._stamp = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Violations:
    """Recent limit violations: a client that breaks limits now and then is told so; one that
    keeps at it is disconnected."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int = MAX_VIOLATIONS, window: float = VIOLATION_WINDOW_S) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def add(self, now: float) -> bool:
        """Count one; True when that makes too many."""
        times = self._times
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) >= self.limit
