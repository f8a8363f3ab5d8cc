"""The dashboard page (`/`) in Debian's headless Chromium, against a real `alphaplus api`
process: history drawn from PostgreSQL and Redis as the workers leave them, live updates
published on the workers' channels, and recovery after the API restarts.

Set ALPHAPLUS_UPDATE_SCREENSHOT=1 to refresh docs/img/dashboard.png (it is written anyway
when missing); every run also leaves a screenshot in the test's tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from core import redis_keys
from core.candles import Candle
from core.db.connect import connect
from core.db.writer import insert_patterns, insert_signals, upsert_candles, upsert_indicators
from tests.api.seed import publish_live
from tests.api.server import ApiProcess
from workers.tasks.indicators import KeyOutput, advance

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "api" / "static"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
T0 = 1_736_935_200_000  # 2025-01-15 10:00 UTC
MINUTE = 60_000
N_BTC = 160  # closed candles; the forming one comes on top
N_ETH = 40
WAIT_MS = 15_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")

encode = msgspec.json.Encoder().encode


def make_candles(symbol: str, n: int, price: float, seed: int) -> list[Candle]:
    """`n` closed 1m candles and a forming one: a random walk with slow waves in its drift, so
    the EMAs cross and the bands widen and narrow as in a real market."""
    rng = random.Random(seed)
    out = []
    for i in range(n + 1):
        o = round(price, 2)
        c = round(o * (1 + 0.0005 * math.sin(i / 18) + rng.gauss(0, 0.0011)), 2)
        h = round(max(o, c) * (1 + abs(rng.gauss(0, 0.0005))), 2)
        low = round(min(o, c) * (1 - abs(rng.gauss(0, 0.0005))), 2)
        v = round(rng.lognormvariate(1.5, 0.6), 4)
        taker = round(v * rng.uniform(0.3, 0.7), 4)
        mid = (o + c) / 2
        t = T0 + i * MINUTE
        out.append(Candle(symbol, "1m", t, t + MINUTE - 1, o, h, low, c, v, v * mid,
                          int(v * 40) + 1, taker, taker * mid, closed=i < n))
        price = c
    return out


def store_like_workers(redis_url: str, database_url: str, ns: str,
                       candles: list[Candle]) -> KeyOutput:
    """Closed candles, their indicators, signals and patterns (computed by the workers' own
    code) into PostgreSQL and Redis, and the forming candle into its Redis key."""
    closed, forming = candles[:-1], candles[-1]
    symbol, tf = forming.symbol, forming.timeframe
    _, out = advance(None, closed)
    conn = connect(database_url)
    try:
        upsert_candles(conn, closed, run_id=ns)
        upsert_indicators(conn, out.indicators, run_id=ns)
        insert_signals(conn, out.signals, run_id=ns)
        insert_patterns(conn, out.patterns, run_id=ns)
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline()
        pipe.zadd(redis_keys.candle_window(ns, symbol, tf),
                  {encode(c): c.open_time for c in closed})
        pipe.set(redis_keys.candle(ns, symbol, tf), encode(forming))
        pipe.set(redis_keys.indicators(ns, symbol, tf), orjson.dumps(out.indicators[-1]))
        for kind, rows in (("signals", out.signals), ("patterns", out.patterns)):
            key = redis_keys.signals if kind == "signals" else redis_keys.patterns
            for row in rows:
                pipe.lpush(key(ns, symbol, tf), orjson.dumps(row))
        pipe.execute()
    finally:
        client.close()
    return out


def publish(redis_url: str, ns: str, kind: str, symbol: str, tf: str,
            row: dict[str, Any]) -> None:
    """A signal or indicator row on its channel, as workers/tasks/indicators.py does."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.publish(redis_keys.channel(ns, kind, symbol, tf), orjson.dumps(row))
    finally:
        client.close()


def replaced(c: Candle, **changes: Any) -> Candle:
    return msgspec.structs.replace(c, **changes)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        # launch() gives every browser a new temporary profile (user-data dir).
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class PageLog:
    """Everything the page complained about: console errors, uncaught exceptions, failed or
    refused requests."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"exception: {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(
            f"request failed: {req.url} {req.failure}"))
        page.on("response", self._response)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"console {msg.type}: {msg.text} ({msg.location})")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


def state(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate("JSON.parse(JSON.stringify(window.__dashboard))")
    return value


def wait_for(page: Page, condition: str, arg: Any = None) -> None:
    script = f"(arg) => {{ const d = window.__dashboard; return !!d && ({condition}); }}"
    page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


# Colours the chart draws with (api/static/chart.js), looked for in the canvases' pixels.
CHART_COLOURS = {"up candle": "#26a69a", "down candle": "#ef5350", "EMA 9": "#f0b90b",
                 "EMA 21": "#2196f3", "Bollinger": "#8e7cc3", "RSI": "#c678dd"}
COUNT_PIXELS = """(targets) => {
  const found = Object.fromEntries(Object.keys(targets).map((k) => [k, 0]));
  const colours = new Set();
  const rgb = Object.entries(targets).map(([k, hex]) =>
    [k, [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))]);
  for (const canvas of document.querySelectorAll('[data-testid="chart"] canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      for (const [k, [r, g, b]] of rgb) {
        if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) <= 12) {
          found[k] += 1;
        }
      }
    }
  }
  return { found, distinct: colours.size };
}"""


def save_screenshot(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    docs = REPO / "docs" / "img" / "dashboard.png"
    if os.environ.get("ALPHAPLUS_UPDATE_SCREENSHOT") == "1" or not docs.exists():
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_bytes(shot.read_bytes())


def test_vendored_chart_library_is_the_recorded_build() -> None:
    """The committed bundle is the npm build that package.json pins and NOTICE records."""
    bundle = STATIC / "vendor" / "lightweight-charts.standalone.production.js"
    notice = (STATIC / "vendor" / "NOTICE").read_text()
    pinned = json.loads((REPO / "api" / "dashboard" / "package.json").read_text())
    version = pinned["dependencies"]["lightweight-charts"]
    lock = json.loads((REPO / "api" / "dashboard" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/lightweight-charts"]["version"] == version
    assert f"v{version}" in notice and f"lightweight-charts@{version}" in notice
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() in notice
    assert f"Lightweight Charts\u2122 v{version}" in bundle.read_text()[:300]
    assert "Apache License" in (STATIC / "vendor" / "LICENSE").read_text()
    # The page loads only files served next to it: no CDN, no other host.
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


@needs_chromium
def test_dashboard_draws_history_and_follows_live_updates(
        live_api: ApiProcess, redis_url: str, namespace: str, migrated_db: str,
        page: Page, tmp_path: Path) -> None:
    btc = make_candles("BTCUSDT", N_BTC, 64_250.0, seed=7)
    eth = make_candles("ETHUSDT", N_ETH, 3_310.0, seed=11)
    out = store_like_workers(redis_url, migrated_db, namespace, btc)
    store_like_workers(redis_url, migrated_db, namespace, eth)
    assert out.signals and out.patterns, "the seeded market should produce signals and patterns"
    log = PageLog(page)

    page.goto(f"{live_api.url}/")
    wait_for(page, "d.ready")
    s = state(page)
    assert (s["symbol"], s["timeframe"], s["connection"]) == ("BTCUSDT", "1m", "live")
    assert s["bars"] == N_BTC + 1
    forming = btc[-1]
    assert s["lastBar"]["open_time"] == forming.open_time
    assert s["lastBar"]["close"] == forming.close and s["lastBar"]["closed"] is False
    assert page.get_by_test_id("candle-count").inner_text() == f"{N_BTC + 1} candles"
    assert page.get_by_test_id("error").is_hidden()

    # Signals and patterns, newest first, as the workers stored them.
    newest = sorted(out.signals, key=lambda r: r["time"], reverse=True)
    rows = page.locator('[data-testid="signal-list"] li.event')
    assert rows.count() == min(20, len(out.signals))
    assert rows.first.get_attribute("data-name") == newest[0]["name"]
    assert page.locator('[data-testid="pattern-list"] li.event').count() == min(
        20, len(out.patterns))

    # The canvases hold candles of both colours and every overlay, not a blank chart.
    pixels = page.evaluate(COUNT_PIXELS, CHART_COLOURS)
    assert pixels["distinct"] > 20, pixels
    assert all(n > 20 for n in pixels["found"].values()), pixels

    # A forming-candle update moves the last bar, and the legend shows its close.
    moved = replaced(forming, close=forming.close + 37.5, high=forming.high + 37.5)
    publish_live(redis_url, namespace, moved)
    wait_for(page, "d.lastBar.close === arg", moved.close)
    s = state(page)
    assert s["bars"] == N_BTC + 1 and s["lastBar"]["open_time"] == forming.open_time
    assert 0 <= s["latencyMs"] < 5_000
    assert f"{moved.close:.2f}" in page.get_by_test_id("legend").inner_text()
    assert re.fullmatch(r"latency \d+ ms", page.get_by_test_id("latency").inner_text())

    # An older candle never moves the chart back; the next candle is appended.
    before = s["messages"]
    publish_live(redis_url, namespace, replaced(btc[-5], close=1.0))
    following = replaced(moved, open_time=moved.open_time + MINUTE, open=moved.close,
                         low=moved.close - 20.0, close=moved.close - 12.0,
                         close_time=moved.close_time + MINUTE)
    publish_live(redis_url, namespace, following)
    wait_for(page, "d.bars === arg", N_BTC + 2)
    s = state(page)
    assert s["messages"] == before + 2
    assert s["lastBar"]["close"] == following.close
    assert s["lastBar"]["open_time"] == following.open_time

    # A live signal of this timeframe joins the list; one of another timeframe does not.
    signal = {"symbol": "BTCUSDT", "timeframe": "1m", "time": following.open_time,
              "name": "bollinger_breakout", "direction": "bullish", "strength": 0.8,
              "values": {"bb_upper": following.close - 1}}
    publish(redis_url, namespace, "signals", "BTCUSDT", "5m", {**signal, "timeframe": "5m",
                                                               "name": "golden_cross"})
    publish(redis_url, namespace, "signals", "BTCUSDT", "1m", signal)
    wait_for(page, "d.signals === arg", min(20, len(out.signals) + 1))
    assert rows.first.get_attribute("data-name") == "bollinger_breakout"
    # (160 candles are too few for the EMA 200 a golden cross needs: none in the history.)
    assert page.locator('[data-testid="signal-list"] li[data-name="golden_cross"]').count() == 0

    page.wait_for_timeout(300)  # let the last frame paint before the picture
    save_screenshot(page, tmp_path)

    # Switching symbol: ETH's history, and only ETH's updates from then on.
    page.get_by_test_id("symbol-select").select_option("ETHUSDT")
    wait_for(page, "d.symbol === 'ETHUSDT' && d.ready")
    s = state(page)
    assert s["bars"] == N_ETH + 1 and s["lastBar"]["close"] == eth[-1].close
    assert "symbol=ETHUSDT" in page.url
    publish_live(redis_url, namespace, replaced(following, close=99_999.0))
    eth_moved = replaced(eth[-1], close=eth[-1].close + 1.25, high=eth[-1].high + 1.25)
    publish_live(redis_url, namespace, eth_moved)
    wait_for(page, "d.lastBar.close === arg", eth_moved.close)
    assert state(page)["bars"] == N_ETH + 1

    assert log.problems == []


@needs_chromium
def test_dashboard_reports_a_lost_api_and_recovers(
        live_api: ApiProcess, redis_url: str, namespace: str, migrated_db: str,
        page: Page) -> None:
    btc = make_candles("BTCUSDT", 30, 64_250.0, seed=5)
    store_like_workers(redis_url, migrated_db, namespace, btc)
    page.goto(f"{live_api.url}/?symbol=BTCUSDT&timeframe=1m")
    wait_for(page, "d.ready && d.bars === arg", 31)

    live_api.stop()
    wait_for(page, "d.connection === 'reconnecting'")
    assert "reconnecting" in page.get_by_test_id("connection").inner_text()
    # Asking for another timeframe while the API is away says so in the page.
    page.get_by_test_id("timeframe-select").select_option("5m")
    error = page.get_by_test_id("error")
    error.wait_for(state="visible", timeout=WAIT_MS)
    assert "API unreachable" in error.inner_text()
    assert not state(page)["ready"]

    live_api.start()
    wait_for(page, "d.ready && d.timeframe === '5m' && d.connection === 'live'")
    assert error.is_hidden()
    assert state(page)["bars"] == 0  # no 5m candles were stored
    # And live data flows again, on the new subscription.
    five = Candle("BTCUSDT", "5m", T0, T0 + 5 * MINUTE - 1, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5,
                  3, 1.0, 1.5)
    publish_live(redis_url, namespace, five)
    wait_for(page, "d.bars === 1 && d.lastBar.close === 1.5")
