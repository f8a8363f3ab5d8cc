"""core/logs.py: JSON and text lines, the correlation id, the error counter, the payload field."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client import REGISTRY

from core import logs


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def errors_counted(process: str) -> float:
    return REGISTRY.get_sample_value("alphaplus_log_errors_total", {"process": process}) or 0.0


def test_json_lines_carry_the_correlation_id_extras_and_the_traceback(
        restore_root: None) -> None:
    out = io.StringIO()
    logs.setup("stream", logging.INFO, "json", out)
    log = logging.getLogger("alphaplus.test")
    token = logs.CID.set("abc123")
    try:
        log.info("batch of %d", 5, extra={"partition": 2})
    finally:
        logs.CID.reset(token)
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"cid": "explicit-1"})
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "batch of 5" and first["level"] == "INFO"
    assert first["cid"] == "abc123" and first["partition"] == 2
    assert first["process"] == "stream" and first["logger"] == "alphaplus.test"
    assert first["ts"].endswith("Z") and "T" in first["ts"] and isinstance(first["pid"], int)
    assert second["cid"] == "explicit-1" and second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]


def test_text_lines_append_the_id_and_setup_replaces_handlers(restore_root: None) -> None:
    out = io.StringIO()
    logs.setup("api", logging.INFO, "text", io.StringIO())
    logs.setup("api", logging.INFO, "text", out)  # again: one handler of each kind
    assert len(logging.getLogger().handlers) == 2
    log = logging.getLogger("alphaplus.test")
    # Other tests in this process may have left an id in the context (a sink's batch).
    token = logs.CID.set(None)
    try:
        log.info("no id here")
    finally:
        logs.CID.reset(token)
    token = logs.CID.set("feedbeef")
    try:
        log.warning("with an id")
    finally:
        logs.CID.reset(token)
    first, second = out.getvalue().splitlines()
    assert first.endswith("INFO alphaplus.test: no id here")
    assert second.endswith("WARNING alphaplus.test: with an id [cid=feedbeef]")


def test_error_records_are_counted_per_process(restore_root: None) -> None:
    logs.setup("unit-test-proc", logging.INFO, "json", io.StringIO())
    before = errors_counted("unit-test-proc")
    log = logging.getLogger("alphaplus.test")
    log.warning("a warning is not an error")
    log.error("one")
    log.critical("two")
    assert errors_counted("unit-test-proc") == before + 2


def test_payload_field_round_trip_and_hostile_ids() -> None:
    candle = b'{"symbol":"BTCUSDT","open_time":1,"closed":false}'
    tagged = logs.with_cid(candle, "0123abcd")
    assert orjson.loads(tagged) == {**orjson.loads(candle), "cid": "0123abcd"}
    assert logs.cid_in(tagged) == "0123abcd"
    assert logs.cid_in(candle) is None
    assert logs.with_cid(candle, None) is candle
    assert logs.valid_cid(logs.new_cid()) and len(logs.new_cid()) == 16
    for bad in ('x","closed":true,"a":"', "", "a" * 65, "spa ce", "nl\n"):
        assert not logs.valid_cid(bad), bad


def test_every_is_leading_edge() -> None:
    every = logs.Every(10.0)
    assert every.due(100.0)
    assert not every.due(105.0)
    assert every.due(110.0)
    assert all(logs.Every(0).due(t) for t in (1.0, 1.0, 1.0))


def test_uvicorn_config_routes_uvicorn_loggers_to_the_root(restore_root: None) -> None:
    import logging.config

    logging.config.dictConfig(logs.uvicorn_config("api", "json", logging.INFO))
    root = logging.getLogger()
    assert any(isinstance(h, logs.ErrorCounter) for h in root.handlers)
    assert any(isinstance(getattr(h, "formatter", None), logs.JsonFormatter)
               for h in root.handlers)
    assert logging.getLogger("uvicorn.error").propagate
    assert not logging.getLogger("uvicorn").handlers
