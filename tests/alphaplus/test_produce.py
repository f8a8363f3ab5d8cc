"""`alphaplus produce` end to end, in-process, against the session's Kafka broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphaplus.cli import main
from core.kafka import read_topic
from core.serde import decode_trade
from core.settings import Settings
from tests.conftest import HFT


def use_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)


def test_csv_import_takes_its_symbol_from_the_file_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings
) -> None:
    use_settings(monkeypatch, tmp_path, settings)
    csv = tmp_path / "SOLUSDT-trades-2024-08-08.csv"
    csv.write_text("1,150.10,2.5,375.25,1723161255000,True,True\n"
                   "2,150.20,1.0,150.20,1723161256000,False,True\n")

    assert main(["produce", "--source", f"csv:{csv}"]) == 0

    trades = [decode_trade(m.value())
              for m in read_topic(settings.kafka_bootstrap, settings.topic_trades)]
    assert [(t["symbol"], t["trade_id"], t["price"]) for t in trades] == [
        ("SOLUSDT", 1, "150.10"), ("SOLUSDT", 2, "150.20")]


def test_recording_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          settings: Settings) -> None:
    use_settings(monkeypatch, tmp_path, settings)
    path = HFT / "usdm" / "ethusdt_20240808.gz"
    assert main(["produce", "--source", f"recording:{path}", "--symbols", "ETHUSDT"]) == 0
    trades = [decode_trade(m.value())
              for m in read_topic(settings.kafka_bootstrap, settings.topic_trades)]
    assert len(trades) > 1000
    assert {t["symbol"] for t in trades} == {"ETHUSDT"}


def test_unknown_source_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings,
    capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, tmp_path, settings)
    assert main(["produce", "--source", "kraken"]) == 2
    assert "unknown source 'kraken'; use binance, recording:PATH" in capsys.readouterr().err
    assert main(["produce", "--source", "recording:/nonexistent.gz"]) == 2
    assert "recording not found: /nonexistent.gz" in capsys.readouterr().err
