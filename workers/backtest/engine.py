"""The fill simulator: target positions in, trades and the equity curve out.

Rules (docs/BACKTEST.md has them with examples):

- A strategy's target is decided at candle i's close; a *change* of target is acted on at the
  open of candle i + 1 (a market order: taker fee, slippage). Nothing of candle i + 1 but its
  open is used for that fill, so no decision can depend on a later price.
- Slippage moves a market fill against the order: `slippage_bps` of the price, or
  `slippage_range` times the fill candle's high - low (its volatility), or both added.
- Size: `fraction` of the equity at entry, in notional (qty = fraction * equity / fill price);
  the fees come on top.
- Stop-loss and take-profit, in percent of the entry fill price, are checked within every
  candle the position is held, its entry candle included. A stop is a stop-market order: it
  fills at the stop price, or at the open when the candle opened through it (a gap), plus
  slippage, taker fee. A take-profit is a resting limit order: it fills at its price, or at the
  open when the candle opened through it, no slippage, maker fee. When one candle reaches
  both, the stop counts first (we cannot know which came first, so assume the worse) unless
  the take-profit filled at the open.
- After a stop or take-profit the position stays flat until the strategy's target changes.
- A position still open after the last candle is closed at its close (reason "end", taker fee,
  slippage).

The engine visits only the candles where something happens (target changes) and finds the
first stop/take-profit candle of each position with one numpy scan, so its cost is about one
pass over the arrays plus a few microseconds per trade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from workers.backtest.data import BacktestData, Directions, Floats
from workers.backtest.errors import InvalidParams

Reason = Literal["signal", "stop", "take_profit", "end"]


@dataclass(frozen=True)
class BacktestConfig:
    initial_cash: float = 10_000.0
    fraction: float = 1.0  # of equity per position
    taker_fee_bps: float = 10.0  # market orders: entries, signal exits, stops, the end
    maker_fee_bps: float = 2.0  # take-profit limit orders
    slippage_bps: float = 0.0
    slippage_range: float = 0.0  # fraction of the fill candle's high - low
    allow_short: bool = False
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise InvalidParams(message)

        need(self.initial_cash > 0, f"initial cash must be > 0, got {self.initial_cash}")
        need(0 < self.fraction <= 1, f"fraction must be in (0, 1], got {self.fraction}")
        for name in ("taker_fee_bps", "maker_fee_bps", "slippage_bps", "slippage_range"):
            value = getattr(self, name)
            need(value >= 0, f"{name} must be >= 0, got {value}")
        need(self.slippage_range <= 1, f"slippage_range is a fraction of the candle range "
                                       f"(0..1), got {self.slippage_range}")
        need(self.stop_loss_pct is None or 0 < self.stop_loss_pct < 100,
             f"stop-loss must be in (0, 100) percent, got {self.stop_loss_pct}")
        need(self.take_profit_pct is None or self.take_profit_pct > 0,
             f"take-profit must be > 0 percent, got {self.take_profit_pct}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trade:
    side: Literal["long", "short"]
    entry_index: int
    exit_index: int
    entry_time: int  # ms: the open of the entry candle
    exit_time: int  # ms: the exit candle's open (its close for "end")
    entry_price: float  # fill prices, slippage included
    exit_price: float
    qty: float  # > 0
    entry_fee: float
    exit_fee: float
    pnl: float  # after both fees
    reason: Reason

    @property
    def fees(self) -> float:
        return self.entry_fee + self.exit_fee

    @property
    def return_pct(self) -> float:
        return 100.0 * self.pnl / (self.qty * self.entry_price)

    @property
    def bars(self) -> int:
        """Candles the position was held in (a signal exit happens at the exit candle's open,
        so that candle does not count)."""
        return self.exit_index - self.entry_index + (0 if self.reason == "signal" else 1)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fees"] = self.fees
        d["return_pct"] = self.return_pct
        return d


@dataclass(frozen=True)
class Simulation:
    trades: list[Trade]
    equity: Floats  # at each candle's close
    position: Floats  # signed quantity held at each candle's close


class _Book:
    """Cash, the open position and the state changes the equity curve is rebuilt from."""

    def __init__(self, data: BacktestData, config: BacktestConfig) -> None:
        self.d = data
        self.c = config
        self.cash = config.initial_cash
        self.qty = 0.0  # signed
        self.entry: tuple[int, float, float] = (0, 0.0, 0.0)  # index, price, fee
        self.trades: list[Trade] = []
        self.marks: list[tuple[int, float, float]] = []  # (index, cash, qty) after changes
        self.taker = config.taker_fee_bps / 1e4
        self.maker = config.maker_fee_bps / 1e4
        self.slip = config.slippage_bps / 1e4

    def slipped(self, price: float, buy: bool, i: int) -> float:
        cost = price * self.slip
        if self.c.slippage_range:
            cost += self.c.slippage_range * float(self.d.high[i] - self.d.low[i])
        return price + cost if buy else price - cost

    def enter(self, side: int, i: int) -> None:
        price = self.slipped(float(self.d.open[i]), side > 0, i)
        size = self.c.fraction * self.cash / price  # flat, so cash is the equity
        fee = size * price * self.taker
        self.qty = side * size
        self.cash -= self.qty * price + fee
        self.entry = (i, price, fee)
        self.marks.append((i, self.cash, self.qty))

    def exit(self, i: int, price: float, fee_rate: float, reason: Reason, time: int) -> None:
        j, entry_price, entry_fee = self.entry
        size = abs(self.qty)
        fee = size * price * fee_rate
        self.cash += self.qty * price - fee
        pnl = self.qty * (price - entry_price) - entry_fee - fee
        self.trades.append(Trade("long" if self.qty > 0 else "short", j, i,
                                 int(self.d.open_time[j]), time, entry_price, price, size,
                                 entry_fee, fee, pnl, reason))
        self.qty = 0.0
        self.marks.append((i, self.cash, 0.0))

    def exit_market(self, i: int, price: float, reason: Reason, time: int) -> None:
        self.exit(i, self.slipped(price, self.qty < 0, i), self.taker, reason, time)

    def check_stops(self, start: int, stop_at: int) -> bool:
        """Stop-loss/take-profit of the position entered at `start`, over candles
        [start, stop_at); True when one closed it."""
        c, d = self.c, self.d
        long = self.qty > 0
        entry = self.entry[1]
        first_stop = first_tp = stop_at
        sl = tp = 0.0
        if c.stop_loss_pct is not None:
            sl = entry * (1 - c.stop_loss_pct / 100 if long else 1 + c.stop_loss_pct / 100)
            hit = d.low[start:stop_at] <= sl if long else d.high[start:stop_at] >= sl
            k = int(hit.argmax())
            if hit[k]:
                first_stop = start + k
        if c.take_profit_pct is not None:
            tp = entry * (1 + c.take_profit_pct / 100 if long else 1 - c.take_profit_pct / 100)
            hit = d.high[start:first_stop + 1] >= tp if long else d.low[start:first_stop + 1] <= tp
            k = int(hit.argmax())
            if len(hit) and hit[k] and start + k < stop_at:
                first_tp = start + k
        if first_stop == stop_at and first_tp == stop_at:
            return False
        i = min(first_stop, first_tp)
        o = float(d.open[i])
        time = int(d.open_time[i])
        # At the entry candle the open is the entry itself: no gap can be there.
        tp_gap = i > start and (o >= tp if long else o <= tp)
        if first_tp < first_stop or (first_tp == first_stop and tp_gap):
            self.exit(i, o if tp_gap else tp, self.maker, "take_profit", time)
        else:
            gap = i > start and (o <= sl if long else o >= sl)
            self.exit_market(i, o if gap else sl, "stop", time)
        return True


def simulate(data: BacktestData, targets: Directions, config: BacktestConfig) -> Simulation:
    n = len(data)
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} candles")
    tgt = np.asarray(targets, dtype=np.int8)
    if not config.allow_short:
        tgt = np.where(tgt < 0, 0, tgt).astype(np.int8)
    book = _Book(data, config)
    stops = config.stop_loss_pct is not None or config.take_profit_pct is not None
    # Decisions that change the target, at candles 0..n-2 (the last close has no next open).
    before = np.concatenate(([0], tgt[:-1])).astype(np.int8)
    decided = np.flatnonzero(tgt[:n - 1] != before[:n - 1]).tolist()
    actions = [i + 1 for i in decided]
    wanted = tgt[decided].tolist()
    for a, (k, want) in enumerate(zip(actions, wanted, strict=True)):
        held = 0 if book.qty == 0 else (1 if book.qty > 0 else -1)
        if held == want:
            continue  # already there (a stop left us flat and the target went flat)
        if held:
            book.exit_market(k, float(data.open[k]), "signal", int(data.open_time[k]))
        if want:
            book.enter(want, k)
            if stops:
                book.check_stops(k, actions[a + 1] if a + 1 < len(actions) else n)
    if book.qty:
        last = n - 1
        book.exit_market(last, float(data.close[last]), "end",
                         int(data.open_time[last]) + data.timeframe_ms)
    return Simulation(book.trades, *_curves(data, book))


def _curves(data: BacktestData, book: _Book) -> tuple[Floats, Floats]:
    """Equity and position at every close, from the state after each change."""
    n = len(data)
    idx = np.array([m[0] for m in book.marks], dtype=np.int64)
    cash = np.array([book.c.initial_cash] + [m[1] for m in book.marks])
    qty = np.array([0.0] + [m[2] for m in book.marks])
    # The last change at or before each candle (+1: slot 0 is the initial state).
    at = np.searchsorted(idx, np.arange(n), side="right")
    position = qty[at]
    return cash[at] + position * data.close, position
