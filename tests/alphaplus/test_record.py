"""`alphaplus record` against the local fake exchange, and replaying what it wrote."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from alphaplus.cli import main
from alphaplus.commands.record import FrameRecorder
from core.settings import Settings
from producers.run import produce
from producers.sources.binance_ws import combined_urls, run_streams, stream_names
from producers.sources.recording import RecordingSource, read_lines
from producers.sources.ws_switchover import WsOptions
from tests.conftest import REPO
from tests.producers.fake_binance import TRADE_STREAMS, FakeBinance, recorded_frames, trade_rows
from tests.producers.test_binance_ws import kafka_rows, wait_until

STREAMS = stream_names(["BTCUSDT", "ETHUSDT"], ["trade", "bookTicker"])


def frames_by_stream(lines: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for raw in lines:
        stream = raw.split(b'"stream":"', 1)[1].split(b'"', 1)[0].decode()
        out.setdefault(stream, []).append(raw)
    return out


def test_record_writes_a_file_that_replays_into_the_same_trades(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "capture.gz"
    monkeypatch.chdir(tmp_path)  # no stray .env
    with FakeBinance(recorded_frames(600), fps=10_000, batch=25) as fake:
        monkeypatch.setenv("ALPHAPLUS_BINANCE_WS_URL", fake.url)
        code = main(["record", "--out", str(out), "--duration", "1.5",
                     "--symbols", "BTCUSDT,ETHUSDT", "--streams", "trade,bookTicker"])
        assert code == 0
        expected = fake.frames_for(STREAMS)
        fake.wait_all_closed()
        assert [c.streams for c in fake.connections] == [tuple(STREAMS)]

    with gzip.open(out, "rb") as fh:  # a complete gzip stream: the file was closed cleanly
        assert fh.read().endswith(b"\n")
    lines = list(read_lines(out))
    assert all(ns is not None for ns, _ in lines)
    assert [raw for _, raw in lines] == [raw.encode() for raw in expected]

    stats = produce(settings, RecordingSource([out]), threading.Event())
    assert kafka_rows(settings) == trade_rows(fake.frames_for(TRADE_STREAMS))
    assert stats.dead_letters == 0 and stats.gaps == 0 and stats.duplicates == 0


def test_record_stops_on_sigterm_and_closes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "capture.gz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALPHAPLUS_SYMBOLS": "BTCUSDT,ETHUSDT"}
    with FakeBinance(recorded_frames(600), fps=1000) as fake:
        env["ALPHAPLUS_BINANCE_WS_URL"] = fake.url
        proc = subprocess.Popen(
            [sys.executable, "-m", "alphaplus.cli", "record", "--out", str(out)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: bool(fake.connections) and fake.connections[0].next > 200)
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, output.decode()
        expected = fake.frames_for(["btcusdt@trade", "ethusdt@trade"])
    lines = [raw for _, raw in read_lines(out)]  # reading to the end checks the gzip trailer
    assert len(lines) > 200
    assert lines == [raw.encode() for raw in expected[:len(lines)]]


def test_recorder_writes_each_frame_once_across_switch_overs(tmp_path: Path) -> None:
    out = tmp_path / "capture.txt"
    options = WsOptions(backoff_base=0.01, backoff_cap=0.05, max_connection_age=0.2)
    stop = threading.Event()
    with FakeBinance(recorded_frames(600), fps=5000, overlap=10) as fake:
        expected = fake.frames_for(STREAMS)
        with open(out, "wb") as fh:
            recorder = FrameRecorder(fh)
            thread = threading.Thread(target=run_streams, args=(
                combined_urls(fake.url, STREAMS), recorder, stop, options, "record"))
            thread.start()
            try:
                wait_until(lambda: recorder.frames >= len(expected))
            finally:
                stop.set()
                thread.join(10)
        assert len(fake.connections) >= 3  # at least two switch-overs happened
    assert recorder.duplicates > 0
    written = frames_by_stream([raw for _, raw in read_lines(out)])
    assert written == frames_by_stream([raw.encode() for raw in expected])


def test_record_rejects_empty_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--out", str(tmp_path / "x"), "--streams", " , "]) == 2
    assert main(["record", "--out", str(tmp_path / "x"), "--duration", "0"]) == 2
    assert not (tmp_path / "x").exists()
