"""Sweeps and backtest jobs on a real Celery worker (subprocess), on the test's own queues."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis
from psycopg2.extensions import connection as PGConnection

from alphaplus.cli import main
from core.settings import Settings
from tests.workers.backtest.synthetic import store_run, walk
from tests.workers.helpers import Processes, wait_for
from workers.backtest import report, store, sweep
from workers.backtest.data import decode
from workers.backtest.engine import BacktestConfig
from workers.backtest.load import load
from workers.backtest.strategies import make
from workers.celery_app import make_app


@pytest.fixture
def job_settings(redis_url: str, namespace: str, migrated_db: str,
                 monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, database_url=migrated_db, celery_queue_prefix=namespace)
    for name, value in s.as_env().items():  # what `alphaplus backtest` reads here
        monkeypatch.setenv(name, value)
    return s


def test_sweep_on_celery_workers_equals_the_local_sweep(
        job_settings: Settings, namespace: str, db: PGConnection, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The run id is the test's namespace, so its Redis keys are the fixture's to delete.
    store_run(db, namespace, walk(2000, seed=21))
    data = load(db, namespace, "BTCUSDT", "1m")
    config = BacktestConfig(stop_loss_pct=1.0, slippage_bps=2)
    with Processes(job_settings, namespace, tmp_path) as procs:
        procs.worker("w1")
        code = main(["backtest", "--run-id", namespace, "--symbol", "BTCUSDT", "--strategy",
                     "ema_cross", "--sweep", "fast=5,9,12", "--sweep", "slow=21,30",
                     "--stop-loss", "1", "--slippage-bps", "2", "--timeout", "120",
                     "--out", str(tmp_path)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert f"6 parameter sets on Celery ({namespace}.jobs)" in captured.err
        # Six tasks ran on the worker, not here.
        assert len(procs.tasks("w1", "succeeded")) == 6, procs.log("w1")

        # The arrays went to Redis once, keyed by run, symbol, timeframe and candle range.
        client = redis.Redis.from_url(job_settings.redis_url)
        try:
            blob = client.get(sweep.data_key(data))
            assert isinstance(blob, bytes)
            assert decode(blob).fingerprint() == data.fingerprint()
            assert data.fingerprint() == f"2000-{data.open_time[0]}-{data.open_time[-1]}"

            # When the blob has expired, a task loads the same candles from PostgreSQL.
            ref = {"key": f"alphaplus:{namespace}:backtest:data:expired", "run_id": namespace,
                   "symbol": "BTCUSDT", "timeframe": "1m", "start_ms": int(data.open_time[0]),
                   "end_ms": int(data.open_time[-1]) + 1, "fingerprint": data.fingerprint()}
            app = make_app(job_settings)
            app.send_task(sweep.TASK, args=["fallback", 0, "ema_cross", {"fast": 12},
                                            config.as_dict(), ref],
                          queue=f"{namespace}.jobs")
            app.send_task("alphaplus.backtest_run",
                          args=["bt-job-1", namespace, "BTCUSDT", "1m", "macd_cross", {},
                                config.as_dict()], queue=f"{namespace}.jobs")
            app.close()
            results = sweep.results_key(namespace, "fallback")
            wait_for(lambda: client.hlen(results) == 1, "the fallback task", procs, 60)
            fallback = orjson.loads(client.hget(results, "0") or b"")
        finally:
            client.close()
        wait_for(lambda: store.fetch(db, "bt-job-1") is not None, "the backtest_run job", procs,
                 60)

    table = [line.split() for line in captured.out.splitlines()[2:8]]
    local = sweep.sort_rows(sweep.run_local(data, "ema_cross", sweep.grid(
        {}, {"fast": [5, 9, 12], "slow": [21, 30]}), config), "sharpe")
    assert [(r[1], r[2]) for r in table] == [
        (str(r.params["fast"]), str(r.params["slow"])) for r in local]
    saved = orjson.loads(Path(captured.out.splitlines()[-1].removeprefix("results: "))
                         .read_bytes())
    assert [r["metrics"] for r in saved["rows"]] == [r.metrics for r in local]

    want = sweep.run_one(data, "ema_cross", {"fast": 12}, config)
    assert fallback == {"params": want.params, "metrics": want.metrics, "error": None}
    job = store.fetch(db, "bt-job-1")
    assert job is not None
    assert job["metrics"] == report.run(data, make("macd_cross"), config).metrics


def test_sweep_without_workers_times_out_with_a_hint(
        job_settings: Settings, namespace: str, db: PGConnection,
        capsys: pytest.CaptureFixture[str]) -> None:
    store_run(db, namespace, walk(300, seed=22))
    started = time.monotonic()
    assert main(["backtest", "--run-id", namespace, "--symbol", "BTCUSDT", "--strategy",
                 "ema_cross", "--sweep", "fast=5,9", "--timeout", "1"]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"0 of 2 tasks done after 1 s; are workers consuming {namespace}.jobs?" in err
