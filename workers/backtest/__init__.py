"""Backtesting over what a run stored: the live pipeline's (run id `live`) or a replay's
candles, indicators and signals, so a strategy is tested on exactly what it would have seen
live. docs/BACKTEST.md describes the rules, the strategy interface and the report.

    data = load(conn, "live", "BTCUSDT", "1m")           # workers.backtest.load
    result = run(data, make("ema_cross", {"fast": 9}), BacktestConfig(stop_loss_pct=2))
    save(conn, result); render(result, Path("out.png"))  # .store, .chart
"""

from workers.backtest.data import BacktestData, from_arrays, from_candles
from workers.backtest.engine import BacktestConfig, Simulation, Trade, simulate
from workers.backtest.errors import BacktestError, InvalidParams, NoData, UnknownStrategy
from workers.backtest.report import BacktestReport, run
from workers.backtest.strategies import STRATEGIES, make, register
from workers.backtest.strategy import Bar, CandleStrategy, Strategy

__all__ = [
    "STRATEGIES",
    "BacktestConfig",
    "BacktestData",
    "BacktestError",
    "BacktestReport",
    "Bar",
    "CandleStrategy",
    "InvalidParams",
    "NoData",
    "Simulation",
    "Strategy",
    "Trade",
    "UnknownStrategy",
    "from_arrays",
    "from_candles",
    "make",
    "register",
    "run",
    "simulate",
]
