"""Updates on their way from the listener to the clients.

The listener hands every update over and goes straight back to Redis (`offer` only records
it): if the fan-out ran inside the listener, a fan-out slower than the update rate would make
the listener fall behind Redis, and every update, however coalesced further on, would arrive
late. Here the listener always keeps up, and the updates wait in arrival order for one task
that fans them out, giving the loop a turn between two of them.

Latest-wins, without losing a candle: a kline or indicators update replaces the one of its
stream still waiting only when both are about the same candle (same `open_time`): the forming
candle's intermediate states are skipped when the fan-out is behind, while the final state of
every candle (the closed kline, each candle's indicator values) is always delivered. Signals
and patterns are never replaced.

Fanning out one update: it is serialised once, framed once (api/ws/direct.py: the same bytes
serve every client written to directly), and handed to each subscriber of its stream
(api/ws/client.py: written at once when the client's socket takes it, else queued for the
client's own task, with the same latest-wins rule).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque

from api.updates import Update
from api.ws import protocol
from api.ws.client import Client, deliver
from api.ws.direct import text_frame
from api.ws.protocol import CATEGORY_OF_KIND, TIMEFRAME_KINDS
from api.ws.stats import HubStats

log = logging.getLogger(__name__)

#: Updates waiting beyond this many are dropped, oldest first (counted): only a fan-out
#: stalled for a long time gets there.
MAX_WAITING = 10_000
# The workers' kline payload is a Candle and their indicators row carries the candle's
# open_time too, both at the top level (core/candles.py, workers/tasks/indicators.py).
_OPEN_TIME = re.compile(rb'"open_time":\s*(\d+)')


def candle_of(payload: bytes) -> int | None:
    """The open_time of the candle an update is about; None when the payload does not say
    (such an update is never replaced)."""
    found = _OPEN_TIME.search(payload)
    return int(found.group(1)) if found else None


class Waiting:
    __slots__ = ("candle", "stream", "update")

    def __init__(self, stream: str, update: Update, candle: int | None) -> None:
        self.stream = stream
        self.update = update
        self.candle = candle


class FanOut:
    def __init__(self, subs: dict[str, set[Client]], counters: HubStats) -> None:
        self._subs = subs
        self._counters = counters
        self._waiting: deque[Waiting] = deque()
        self._newest: dict[str, Waiting] = {}  # latest-wins stream -> its newest waiting one
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def offer(self, update: Update) -> None:
        stream = protocol.stream_name(update.kind, update.symbol, update.timeframe)
        if stream not in self._subs:
            return
        if update.kind in TIMEFRAME_KINDS:
            candle = candle_of(update.payload)
            newest = self._newest.get(stream)
            if newest is not None and candle is not None and newest.candle == candle:
                newest.update = update  # keeps its place in the line
                self._counters.coalesced_updates += 1
                return
            waiting = self._newest[stream] = Waiting(stream, update, candle)
        else:
            waiting = Waiting(stream, update, None)
        if len(self._waiting) >= MAX_WAITING:
            self._forget(self._waiting.popleft())
            self._counters.dropped += 1
        self._waiting.append(waiting)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._work.set()

    def waiting(self) -> int:
        return len(self._waiting)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def _forget(self, waiting: Waiting) -> None:
        if self._newest.get(waiting.stream) is waiting:
            del self._newest[waiting.stream]

    async def _run(self) -> None:
        queue = self._waiting
        while True:
            if not queue:
                self._work.clear()
                await self._work.wait()
                continue
            waiting = queue.popleft()
            self._forget(waiting)
            try:
                self._fan_out(waiting)
            except Exception:
                self._counters.errors += 1
                log.exception("fanning out an update of %s failed", waiting.stream)
            await asyncio.sleep(0)  # the listener (and the clients' tasks) get their turn

    def _fan_out(self, waiting: Waiting) -> None:
        stream, update = waiting.stream, waiting.update
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
        frame = text_frame(text.encode())
        category = CATEGORY_OF_KIND[update.kind]
        received = update.received
        # A copy of the subscribers: nothing a push does may break the loop.
        deliver(tuple(subscribers), stream, text, frame, received, category, waiting.candle,
                self._counters)
