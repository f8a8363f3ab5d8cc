"""The database side: loading what the pipeline stored, saving and reading reports back."""

from __future__ import annotations

import numpy as np
import pytest
from psycopg2.extensions import connection as PGConnection

from core.candles import Candle
from core.db.writer import upsert_candles
from tests.core.db.dbutil import query
from workers.backtest import report, store
from workers.backtest.data import from_candles
from workers.backtest.engine import BacktestConfig
from workers.backtest.errors import NoData
from workers.backtest.load import load
from workers.backtest.strategies import make


def test_load_gives_what_the_live_engine_computed(db: PGConnection, stored_run: str,
                                                  run_candles: list[Candle]) -> None:
    data = load(db, stored_run, "BTCUSDT", "1m")
    want = from_candles(run_candles, run_id=stored_run)
    assert data.run_id == stored_run and len(data) == len(run_candles)
    for name in ("open_time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(data, name), getattr(want, name)), name
    assert data.indicators.keys() == want.indicators.keys()
    for key, values in want.indicators.items():
        # JSON keeps a float exactly (shortest repr round trip).
        assert np.array_equal(data.indicators[key], values, equal_nan=True), key
    assert {k: v.tolist() for k, v in data.signals.items()} == {
        k: v.tolist() for k, v in want.signals.items()}


def test_load_a_time_range_and_skip_unclosed_candles(db: PGConnection, stored_run: str,
                                                     run_candles: list[Candle]) -> None:
    last = run_candles[-1]
    forming = Candle(last.symbol, last.timeframe, last.open_time + 60_000,
                     last.close_time + 60_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 0.0, 0.0, False)
    upsert_candles(db, [forming], run_id=stored_run)
    assert len(load(db, stored_run, "BTCUSDT", "1m")) == len(run_candles)
    start, end = run_candles[100].open_time, run_candles[200].open_time
    part = load(db, stored_run, "BTCUSDT", "1m", start, end)
    assert part.open_time.tolist() == [c.open_time for c in run_candles[100:200]]


def test_no_data_says_what_exists(db: PGConnection, stored_run: str) -> None:
    with pytest.raises(NoData) as err:
        load(db, stored_run, "ETHUSDT", "1m")
    assert str(err.value).startswith(
        f"run '{stored_run}' has no closed 1m candles for ETHUSDT; it has: BTCUSDT 1m: 900 "
        "candles, 2024-08-08 22:00:00 .. 2024-08-09 12:59:00")
    with pytest.raises(NoData, match="from 2030-01-01 00:00:00 to the end; it has: BTCUSDT"):
        load(db, stored_run, "BTCUSDT", "1m", 1_893_456_000_000)
    with pytest.raises(NoData, match=rf"run 'nope' .* no candles at all; runs with candles: "
                                     rf".*{stored_run}"):
        load(db, "nope", "BTCUSDT", "1m")


def test_report_round_trip(db: PGConnection, stored_run: str) -> None:
    data = load(db, stored_run, "BTCUSDT", "1m")
    config = BacktestConfig(stop_loss_pct=0.5, take_profit_pct=1.0, slippage_bps=2,
                            allow_short=True)
    result = report.run(data, make("ema_cross", {"fast": "9", "slow": "21"}), config)
    assert result.metrics["trades"] > 5
    store.save(db, result)
    doc = store.fetch(db, result.id)
    assert doc is not None
    want = result.as_dict()
    assert doc == {**want, "candles": len(data)}
    assert doc["trades"][0].keys() >= {"side", "entry_time", "exit_time", "entry_price",
                                       "exit_price", "qty", "fees", "pnl", "reason"}
    assert doc["run_id"] == stored_run and doc["params"] == {"fast": 9, "slow": 21}
    # Queryable in SQL, as the API and people comparing runs use it.
    [(sharpe, trades)] = query(db, "SELECT (metrics->>'sharpe')::float8, "
                                   "jsonb_array_length(trades) FROM backtests WHERE id = %s",
                               (result.id,))
    assert (sharpe, trades) == (pytest.approx(result.metrics["sharpe"]), len(result.trades))
    # Saving again under the same id replaces the row.
    again = report.run(data, make("ema_cross"), BacktestConfig(), report_id=result.id)
    store.save(db, again)
    replaced = store.fetch(db, result.id)
    assert replaced is not None and replaced["config"] == BacktestConfig().as_dict()
    listed = store.list_reports(db, stored_run)
    assert [d["id"] for d in listed] == [result.id] and "trades" not in listed[0]
    assert store.fetch(db, "bt-missing") is None
