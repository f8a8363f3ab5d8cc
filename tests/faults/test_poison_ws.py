"""Poison on `/ws` of a real `alphaplus api` process. Each kind is sent on a fresh connection;
it must get its numbered error (api/ws/protocol.py) or its documented close code, and then the
same connection — or, after a close, a new one — must subscribe and receive a pushed update.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from core import redis_keys
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.api.conftest import SYMBOLS
from tests.api.seed import candle, publish_live, seed
from tests.api.server import ApiProcess
from tests.faults.poison_corpus import record

MAX_STREAMS = 5
MAX_MESSAGE = 4096
GOOD_STREAM = "btcusdt@kline_1m"


@dataclass(frozen=True)
class WsCase:
    id: str
    frames: list[str | bytes]
    outcome: int | str  # an error code, or "close <code>"
    request_id: Any = None  # the id the error must echo
    invalid_text: bool = False  # send the bytes as a text frame (invalid UTF-8 on purpose)
    answers: int = 0  # good answers that come before the error (rate limits)


def req(method: Any = "PING", request_id: Any = 1, **more: Any) -> str:
    return orjson.dumps({"method": method, "id": request_id, **more}).decode()


def streams(n: int) -> list[str]:
    kinds = [f"{s.lower()}@{k}" for s in SYMBOLS for k in
             ("kline_1m", "kline_5m", "indicators_1m", "signals", "patterns")]
    return kinds[:n]


WS: list[WsCase] = [
    WsCase("not-json", ["hello server"], 1),
    WsCase("truncated-json", ['{"method": "SUBSCRIBE", "params": ["btc'], 1),
    WsCase("empty-message", [""], 1),
    WsCase("invalid-utf8-binary-frame", [b'{"method":"PING","id":1,"x":"\xff\xfe"}'], 1),
    WsCase("invalid-utf8-text-frame", [b'{"method":"PING","id":"\xff\xfe"}'], "close 1007",
           invalid_text=True),
    WsCase("binary-garbage", [b"\x00\x01\x02\x03"], 1),
    WsCase("nan-literal", ['{"method":"PING","id":NaN}'], 1),
    WsCase("number-1e400", ['{"method":"PING","id":1e400}'], 1),
    WsCase("id-2pow70", ['{"method":"PING","id":' + str(2**70) + "}"], 2),
    WsCase("deep-nesting", ["[" * 2000 + "]" * 2000], 1),
    WsCase("json-array", ["[1,2,3]"], 2),
    WsCase("json-null", ["null"], 2),
    WsCase("missing-id", ['{"method":"PING"}'], 2),
    WsCase("id-bool", [req(request_id=True)], 2),
    WsCase("id-object", [req(request_id={"a": 1})], 2),
    WsCase("unknown-property", [req(request_id=7, param=[])], 2, 7),
    WsCase("method-not-string", [req(method=5, request_id=8)], 2, 8),
    WsCase("params-not-list", [req("SUBSCRIBE", 9, params=GOOD_STREAM)], 2, 9),
    WsCase("params-wrong-types", [req("SUBSCRIBE", 10, params=[1, None, 2.5])], 2, 10),
    WsCase("unknown-method", [req("subscribe", 11)], 3, 11),
    WsCase("sql-in-method", [req("SUBSCRIBE; DROP TABLE users;--", 12)], 3, 12),
    WsCase("empty-params", [req("SUBSCRIBE", 13, params=[])], 4, 13),
    WsCase("malformed-stream", [req("SUBSCRIBE", 14, params=["btcusdt@depth"])], 4, 14),
    WsCase("nul-byte-in-stream", [req("SUBSCRIBE", 15, params=["btcusdt\x00@kline_1m"])], 5,
           15),
    WsCase("unknown-symbol", [req("SUBSCRIBE", 16, params=["dogeusdt@kline_1m"])], 5, 16),
    WsCase("sql-in-stream", [req("SUBSCRIBE", 17, params=["x' OR 1=1;--@signals"])], 5, 17),
    WsCase("unknown-timeframe", [req("SUBSCRIBE", 18, params=["btcusdt@kline_7m"])], 6, 18),
    WsCase("too-many-streams",
           [req("SUBSCRIBE", 19, params=streams(MAX_STREAMS + 1))], 7, 19),
    WsCase("message-too-large", [req(request_id=20, pad="x" * MAX_MESSAGE)], 8),
    WsCase("frame-above-64kib", [req(request_id=21, pad="x" * 70_000)], "close 1009"),
    # Ten a second with a burst of ten: the 11th of a burst is refused.
    WsCase("request-flood", [req(request_id=i) for i in range(11)], 9, answers=10),
    # Five violations within a minute close the connection.
    WsCase("subscription-flood", [req("SUBSCRIBE", i, params=streams(MAX_STREAMS + 1))
                                  for i in range(5)], "close 1008"),
]


@dataclass
class WsRun:
    api: ApiProcess
    redis_url: str
    ns: str
    pushes: int = 0


@pytest.fixture(scope="module")
def ws_run(redis_url: str, migrated_db: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WsRun]:
    ns = f"test-{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, database_url=migrated_db, symbols=SYMBOLS, api_namespace=ns,
        celery_queue_prefix=ns, ws_max_streams=MAX_STREAMS,
        ws_max_message_bytes=MAX_MESSAGE, ws_requests_per_s=10.0)
    seed(redis_url, migrated_db, ns)
    api = ApiProcess(settings, tmp_path_factory.mktemp("poison-ws") / "api.log").start()
    try:
        yield WsRun(api, redis_url, ns)
    finally:
        api.stop()
        delete_keys(redis_url, [redis_keys.namespace_pattern(ns),
                                *redis_keys.celery_queue_patterns(ns)])


def answer(ws: ClientConnection) -> Any:
    return orjson.loads(ws.recv(timeout=10))


def good_round_trip(run: WsRun, ws: ClientConnection) -> None:
    """Subscribe, then get an update published the way the stream stage publishes it."""
    ws.send(req("SUBSCRIBE", "good", params=[GOOD_STREAM]))
    assert answer(ws) == {"result": None, "id": "good"}
    run.pushes += 1
    c = candle("BTCUSDT", "1m", 1_800_000_000_000, 100.0 + run.pushes, closed=False)
    publish_live(run.redis_url, run.ns, c)
    pushed = answer(ws)
    assert pushed["stream"] == GOOD_STREAM and pushed["data"]["close"] == c.close


@pytest.mark.parametrize("case", WS, ids=[c.id for c in WS])
def test_bad_message_gets_its_error_or_close_and_the_next_request_is_served(
    ws_run: WsRun, case: WsCase
) -> None:
    with connect(ws_run.api.ws_url, max_size=None, open_timeout=10) as ws:
        for frame in case.frames:
            ws.send(frame, text=True) if case.invalid_text else ws.send(frame)
        if isinstance(case.outcome, int):
            got = [answer(ws) for _ in range(case.answers + 1)]
            assert all("result" in a for a in got[:-1]), got
            assert got[-1]["error"]["code"] == case.outcome, got[-1]
            assert got[-1]["error"]["msg"] and got[-1]["id"] == case.request_id, got[-1]
            record("ws", case.id, f'error {got[-1]["error"]["code"]}: {got[-1]["error"]["msg"]}')
            if case.answers:
                time.sleep(1.2)  # the token bucket refills
            good_round_trip(ws_run, ws)
        else:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = answer(ws)
                    assert "error" in msg, msg  # only errors may come before the close
            assert closed.value.rcvd is not None, "closed without a close frame"
            assert f"close {closed.value.rcvd.code}" == case.outcome, closed.value.rcvd
            record("ws", case.id, f"close {closed.value.rcvd.code} {closed.value.rcvd.reason!r}")
    assert ws_run.api.proc is not None and ws_run.api.proc.poll() is None
    if isinstance(case.outcome, str):
        with connect(ws_run.api.ws_url, open_timeout=10) as ws:
            good_round_trip(ws_run, ws)
