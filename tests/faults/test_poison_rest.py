"""Poison requests to a real `alphaplus api` process (uvicorn) with data in place. Every bad
request must get a 4xx whose body says what is wrong (docs/API.md: 400 for a wrong parameter,
naming what is allowed; 422 for a wrong type or an out-of-bounds value; 401/403 for admin
without the token) — never a 5xx — and the same process must answer a good request right after
it with the seeded data.

Requests are written as raw HTTP/1.1 bytes on a socket, so that inputs no HTTP client would
send (invalid UTF-8 in the path, a NUL byte, a truncated body) are part of the corpus.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from core import redis_keys
from core.settings import Settings
from infra.stack.redis import delete_keys
from tests.api.conftest import SYMBOLS
from tests.api.seed import Seeded, seed
from tests.api.server import ApiProcess
from tests.faults.poison_corpus import record

TOKEN = "poison-token"


@dataclass(frozen=True)
class Req:
    id: str
    method: str
    target: str  # path and query, already percent-encoded where HTTP needs it
    status: int
    detail: str  # a piece of the `detail` message
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


AUTH = (("Authorization", f"Bearer {TOKEN}"),)
JSON_AUTH = (*AUTH, ("Content-Type", "application/json"))
DATA = "/api/market/data?symbol=BTCUSDT&timeframe=1m"
REST: list[Req] = [
    Req("unknown-symbol", "GET", "/api/market/data?symbol=DOGEUSDT", 400,
        "unknown symbol 'DOGEUSDT': this server has BTCUSDT, ETHUSDT"),
    Req("sql-in-symbol", "GET", "/api/market/data?symbol=BTCUSDT%27%20OR%20%271%27%3D%271", 400,
        "unknown symbol"),
    Req("sql-in-path", "GET", "/api/real-time/BTCUSDT%27%3B%20DROP%20TABLE%20candles--/1m", 400,
        "unknown symbol"),
    Req("nul-byte-in-symbol", "GET", "/api/market/data?symbol=BTC%00USDT", 400,
        "unknown symbol"),
    Req("invalid-utf8-in-query", "GET", "/api/market/data?symbol=%FF%FE", 400,
        "unknown symbol"),
    Req("invalid-utf8-in-path", "GET", "/api/real-time/%FF%FE/1m", 400, "unknown symbol"),
    Req("unknown-timeframe", "GET", "/api/market/data?symbol=BTCUSDT&timeframe=7m", 400,
        "unknown timeframe '7m': this server has"),
    Req("missing-symbol", "GET", "/api/market/data", 422, "symbol"),
    Req("limit-zero", "GET", DATA + "&limit=0", 422, "greater than or equal to 1"),
    Req("limit-negative", "GET", DATA + "&limit=-5", 422, "greater than or equal to 1"),
    Req("limit-too-large", "GET", DATA + "&limit=1001", 422, "less than or equal to 1000"),
    Req("limit-2pow70", "GET", DATA + f"&limit={2**70}", 422, "less than or equal to 1000"),
    Req("limit-1e400", "GET", DATA + "&limit=1e400", 422, "valid integer"),
    Req("limit-nan", "GET", DATA + "&limit=NaN", 422, "valid integer"),
    Req("limit-text", "GET", DATA + "&limit=abc", 422, "valid integer"),
    Req("start-negative", "GET", DATA + "&start=-1", 400, "out of range"),
    Req("start-far-future", "GET", DATA + "&start=99999999999999999", 400, "out of range"),
    Req("start-2pow70", "GET", DATA + f"&start={2**70}", 400, "out of range"),
    Req("start-nan", "GET", DATA + "&start=NaN", 400, "neither epoch milliseconds nor"),
    Req("start-infinity", "GET", DATA + "&start=Infinity", 400, "neither epoch milliseconds"),
    Req("start-year-9999", "GET", DATA + "&start=9999-12-31T23:59:59Z", 400, "out of range"),
    Req("start-after-end", "GET", DATA + "&start=1700000100000&end=1700000000000", 400,
        "is after end"),
    Req("since-sql", "GET", "/api/signals?symbol=BTCUSDT&since=1%3B%20DROP%20TABLE%20signals",
        400, "neither epoch milliseconds"),
    Req("oversized-query", "GET", DATA + "&start=" + "9" * 6000, 400, "out of range"),
    Req("start-superscript-digit", "GET", DATA + "&start=%C2%B2", 400,
        "neither epoch milliseconds"),
    Req("backtest-id-sql", "GET", "/api/backtests/1%27%20OR%201%3D1--", 400, "is not an id"),
    Req("replay-id-nul", "GET", "/api/replays/run%00x", 400, "is not an id"),
    Req("admin-no-token", "POST", "/api/cache/clear", 401, "token", b"{}",
        (("Content-Type", "application/json"),)),
    Req("admin-wrong-token", "POST", "/api/cache/clear", 401, "token", b"{}",
        (("Authorization", "Bearer wrong"), ("Content-Type", "application/json"))),
    Req("body-invalid-json", "POST", "/api/cache/clear", 422, "JSON decode error",
        b'{"symbol": "BTC', JSON_AUTH),
    Req("body-invalid-utf8", "POST", "/api/cache/clear", 400,
        "There was an error parsing the body", b'{"symbol": "\xff\xfe"}', JSON_AUTH),
    Req("body-json-array", "POST", "/api/cache/clear", 422, "valid dictionary", b"[1,2,3]",
        JSON_AUTH),
    Req("body-deep-nesting", "POST", "/api/cache/clear", 400,
        "There was an error parsing the body",
        b'{"symbol":' + b"[" * 5000 + b"]" * 5000 + b"}", JSON_AUTH),
    Req("body-wrong-type", "POST", "/api/cache/clear", 422, "valid string", b'{"symbol": 5}',
        JSON_AUTH),
    Req("body-unknown-symbol", "POST", "/api/cache/clear", 400, "unknown symbol",
        b'{"symbol": "DOGEUSDT"}', JSON_AUTH),
    Req("body-nan-and-huge-numbers", "POST", "/api/cache/clear", 422, "",
        b'{"symbol": NaN, "timeframe": 1e400}', JSON_AUTH),
    Req("body-duplicate-keys", "POST", "/api/cache/clear", 400, "unknown symbol",
        b'{"symbol": "BTCUSDT", "symbol": "XRPUSDT"}', JSON_AUTH),
    Req("body-pattern-too-long", "POST", "/api/cache/clear", 422, "at most 200 characters",
        orjson.dumps({"pattern": "*" * 201}), JSON_AUTH),
    Req("body-1mb", "POST", "/api/cache/clear", 422, "",
        orjson.dumps({"pattern": "x" * 1_000_000}), JSON_AUTH),
    Req("replay-bad-body", "POST", "/api/replays", 422, "",
        b'{"from": NaN, "to": 1e400, "speed": -1}', JSON_AUTH),
    Req("unknown-path", "GET", "/api/../../etc/passwd", 404, "Not Found"),
    Req("wrong-method", "DELETE", "/api/health", 405, "Method Not Allowed"),
]


@dataclass
class Answer:
    status: int
    body: bytes


def send(port: int, req: Req) -> Answer:
    """One request on its own connection, as raw bytes; the status line and body back."""
    head = [f"{req.method} {req.target} HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Connection: close"]
    head += [f"{k}: {v}" for k, v in req.headers]
    if req.body is not None:
        head.append(f"Content-Length: {len(req.body)}")
    # latin-1 carries the %-escapes and any raw byte of the target unchanged.
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (req.body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1])
    header, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in header.lower():
        body = dechunk(body)
    return Answer(status, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


@dataclass
class RestRun:
    api: ApiProcess
    seeded: Seeded


@pytest.fixture(scope="module")
def rest_run(redis_url: str, migrated_db: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RestRun]:
    ns = f"test-{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(environ={}, env_file=None).replace(
        redis_url=redis_url, database_url=migrated_db, symbols=SYMBOLS, api_namespace=ns,
        celery_queue_prefix=ns, api_token=TOKEN)
    seeded = seed(redis_url, migrated_db, ns)
    api = ApiProcess(settings, tmp_path_factory.mktemp("poison-rest") / "api.log").start()
    try:
        yield RestRun(api, seeded)
    finally:
        api.stop()
        delete_keys(redis_url, [redis_keys.namespace_pattern(ns),
                                *redis_keys.celery_queue_patterns(ns)])


@pytest.mark.parametrize("req", REST, ids=[r.id for r in REST])
def test_bad_request_gets_its_4xx_and_the_next_request_is_served(rest_run: RestRun,
                                                                 req: Req) -> None:
    api = rest_run.api
    answer = send(api.port, req)
    assert answer.status == req.status, (answer.status, answer.body[:500])
    detail = orjson.loads(answer.body)["detail"]
    record("rest", req.id, f"{answer.status} {str(detail)[:160]}")
    assert detail and req.detail in str(detail), detail
    assert api.proc is not None and api.proc.poll() is None, api.log()[-3000:]
    good = send(api.port, Req("good", "GET", DATA + "&limit=5", 200, ""))
    assert good.status == 200, good.body[:500]
    candles = orjson.loads(good.body)["candles"]
    want = [c.open_time for c in rest_run.seeded.closed[-4:]] + [
        rest_run.seeded.forming.open_time]
    assert [c["open_time"] for c in candles] == want
