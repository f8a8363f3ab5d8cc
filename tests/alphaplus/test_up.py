"""`alphaplus up` as a user runs it: a real process tree, stopped by SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.kafka import read_topic
from core.settings import Settings
from infra.stack.ports import free_port
from infra.stack.process import descendants, process_alive

UP = [sys.executable, "-m", "alphaplus.cli", "up", "--flower-port", "0"]


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Nothing answers at the configured addresses, so every server is embedded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPLUS_")}
    env.update(
        ALPHAPLUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        ALPHAPLUS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        ALPHAPLUS_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/alphaplus",
        ALPHAPLUS_STATE_DIR=str(tmp_path / "state"),
        ALPHAPLUS_API_PORT=str(free_port()),
        **extra,
    )
    return env


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"up exited early:\n{''.join(self.seen)}"
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line.rstrip("\n")
        raise AssertionError(f"no {prefix!r} line within {timeout}s:\n{''.join(self.seen)}")

    def field(self, prefix: str, pattern: str) -> str:
        found = re.search(pattern, next(s for s in self.seen if s.startswith(prefix)))
        assert found is not None
        return found.group(1)


@contextmanager
def run_up(tmp_path: Path, *args: str, **env: str) -> Iterator[Running]:
    with subprocess.Popen([*UP, *args], cwd=tmp_path, env=up_env(tmp_path, **env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        running = Running(proc)
        out = proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                running.lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield running
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            reader.join(5)


def first_trade(bootstrap: str, timeout: float = 20.0) -> bytes | None:
    """The first message of market.trades, waiting for the producer to write it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in read_topic(bootstrap, "market.trades", timeout=5):
            return msg.value()
        time.sleep(0.2)
    raise AssertionError("no trade arrived")


def api_answers(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return bool(httpx.get(url, timeout=5).json()["status"] == "ok")
        except httpx.TransportError:
            time.sleep(0.2)
    return False


def stop_and_check(running: Running) -> None:
    """SIGTERM; assert a clean exit with nothing left behind."""
    tree = descendants(running.proc.pid)
    assert len(tree) >= 4  # tansu, redis-server, postgres (+ its workers), producer
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(30) == 0, "".join(running.seen)
    left = [pid for pid in tree if process_alive(pid)]
    assert left == [], f"still running: {left}"
    running.wait_for("stopped")


def test_up_with_nothing_running_embeds_everything_and_stops_clean(tmp_path: Path) -> None:
    with run_up(tmp_path, "--source", "synthetic", "--rate", "500") as running:
        running.wait_for("running")
        bootstrap = running.field("kafka", r"embedded Tansu [\d.]+ at (\S+) ")
        assert "memory storage" in next(s for s in running.seen if s.startswith("kafka"))
        assert running.field("redis", r"(embedded) redis-server")
        assert running.field("postgres", r"(embedded) PostgreSQL")
        assert b'"symbol"' in (first_trade(bootstrap) or b"")
        dashboard = running.field("dashboard", r"(http://\S+/) ")
        assert api_answers(f"{dashboard}api/health")
        log_dir = Path(running.field("logs", r"^logs\s+(\S+)/"))
        stop_and_check(running)
    assert log_dir.parent == tmp_path / "state" / "logs"
    names = {p.name for p in log_dir.iterdir()}
    assert names == {"kafka.log", "redis.log", "postgres.log", "worker.log", "stream.log",
                     "api.log", "producer.log"}
    assert (log_dir / "producer.log").stat().st_size > 0


def test_unreachable_exchange_falls_back_to_synthetic(tmp_path: Path) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    with run_up(tmp_path, "--source", "binance", "--log-dir", str(tmp_path / "logs"),
                ALPHAPLUS_BINANCE_WS_URL=closed) as running:
        line = running.wait_for("binance")
        assert line == (f"binance   {closed} unreachable (Connection refused); using the "
                        "synthetic source instead (--no-fallback to fail)")
        running.wait_for("running")
        assert running.field("producer", r"^producer\s+(synthetic) at 200 trades/s")
        first_trade(running.field("kafka", r"embedded Tansu [\d.]+ at (\S+) "))
        stop_and_check(running)
    assert (tmp_path / "logs" / "producer.log").is_file()


def test_no_fallback_fails_before_starting_anything(tmp_path: Path) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    result = subprocess.run([*UP, "--source", "binance", "--no-fallback"], cwd=tmp_path,
                            env=up_env(tmp_path, ALPHAPLUS_BINANCE_WS_URL=closed),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert f"{closed} unreachable (Connection refused)" in result.stderr
    assert "--no-fallback" in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_failing_child_stops_everything_with_an_error(tmp_path: Path) -> None:
    with run_up(tmp_path, "--source", f"recording:{tmp_path / 'missing.gz'}") as running:
        running.wait_for("running")
        tree = descendants(running.proc.pid)
        line = running.wait_for("producer  exited")
        assert "stopping everything" in line
        assert running.proc.wait(30) == 1
        running.wait_for("stopped")
    assert not any(process_alive(pid) for pid in tree)


def test_ctrl_c_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    with run_up(tmp_path, "--source", "synthetic") as running:
        running.wait_for("kafka")
        tree = descendants(running.proc.pid)
        running.proc.send_signal(signal.SIGINT)
        assert running.proc.wait(30) == 0
        running.wait_for("stopped")
    assert not any(process_alive(pid) for pid in tree)


def test_each_child_exports_metrics_on_a_port_of_its_own() -> None:
    """One ALPHAPLUS_METRICS_PORT for the whole `up`: two processes cannot listen on one port,
    so the producer takes it, the worker the next, the stream processes the ones after."""
    import argparse

    from alphaplus.commands.up import pipeline_specs, producer_spec

    settings = Settings.from_env(environ={}, env_file=None).replace(metrics_port=9400)
    args = argparse.Namespace(stream=2, api_port=8123, flower_port=0, seed=1, speed=None,
                              rate=None)
    specs = [*pipeline_specs(args, settings), producer_spec(args, settings, "synthetic", 10.0)]
    ports = {spec.name: spec.env["ALPHAPLUS_METRICS_PORT"] for spec in specs}
    assert ports == {"worker": "9401", "stream-1": "9402", "stream-2": "9403", "api": "0",
                     "producer": "9400"}
    quiet = Settings.from_env(environ={}, env_file=None).replace(metrics_port=0)
    assert {s.env["ALPHAPLUS_METRICS_PORT"] for s in pipeline_specs(args, quiet)} == {"0"}


def test_the_embedded_broker_gets_longer_batches_and_fetch_waits_unless_set() -> None:
    from alphaplus.commands.up import tune_for_embedded_broker

    settings = Settings.from_env(environ={}, env_file=None)
    assert (settings.kafka_linger_ms, settings.kafka_fetch_wait_ms) == (20, 10)
    tuned = tune_for_embedded_broker(settings, {})
    assert (tuned.kafka_linger_ms, tuned.kafka_fetch_wait_ms) == (100, 100)
    mine = Settings.from_env(environ={"ALPHAPLUS_KAFKA_FETCH_WAIT_MS": "30"}, env_file=None)
    kept = tune_for_embedded_broker(mine, {"ALPHAPLUS_KAFKA_FETCH_WAIT_MS": "30"})
    assert (kept.kafka_linger_ms, kept.kafka_fetch_wait_ms) == (100, 30)
    assert kept.as_env()["ALPHAPLUS_KAFKA_FETCH_WAIT_MS"] == "30"  # what the children get
