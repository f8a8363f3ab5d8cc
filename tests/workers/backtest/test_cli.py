"""`alphaplus backtest` end to end on a stored run: summary, JSON, PNG, database row; its
errors; and an in-process sweep."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from psycopg2.extensions import connection as PGConnection

from alphaplus.cli import main
from workers.backtest import store, sweep
from workers.backtest.engine import BacktestConfig
from workers.backtest.load import load

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, migrated_db: str, tmp_path: Path) -> None:
    monkeypatch.setenv("ALPHAPLUS_DATABASE_URL", migrated_db)
    monkeypatch.setenv("ALPHAPLUS_STATE_DIR", str(tmp_path / "state"))


def test_backtest_prints_a_summary_and_writes_json_png_and_a_row(
        db: PGConnection, stored_run: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--run-id", stored_run, "--symbol", "btcusdt", "--timeframe", "1m",
                 "--strategy", "ema_cross", "--param", "fast=9", "--param", "slow=21",
                 "--fee-bps", "5", "--slippage-bps", "1", "--stop-loss", "0.5", "--short",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    report_id = re.search(r"^backtest (bt-\S+): ema_cross \(fast=9, slow=21\)$", out, re.M)
    assert report_id is not None, out
    rid = report_id.group(1)
    assert f"run {stored_run}, BTCUSDT 1m, 2024-08-08 22:00 .. 2024-08-09 13:00 UTC, 900 " \
           "candles" in out
    assert "fees: taker 5 bps, maker 2 bps; slippage: 1 bps" in out
    assert "size 100% of equity; stop-loss 0.5%; no take-profit; long/short" in out
    json_path = tmp_path / "out" / f"{rid}.json"
    png_path = tmp_path / "out" / f"{rid}.png"
    assert f"report: {json_path}" in out and f"chart:  {png_path}" in out
    assert png_path.read_bytes().startswith(PNG) and png_path.stat().st_size > 20_000
    doc = orjson.loads(json_path.read_bytes())
    row = store.fetch(db, rid)
    assert row == {**doc, "candles": 900}
    m = doc["metrics"]
    assert f"trades           {m['trades']:>10}" in out
    assert doc["config"]["taker_fee_bps"] == 5.0 and doc["config"]["allow_short"] is True
    assert len(out.splitlines()) <= 24  # one screen


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "moon"], "unknown strategy 'moon'; available: rsi_reversion"),
    (["--strategy", "ema_cross", "--param", "fats=3"],
     "ema_cross: unknown parameter(s) fats; its parameters (defaults): fast=9, slow=21"),
    (["--strategy", "ema_cross", "--param", "fast=40"], "need 1 <= fast < slow"),
    (["--strategy", "ema_cross", "--stop-loss", "-1"], "stop-loss must be in (0, 100)"),
    (["--strategy", "ema_cross", "--sweep", "fast"], "expected NAME=V1,V2"),
])
def test_bad_input_exits_2_and_says_what_exists(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--symbol", "BTCUSDT", *args]) == 2
    assert message in capsys.readouterr().err


def test_no_data_exits_2_and_lists_what_the_run_holds(
        stored_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--run-id", stored_run, "--symbol", "ETHUSDT", "--timeframe",
                 "5m", "--strategy", "ema_cross"]) == 2
    err = capsys.readouterr().err
    assert f"run '{stored_run}' has no closed 5m candles for ETHUSDT; it has: BTCUSDT 1m: " \
           "900 candles" in err


def test_local_sweep_prints_a_sorted_table(
        db: PGConnection, stored_run: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--run-id", stored_run, "--symbol", "BTCUSDT", "--strategy",
                 "ema_cross", "--sweep", "fast=5,9,12", "--sweep", "slow=21,30", "--local",
                 "--sort-by", "total_return", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "sorted by total_return:"
    assert lines[1].split()[:4] == ["#", "fast", "slow", "return"]
    table = [line.split() for line in lines[2:8]]
    assert {(r[1], r[2]) for r in table} == {(f, s) for f in ("5", "9", "12")
                                            for s in ("21", "30")}
    returns = [float(r[3].rstrip("%")) for r in table]
    assert returns == sorted(returns, reverse=True)
    # Each row is the single backtest of its parameters.
    data = load(db, stored_run, "BTCUSDT", "1m")
    best = sweep.run_one(data, "ema_cross", {"fast": table[0][1], "slow": table[0][2]},
                         BacktestConfig())
    assert best.metrics is not None
    assert f"{100 * best.metrics['total_return']:+.2f}%" == table[0][3]
    path = Path(lines[-1].removeprefix("results: "))
    saved = orjson.loads(path.read_bytes())
    assert [r["metrics"]["total_return"] for r in saved["rows"]] == sorted(
        (r["metrics"]["total_return"] for r in saved["rows"]), reverse=True)
