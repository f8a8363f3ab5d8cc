"""Synthetic trades: a seeded random walk per symbol, for demos, load tests and benchmarks.

The same seed gives the same symbols, ids, prices, quantities and sides in the same order;
only the timestamps (the wall clock) differ between runs. Pacing never touches the random
generator, so the rate does not change the sequence either.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.exceptions import ConfigError
from core.models import SCHEMA_VERSION, Trade
from core.settings import MARKETS
from producers.ingest import Ingestor

START_PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 2_500.0, "BNBUSDT": 550.0, "SOLUSDT": 150.0}
DEFAULT_START_PRICE = 100.0
PRICE_DECIMALS = 2
QTY_DECIMALS = 5
# Per-trade log-return deviation: ~0.5% drift over 2,500 trades, like a calm minute or so.
STEP_SIGMA = 1e-4
MIN_PRICE = 10.0**-PRICE_DECIMALS
MIN_QTY = 10.0**-QTY_DECIMALS
# A trade is worth about this much quote currency on average (lognormal around it).
MEAN_NOTIONAL = 500.0
# Paced runs send a batch per this many seconds; unpaced runs check `stop` per this many trades.
BATCH_SECONDS = 0.01
UNPACED_BATCH = 4096


# The walk is kept within this factor of its start either way, so a long run stays plausible.
PRICE_BAND = 1000.0


@dataclass
class _Walk:
    symbol: str
    price: float
    low: float = 0.0
    high: float = 0.0
    next_id: int = 1
    last_ts: int = 0

    def __post_init__(self) -> None:
        self.low = max(MIN_PRICE, self.price / PRICE_BAND)
        self.high = self.price * PRICE_BAND


class SyntheticSource:
    name = "synthetic"

    def __init__(self, symbols: Sequence[str], rate: float | None = None, seed: int = 1,
                 market: str = "spot", limit: int | None = None) -> None:
        """`rate`: trades per second over all symbols (None = as fast as possible);
        `limit`: stop after this many trades (None = until stopped)."""
        if not symbols:
            raise ConfigError("synthetic source needs at least one symbol")
        if rate is not None and not 0 < rate < math.inf:
            raise ConfigError(f"synthetic rate must be > 0, got {rate}")
        if limit is not None and limit < 0:
            raise ConfigError(f"synthetic limit must be >= 0, got {limit}")
        if market not in MARKETS:
            raise ConfigError(f"market {market!r}: expected one of {', '.join(MARKETS)}")
        self.symbols = [s.upper() for s in dict.fromkeys(symbols)]
        self.rate = rate
        self.seed = seed
        self.market = market
        self.limit = limit

    def trades(self) -> TradeGenerator:
        return TradeGenerator(self.symbols, self.seed, self.market)

    def run(self, ingest: Ingestor, stop: threading.Event) -> None:
        unknown = sorted(set(self.symbols) - ingest.parser.symbols)
        if unknown:
            raise ConfigError(f"synthetic symbols {', '.join(unknown)} are not among the "
                              "configured symbols (ALPHAPLUS_SYMBOLS or --symbols)")
        gen = self.trades()
        accept = ingest.trade
        batch = UNPACED_BATCH if self.rate is None else max(1, round(self.rate * BATCH_SECONDS))
        sent = 0
        started = time.monotonic()
        while not stop.is_set():
            n = batch if self.limit is None else min(batch, self.limit - sent)
            if n <= 0:
                return
            for _ in range(n):
                # Symbols are checked above, so the raw input is never needed for a dead letter.
                accept(gen.next(), b"")
            sent += n
            ingest.flush_metrics()
            if self.rate is not None:
                # Pace against the start, not the previous batch, so waits do not drift.
                delay = started + sent / self.rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return


class TradeGenerator:
    """The seeded sequence itself, without pacing or Kafka."""

    def __init__(self, symbols: Sequence[str], seed: int, market: str) -> None:
        self._rng = random.Random(seed)
        self._market = market
        self._walks = [_Walk(s, START_PRICES.get(s, DEFAULT_START_PRICE)) for s in symbols]

    def next(self) -> Trade:
        rng = self._rng
        walk = self._walks[rng.randrange(len(self._walks))]
        step = math.exp(rng.gauss(0.0, STEP_SIGMA))
        walk.price = min(walk.high, max(walk.low, walk.price * step))
        # The floor is at least 0.01, which rounds to itself: a printed price is never zero.
        price = round(walk.price, PRICE_DECIMALS)
        # lognormvariate(-0.5, 1) has mean 1; sizes spread over orders of magnitude like real ones.
        qty = max(MIN_QTY, MEAN_NOTIONAL / price * rng.lognormvariate(-0.5, 1.0))
        ts = max(walk.last_ts, time.time_ns() // 1_000_000)
        walk.last_ts = ts
        trade: Trade = {
            "v": SCHEMA_VERSION,
            "exchange": "binance",
            "market": self._market,
            "symbol": walk.symbol,
            "trade_id": walk.next_id,
            "price": f"{price:.{PRICE_DECIMALS}f}",
            "qty": f"{qty:.{QTY_DECIMALS}f}",
            "ts": ts,
            "buyer_maker": rng.random() < 0.5,
            "recv_ts": ts,
        }
        walk.next_id += 1
        return trade
