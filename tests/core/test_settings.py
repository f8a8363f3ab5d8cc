from __future__ import annotations

from pathlib import Path

import pytest

from core.exceptions import ConfigError
from core.settings import Settings, markdown_table

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = Settings.from_env(environ={}, env_file=None)
    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert s.market == "spot" and s.api_port == 8000
    assert s.timeframes == ("1m", "5m", "15m", "1h", "4h", "1d")
    assert s.ws_base_url == "wss://stream.binance.com:9443"
    assert s.replace(market="usdm").ws_base_url == "wss://fstream.binance.com"


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ALPHAPLUS_SYMBOLS=solusdt\nALPHAPLUS_API_PORT=9000\n")
    s = Settings.from_env(environ={"ALPHAPLUS_API_PORT": "9100",
                                   "ALPHAPLUS_TIMEFRAMES": "1h, 1m",
                                   "ALPHAPLUS_BINANCE_STREAM": "AGGTRADE",
                                   "ALPHAPLUS_BINANCE_WS_URL": "ws://127.0.0.1:1/"},
                          env_file=env_file)
    assert s.symbols == ("SOLUSDT",)
    assert s.api_port == 9100
    assert s.timeframes == ("1m", "1h")
    assert s.binance_stream == "aggTrade"
    assert s.ws_base_url == "ws://127.0.0.1:1"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALPHAPLUS_MARKET", "coinm", "expected one of spot, usdm"),
        ("ALPHAPLUS_API_PORT", "eighty", "ALPHAPLUS_API_PORT='eighty'"),
        ("ALPHAPLUS_TIMEFRAMES", "1m,7m", "unknown timeframe(s) 7m"),
        ("ALPHAPLUS_SYMBOLS", " , ", "at least one"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(environ={name: value}, env_file=None)


def test_as_env_round_trips() -> None:
    s = Settings.from_env(environ={"ALPHAPLUS_SYMBOLS": "A,B", "ALPHAPLUS_MARKET": "usdm",
                                   "ALPHAPLUS_BINANCE_MICROSECONDS": "yes"}, env_file=None)
    assert Settings.from_env(environ=s.as_env(), env_file=None) == s


def test_configuration_doc_is_generated_from_the_settings() -> None:
    doc = (REPO / "docs" / "CONFIGURATION.md").read_text()
    assert markdown_table() in doc, "regenerate with: alphaplus config --markdown"
