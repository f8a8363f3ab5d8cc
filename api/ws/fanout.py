"""Updates on their way from the listener to the clients.

The listener hands every update over and goes straight back to Redis (`offer` only records
it): if the fan-out ran inside the listener, a fan-out slower than the update rate would make
the listener fall behind Redis, and every update, however coalesced further on, would arrive
late. Here the listener always keeps up, and a kline or indicators update that is still waiting
when a newer one of its stream comes is replaced by it (latest-wins, before anything was
serialised for it); signals and patterns wait in order. One task fans the waiting updates out,
oldest first, giving the loop a turn between two of them.

Fanning out one update: it is serialised once, and handed to each subscriber of its stream
(api/ws/client.py: written at once when the client's socket takes it, else queued for the
client's own task).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from api.updates import Update
from api.ws import protocol
from api.ws.client import Client
from api.ws.protocol import CATEGORY_OF_KIND, TIMEFRAME_KINDS
from api.ws.stats import HubStats

log = logging.getLogger(__name__)

#: Signals and patterns waiting beyond this many are dropped, oldest first (counted): only a
#: fan-out stalled for a long time gets there.
MAX_WAITING_EVENTS = 10_000


class FanOut:
    def __init__(self, subs: dict[str, set[Client]], counters: HubStats) -> None:
        self._subs = subs
        self._counters = counters
        self._latest: dict[str, Update] = {}  # stream -> its newest update, oldest stream first
        self._events: deque[tuple[str, Update]] = deque()
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def offer(self, update: Update) -> None:
        stream = protocol.stream_name(update.kind, update.symbol, update.timeframe)
        if stream not in self._subs:
            return
        if update.kind in TIMEFRAME_KINDS:
            if stream in self._latest:
                self._counters.coalesced_updates += 1
            self._latest[stream] = update  # an existing key keeps its place in the order
        else:
            if len(self._events) >= MAX_WAITING_EVENTS:
                self._events.popleft()
                self._counters.dropped += 1
            self._events.append((stream, update))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._work.set()

    def waiting(self) -> int:
        return len(self._latest) + len(self._events)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        latest, events = self._latest, self._events
        while True:
            if not latest and not events:
                self._work.clear()
                await self._work.wait()
                continue
            if events and (not latest
                           or events[0][1].received <= next(iter(latest.values())).received):
                stream, update = events.popleft()
            else:
                stream = next(iter(latest))
                update = latest.pop(stream)
            try:
                self._fan_out(stream, update)
            except Exception:
                self._counters.errors += 1
                log.exception("fanning out an update of %s failed", stream)
            await asyncio.sleep(0)  # the listener (and the clients' tasks) get their turn

    def _fan_out(self, stream: str, update: Update) -> None:
        subscribers = self._subs.get(stream)
        if not subscribers:
            return
        try:
            payload = update.payload.decode()
        except UnicodeDecodeError:
            self._counters.errors += 1
            log.warning("dropped an update of %s: its payload is not UTF-8", stream)
            return
        text = protocol.push(stream, payload, time.time() * 1000)
        category = CATEGORY_OF_KIND[update.kind]
        latest_wins = update.kind in TIMEFRAME_KINDS
        received = update.received
        for client in tuple(subscribers):  # a copy: nothing a push does may break the loop
            client.push(stream, text, received, category, latest_wins)
