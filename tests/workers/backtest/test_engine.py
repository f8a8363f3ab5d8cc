"""The fill rules, on a handful of candles whose trades and P&L are worked out by hand here.

Every expected number is written as the arithmetic a person would do on paper (fills, fees,
quantities), not copied from the engine's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.backtest.synthetic import START_MS, hand
from workers.backtest.engine import BacktestConfig, Trade, simulate
from workers.backtest.errors import InvalidParams

MIN = 60_000
Rows = list[tuple[float, float, float, float]]
CASH = 10_000.0


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def run(rows: Rows, targets: list[int],
        **config: object) -> tuple[list[Trade], np.ndarray]:
    sim = simulate(hand(rows), np.array(targets, np.int8), BacktestConfig(**config))  # type: ignore[arg-type]
    return sim.trades, sim.equity


def test_long_with_fees_and_slippage_fills_at_the_next_open() -> None:
    rows: Rows = [(100, 101, 99, 100), (100, 102, 99, 101), (102, 103, 101, 102),
            (104, 105, 103, 104), (103, 104, 102, 103)]
    # Long decided at candle 0's close, flat at candle 2's close.
    trades, equity = run(rows, [1, 1, 0, 0, 0], taker_fee_bps=10, slippage_bps=10)
    entry = 100 * 1.001  # candle 1's open plus 10 bps slippage, buying
    qty = CASH / entry
    entry_fee = qty * entry * 0.001  # 10 bps taker on 10,000 notional = 10
    exit_ = 104 * 0.999  # candle 3's open less 10 bps, selling
    exit_fee = qty * exit_ * 0.001
    pnl = qty * (exit_ - entry) - entry_fee - exit_fee
    assert entry_fee == approx(10.0)
    assert pnl == approx(358.8415584415584)  # 379.2208 gross - 10 - 10.3792 fees
    [t] = trades
    assert (t.side, t.entry_index, t.exit_index, t.reason) == ("long", 1, 3, "signal")
    assert (t.entry_time, t.exit_time) == (START_MS + MIN, START_MS + 3 * MIN)
    assert (t.entry_price, t.exit_price, t.qty) == (approx(entry), approx(exit_), approx(qty))
    assert (t.entry_fee, t.exit_fee, t.pnl) == (approx(entry_fee), approx(exit_fee), approx(pnl))
    assert t.return_pct == approx(100 * pnl / CASH)
    cash_in_trade = CASH - qty * entry - entry_fee  # = -10: the fee on top of the notional
    assert equity.tolist() == [approx(CASH), approx(cash_in_trade + qty * 101),
                               approx(cash_in_trade + qty * 102), approx(CASH + pnl),
                               approx(CASH + pnl)]
    assert t.bars == 2  # held in candles 1 and 2; sold at candle 3's open


def test_range_slippage_and_fractional_size() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 103, 98, 101), (101, 102, 100, 101)]
    trades, _ = run(rows, [1, 1, 1], fraction=0.5, taker_fee_bps=0, slippage_range=0.1)
    entry = 100 + 0.1 * (103 - 98)  # a tenth of candle 1's range against the buyer
    qty = 0.5 * CASH / entry
    end = 101 - 0.1 * (102 - 100)  # closed at the last close, a tenth of its range against
    [t] = trades
    assert (t.entry_price, t.qty, t.exit_price, t.reason) == (approx(entry), approx(qty),
                                                              approx(end), "end")
    assert t.exit_time == START_MS + 3 * MIN  # the last candle's close
    assert t.pnl == approx(qty * (end - entry))


def test_stop_loss_fills_at_the_stop_price() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (100, 100.5, 97, 99),
            (99, 100, 98, 99.5)]
    trades, equity = run(rows, [1, 1, 1, 1], taker_fee_bps=10, stop_loss_pct=2)
    qty = CASH / 100
    stop = 100 * 0.98  # 98: candle 2's low (97) reaches it, its open (100) does not
    pnl = qty * (stop - 100) - qty * 100 * 0.001 - qty * stop * 0.001
    [t] = trades  # and no new entry: the target never changed after the stop
    assert (t.exit_index, t.exit_price, t.reason, t.pnl) == (2, approx(stop), "stop",
                                                             approx(pnl))
    assert t.exit_time == START_MS + 2 * MIN
    assert equity[2] == equity[3] == approx(CASH + pnl)


def test_stop_fills_at_the_open_when_the_candle_gaps_through_it() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (96, 97, 95, 96)]
    trades, _ = run(rows, [1, 1, 1], taker_fee_bps=0, slippage_bps=10, stop_loss_pct=2)
    entry = 100 * 1.001
    qty = CASH / entry
    fill = 96 * 0.999  # the open, below the stop (98.098), less slippage
    [t] = trades
    assert (t.exit_price, t.reason, t.pnl) == (approx(fill), "stop",
                                               approx(qty * (fill - entry)))


def test_take_profit_is_a_maker_limit_fill_without_slippage() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (101, 104, 100.5, 103.5)]
    trades, _ = run(rows, [1, 1, 1], taker_fee_bps=10, maker_fee_bps=2, take_profit_pct=3)
    qty = CASH / 100
    tp = 103.0
    pnl = qty * (tp - 100) - qty * 100 * 0.001 - qty * tp * 0.0002
    [t] = trades
    assert (t.exit_index, t.exit_price, t.exit_fee, t.reason, t.pnl) == (
        2, approx(tp), approx(qty * tp * 0.0002), "take_profit", approx(pnl))


def test_take_profit_gapped_at_the_open_fills_at_the_open() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (105, 106, 104, 105)]
    trades, _ = run(rows, [1, 1, 1], taker_fee_bps=0, maker_fee_bps=0, take_profit_pct=3)
    [t] = trades
    assert (t.exit_price, t.reason) == (approx(105.0), "take_profit")


def test_stop_counts_first_when_one_candle_reaches_both() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (100, 104, 97, 101)]
    trades, _ = run(rows, [1, 1, 1], taker_fee_bps=0, stop_loss_pct=2, take_profit_pct=3)
    [t] = trades
    assert (t.exit_index, t.exit_price, t.reason) == (2, approx(98.0), "stop")
    # ...unless the take-profit filled at the open, before the candle went anywhere.
    rows[2] = (104, 105, 97, 101)
    [t] = run(rows, [1, 1, 1], taker_fee_bps=0, stop_loss_pct=2, take_profit_pct=3)[0]
    assert (t.exit_price, t.reason) == (approx(104.0), "take_profit")


def test_stop_can_hit_in_the_entry_candle() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 100.5, 97.5, 99), (99, 100, 98.5, 99)]
    trades, _ = run(rows, [1, 1, 1], taker_fee_bps=0, stop_loss_pct=2)
    [t] = trades
    assert (t.entry_index, t.exit_index, t.exit_price, t.reason, t.bars) == (
        1, 1, approx(98.0), "stop", 1)


def test_short_side() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 100.5, 98, 99), (97, 98, 96, 96.5),
            (95, 96, 94, 95.5), (95.5, 96, 95, 95.5)]
    trades, equity = run(rows, [-1, -1, 0, 0, 0], allow_short=True, taker_fee_bps=10,
                         slippage_bps=10)
    entry = 100 * 0.999  # selling at candle 1's open: slippage lowers the price
    qty = CASH / entry
    exit_ = 95 * 1.001  # buying back at candle 3's open
    fees = qty * entry * 0.001 + qty * exit_ * 0.001
    pnl = qty * (entry - exit_) - fees
    [t] = trades
    assert (t.side, t.entry_price, t.exit_price, t.qty, t.pnl) == (
        "short", approx(entry), approx(exit_), approx(qty), approx(pnl))
    # Short: cash holds the sale's proceeds, the equity is cash less what buying back costs.
    cash = CASH + qty * entry - qty * entry * 0.001
    assert equity[1] == approx(cash - qty * 99)
    assert equity[4] == approx(CASH + pnl)


def test_short_stop_and_take_profit_mirror_the_long_ones() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 100.5, 99.5, 100), (100, 103, 96, 99)]
    trades, _ = run(rows, [-1, -1, -1], allow_short=True, taker_fee_bps=0,
                    stop_loss_pct=2, take_profit_pct=3)
    [t] = trades  # 102 (stop) and 97 (take-profit) both reached: the stop counts
    assert (t.side, t.exit_price, t.reason) == ("short", approx(102.0), "stop")
    rows[2] = (100, 101, 96, 99)
    [t] = run(rows, [-1, -1, -1], allow_short=True, taker_fee_bps=0, maker_fee_bps=0,
              stop_loss_pct=2, take_profit_pct=3)[0]
    assert (t.exit_price, t.reason, t.pnl) == (approx(97.0), "take_profit",
                                               approx(CASH / 100 * 3))


def test_long_only_treats_a_short_target_as_flat() -> None:
    rows: Rows = [(100, 100, 100, 100)] * 4
    trades, _ = run(rows, [1, -1, -1, 1], taker_fee_bps=0)
    assert [(t.side, t.entry_index, t.exit_index, t.reason) for t in trades] == [
        ("long", 1, 2, "signal")]  # the last target comes at the last close: no next open


def test_flip_from_long_to_short_at_one_open() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110),
            (110, 110, 105, 105)]
    trades, equity = run(rows, [1, -1, -1, -1], allow_short=True, taker_fee_bps=10)
    long_qty = CASH / 100
    long_pnl = long_qty * 10 - long_qty * 100 * 0.001 - long_qty * 110 * 0.001
    after = CASH + long_pnl
    short_qty = after / 110
    short_pnl = short_qty * (110 - 105) - short_qty * 110 * 0.001 - short_qty * 105 * 0.001
    assert [(t.side, t.entry_index, t.exit_index, t.reason) for t in trades] == [
        ("long", 1, 2, "signal"), ("short", 2, 3, "end")]
    assert trades[0].pnl == approx(long_pnl)
    assert trades[1].qty == approx(short_qty)
    assert trades[1].pnl == approx(short_pnl)
    assert equity[-1] == approx(after + short_pnl)


def test_reentry_after_a_stop_waits_for_the_target_to_change() -> None:
    rows: Rows = [(100, 100, 100, 100), (100, 100, 97, 99), (99, 99, 99, 99), (99, 99, 99, 99),
            (99, 100, 99, 100), (100, 100, 100, 100)]
    trades, _ = run(rows, [1, 1, 0, 1, 1, 1], taker_fee_bps=0, stop_loss_pct=2)
    assert [(t.entry_index, t.exit_index, t.reason) for t in trades] == [
        (1, 1, "stop"), (4, 5, "end")]


def test_config_is_validated() -> None:
    for bad in ({"fraction": 0}, {"fraction": 1.5}, {"taker_fee_bps": -1},
                {"stop_loss_pct": 0}, {"stop_loss_pct": 100}, {"take_profit_pct": -3},
                {"slippage_range": 2}, {"initial_cash": 0}):
        with pytest.raises(InvalidParams):
            BacktestConfig(**bad)
