"""One backtest end to end (strategy, fills, metrics) and its report: the JSON document that is
saved to the database and to a file, and the one-screen text summary."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from workers.backtest import metrics
from workers.backtest.data import BacktestData, Floats, Ints
from workers.backtest.engine import BacktestConfig, Trade, simulate
from workers.backtest.strategy import Strategy

#: Points of the equity curve kept in the saved report (the PNG uses the full curve).
CURVE_POINTS = 500


def new_id() -> str:
    """`bt-20260301-120501-3fa2c1`: sortable by creation time, unique enough across hosts."""
    return f"bt-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class BacktestReport:
    id: str
    run_id: str
    strategy: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    config: dict[str, Any]
    start_time: int  # ms: the first candle's open
    end_time: int  # ms: the last candle's close (exclusive end of the range)
    metrics: dict[str, Any]
    trades: list[Trade]
    open_time: Ints = field(repr=False)
    equity: Floats = field(repr=False)
    buy_and_hold: Floats = field(repr=False)
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))

    def drawdown(self) -> Floats:
        return metrics.drawdown(self.equity, self.config["initial_cash"])

    def curve(self, points: int = CURVE_POINTS) -> dict[str, list[Any]]:
        """The equity curve thinned to about `points` evenly spaced candles, with the deepest
        drawdown's candle and the last one always kept."""
        n = len(self.equity)
        keep = np.unique(np.concatenate((
            np.linspace(0, n - 1, min(n, points)).round().astype(np.int64),
            [int(self.drawdown().argmin()), n - 1]))) if n else np.array([], np.int64)
        dd = self.drawdown()
        return {"time": self.open_time[keep].tolist(), "equity": self.equity[keep].tolist(),
                "buy_and_hold": self.buy_and_hold[keep].tolist(),
                "drawdown": dd[keep].tolist()}

    def as_dict(self) -> dict[str, Any]:
        """The document saved to the database and to `<id>.json` (times in ms since the
        epoch, UTC)."""
        return {
            "id": self.id, "run_id": self.run_id, "strategy": self.strategy,
            "params": self.params, "symbol": self.symbol, "timeframe": self.timeframe,
            "config": self.config, "start_time": self.start_time, "end_time": self.end_time,
            "created_at": self.created_at, "metrics": self.metrics,
            "trades": [t.as_dict() for t in self.trades], "equity": self.curve(),
        }

    def write_json(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.id}.json"
        path.write_bytes(orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2))
        return path


def run(data: BacktestData, strategy: Strategy[Any], config: BacktestConfig | None = None,
        report_id: str | None = None) -> BacktestReport:
    config = config or BacktestConfig()
    sim = simulate(data, strategy.targets(data), config)
    first_open = float(data.open[0])
    buy_and_hold = config.initial_cash * data.close / first_open
    stats = metrics.compute(sim.equity, config.initial_cash, data.timeframe_ms, sim.trades,
                            float(data.close[-1]) / first_open - 1.0)
    return BacktestReport(
        id=report_id or new_id(), run_id=data.run_id, strategy=strategy.name,
        params=_jsonable(vars(strategy.params)), symbol=data.symbol, timeframe=data.timeframe,
        config=config.as_dict(), start_time=int(data.open_time[0]),
        end_time=int(data.open_time[-1]) + data.timeframe_ms, metrics=stats, trades=sim.trades,
        open_time=data.open_time, equity=sim.equity, buy_and_hold=buy_and_hold)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(params))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}%"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def summary(report: BacktestReport) -> str:
    """The one-screen text the CLI prints."""
    m = report.metrics
    params = ", ".join(f"{k}={v}" for k, v in report.params.items()) or "no parameters"
    c = report.config
    slippage = " + ".join(
        ([f"{c['slippage_bps']:g} bps"] if c["slippage_bps"] else [])
        + ([f"{c['slippage_range']:g} x candle range"] if c["slippage_range"] else [])) or "none"
    costs = (f"fees: taker {c['taker_fee_bps']:g} bps, maker {c['maker_fee_bps']:g} bps; "
             f"slippage: {slippage}")
    stop, take = c["stop_loss_pct"], c["take_profit_pct"]
    risk = (f"size {100 * c['fraction']:g}% of equity; "
            f"{'no stop-loss' if stop is None else f'stop-loss {stop:g}%'}; "
            f"{'no take-profit' if take is None else f'take-profit {take:g}%'}; "
            f"{'long/short' if c['allow_short'] else 'long only'}")
    reasons: dict[str, int] = {}
    for t in report.trades:
        reasons[t.reason] = reasons.get(t.reason, 0) + 1
    exits = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    days = m["max_drawdown_duration_ms"] / 86_400_000
    lines = [
        f"backtest {report.id}: {report.strategy} ({params})",
        f"  run {report.run_id}, {report.symbol} {report.timeframe}, "
        f"{_time(report.start_time)} .. {_time(report.end_time)} UTC, {m['candles']} candles",
        f"  {costs}",
        f"  {risk}",
        "",
        f"  total return     {_pct(m['total_return']):>10}   buy & hold   "
        f"{_pct(m['buy_and_hold_return']):>10}",
        f"  CAGR             {_pct(m['cagr']):>10}   final equity {m['final_equity']:>10.2f}",
        f"  Sharpe           {_num(m['sharpe']):>10}   Sortino      {_num(m['sortino']):>10}",
        f"  Calmar           {_num(m['calmar']):>10}   max drawdown "
        f"{_pct(-m['max_drawdown']):>10} ({m['max_drawdown_duration_candles']} candles, "
        f"{days:.2f} d)",
        f"  trades           {m['trades']:>10}   win rate     {_share(m['win_rate']):>10}",
        f"  profit factor    {_num(m['profit_factor']):>10}   expectancy   "
        f"{_num(m['expectancy']):>10} / trade",
        f"  exposure         {_share(m['exposure']):>10}   fees paid    {m['fees_paid']:>10.2f}",
        f"  exits: {exits}",
    ]
    return "\n".join(lines)
