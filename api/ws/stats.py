"""The hub's counters, and their Prometheus view.

Counting happens once per message sent to one client (up to 10^5 a second), so it is plain
attribute arithmetic here; prometheus_client's own Counter and Histogram take a lock per call
(about a microsecond each), so a custom collector reads these counters when scraped instead.
One collector serves every hub of the process.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector

from api.ws.protocol import CATEGORY_NAMES

#: Send latency buckets (seconds): update received by the listener -> written to the socket.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
#: Records the p99 in the stats is taken over (one record: one send, or the sends of one
#: update's fan-out, written together).
RECENT = 10_000


class HubStats:
    __slots__ = ("buckets", "coalesced", "coalesced_updates", "connections_total",
                 "disconnects", "dropped", "errors", "latency_sum", "recent", "rejected", "sent",
                 "updates", "violations")

    def __init__(self) -> None:
        self.sent = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.recent: deque[tuple[float, int]] = deque(maxlen=RECENT)  # (latency, sends)
        self.updates = 0  # updates the hub was handed
        self.coalesced_updates = 0  # updates replaced by a newer one before their fan-out
        self.coalesced = 0  # queued messages replaced by a newer one of the same stream
        self.dropped = 0  # messages not queued because the client's queue was full
        self.errors = 0  # error answers to clients, and updates the hub could not use
        self.connections_total = 0
        self.rejected = 0  # handshakes refused (token)
        self.disconnects: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()

    def record(self, latency: float, sends: int = 1) -> None:
        """`sends` messages written `latency` seconds after their update was received (a
        fan-out's direct writes are recorded together, with the latency of the last one:
        api/ws/client.py `deliver`)."""
        self.sent += sends
        self.latency_sum += latency * sends
        self.buckets[bisect_left(LATENCY_BUCKETS, latency)] += sends
        self.recent.append((latency, sends))

    def p99_ms(self) -> float:
        """The 99th percentile of the recent records' latencies, each weighted by its sends."""
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        rank = int(sum(n for _, n in ordered) * 0.99)
        seen = 0
        for latency, sends in ordered:
            seen += sends
            if seen > rank:
                return latency * 1000
        return ordered[-1][0] * 1000

    def avg_ms(self) -> float:
        return self.latency_sum / self.sent * 1000 if self.sent else 0.0


class Observed(Protocol):
    """What the collector reads from a hub."""

    counters: HubStats

    def client_count(self) -> int: ...

    def queued(self) -> list[int]: ...


class _HubCollector(Collector):
    def __init__(self) -> None:
        self.hubs: weakref.WeakSet[Observed] = weakref.WeakSet()

    def collect(self) -> Iterable[Metric]:
        hubs = list(self.hubs)
        clients = GaugeMetricFamily("alphaplus_ws_clients", "Open /ws connections")
        clients.add_metric([], sum(h.client_count() for h in hubs))
        queued = GaugeMetricFamily("alphaplus_ws_queued_messages",
                                   "Messages waiting in the clients' queues", labels=["category"])
        totals = [0] * len(CATEGORY_NAMES)
        for hub in hubs:
            totals = [a + b for a, b in zip(totals, hub.queued(), strict=True)]
        for name, total in zip(CATEGORY_NAMES, totals, strict=True):
            queued.add_metric([name], total)
        sent = CounterMetricFamily("alphaplus_ws_messages_sent",
                                   "Messages written to /ws clients")
        sent.add_metric([], sum(h.counters.sent for h in hubs))
        latency = HistogramMetricFamily(
            "alphaplus_ws_send_latency_seconds",
            "Update received from Redis -> written to a client's socket")
        cumulative, running = [], 0
        for i, bound in enumerate((*LATENCY_BUCKETS, float("inf"))):
            running += sum(h.counters.buckets[i] for h in hubs)
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), float(running)))
        latency.add_metric([], cumulative, sum(h.counters.latency_sum for h in hubs))
        disconnects = CounterMetricFamily("alphaplus_ws_disconnects",
                                          "/ws connections ended, by reason", labels=["reason"])
        violations = CounterMetricFamily("alphaplus_ws_limit_violations",
                                         "/ws requests refused by a limit", labels=["limit"])
        for family, attr in ((disconnects, "disconnects"), (violations, "violations")):
            merged: Counter[str] = Counter()
            for hub in hubs:
                merged.update(getattr(hub.counters, attr))
            for label, count in sorted(merged.items()):
                family.add_metric([label], count)
        yield from (clients, queued, sent, latency, disconnects, violations)


_COLLECTOR = _HubCollector()
REGISTRY.register(_COLLECTOR)


def observe(hub: Observed) -> None:
    """Export `hub`'s counters for as long as it lives."""
    _COLLECTOR.hubs.add(hub)
