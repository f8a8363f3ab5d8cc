from __future__ import annotations

import pytest

from alphaplus.cli import main


def test_config_prints_no_password_and_no_token(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ALPHAPLUS_DATABASE_URL", "postgresql://app:db-hunter2@db:5432/alphaplus")
    monkeypatch.setenv("ALPHAPLUS_REDIS_URL", "redis://:redis-hunter2@redis:6379/0")
    monkeypatch.setenv("ALPHAPLUS_API_TOKEN", "token-hunter2")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "ALPHAPLUS_DATABASE_URL=postgresql://app:***@db:5432/alphaplus" in out
    assert "ALPHAPLUS_REDIS_URL=redis://:***@redis:6379/0" in out
    assert "ALPHAPLUS_API_TOKEN=***" in out
