"""The live Binance source against a local fake exchange playing recorded frames, into Kafka."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from core.kafka import ensure_topics, read_topic
from core.serde import decode_deadletter, decode_gap, decode_trade
from core.settings import Settings
from producers.ingest import Ingestor
from producers.run import make_sink
from producers.sources.binance_ws import BinanceWebSocketSource, combined_urls, stream_names
from producers.sources.ws_switchover import Backoff, is_shutdown_event
from tests.producers.adversarial import frames
from tests.producers.fake_binance import (
    TRADE_STREAMS,
    FakeBinance,
    Plan,
    TradeRow,
    recorded_frames,
    trade_rows,
)


def kafka_rows(settings: Settings) -> dict[str, list[TradeRow]]:
    out: dict[str, list[TradeRow]] = defaultdict(list)
    for msg in read_topic(settings.kafka_bootstrap, settings.topic_trades):
        t = decode_trade(msg.value())
        assert msg.key() == t["symbol"].encode()
        out[t["symbol"]].append((t["trade_id"], t["price"], t["qty"], t["ts"]))
    return dict(out)


def gap_records(settings: Settings) -> list[tuple[str, int, int]]:
    gaps = [decode_gap(m.value()) for m in read_topic(settings.kafka_bootstrap,
                                                       settings.topic_gaps)]
    return sorted((g["symbol"], g["first_missing"], g["last_missing"]) for g in gaps)


def reconnects(reason: str) -> float:
    return REGISTRY.get_sample_value("alphaplus_ws_reconnects_total", {"reason": reason}) or 0.0


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def make_source(fake: FakeBinance, **options: Any) -> BinanceWebSocketSource:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    return BinanceWebSocketSource(["BTCUSDT", "ETHUSDT"], base_url=fake.url, **options)


@contextmanager
def running(settings: Settings, source: BinanceWebSocketSource) -> Iterator[Ingestor]:
    """The source feeding a Kafka-backed Ingestor in a thread; stopped and flushed on exit."""
    ingest = Ingestor(make_sink(settings), settings.market, settings.symbols, source.name)
    stop = threading.Event()
    failures: list[BaseException] = []

    def target() -> None:
        try:
            source.run(ingest, stop)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, name="source")
    thread.start()
    try:
        yield ingest
    finally:
        stop.set()
        thread.join(15)
        ingest.close()
    assert not thread.is_alive(), "source did not stop"
    if failures:
        raise failures[0]


def wait_for_last_trades(ingest: Ingestor, want: dict[str, list[TradeRow]]) -> None:
    last = {symbol: rows[-1][0] for symbol, rows in want.items()}
    wait_until(lambda: all(ingest.tracker.last_id.get(s) == i for s, i in last.items()))


def test_urls_split_streams_and_ask_for_microseconds() -> None:
    streams = stream_names(["BTCUSDT", "ETHUSDT", "BNBUSDT"], ["trade"])
    assert streams == ["btcusdt@trade", "ethusdt@trade", "bnbusdt@trade"]
    urls = combined_urls("wss://x.test:9443/", streams, per_connection=2, microseconds=True)
    assert urls == [
        ("wss://x.test:9443/stream?streams=btcusdt@trade/ethusdt@trade&timeUnit=MICROSECOND",
         ("btcusdt@trade", "ethusdt@trade")),
        ("wss://x.test:9443/stream?streams=bnbusdt@trade&timeUnit=MICROSECOND",
         ("bnbusdt@trade",)),
    ]
    spot = Settings.from_env(environ={}, env_file=None).replace(
        binance_microseconds=True, binance_stream="aggTrade")
    source = BinanceWebSocketSource.from_settings(spot)
    assert source.connections == [(
        "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
        "&timeUnit=MICROSECOND", ("btcusdt@aggTrade", "ethusdt@aggTrade"))]
    usdm = BinanceWebSocketSource.from_settings(spot.replace(market="usdm"))
    assert usdm.connections[0][0].startswith("wss://fstream.binance.com/stream?streams=")
    assert "timeUnit" not in usdm.connections[0][0]


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff(1.0, 8.0)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= min(8.0, 2.0**attempt) for attempt, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # full jitter: no two waits alike
    assert max(delays[10:]) > 4.0  # later waits spread up to the cap
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() <= 1.0


def test_shutdown_event_recognised_in_every_wrapping() -> None:
    assert is_shutdown_event(b'{"e":"serverShutdown","E":1}')
    assert is_shutdown_event(b'{"event":{"e":"serverShutdown","E":1}}')
    assert not is_shutdown_event(b'{"e":"serverShutdown"')
    assert not is_shutdown_event(b'{"stream":"x@trade","data":{"e":"trade","s":"serverShutdown"}}')


def test_forced_reconnects_with_overlap_lose_and_double_nothing(settings: Settings) -> None:
    overlap = 15
    plans = [
        Plan(disconnect_after=300, close_code=1011),
        Plan(disconnect_after=300, abort=True),
        Plan(disconnect_after=300, close_code=1001),
    ]
    before = {r: reconnects(r) for r in ("dropped", "closed")}
    with FakeBinance(recorded_frames(), plans=plans, overlap=overlap) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        with running(settings, make_source(fake)) as ingest:
            wait_for_last_trades(ingest, want)
        assert len(fake.connections) == 4
    assert kafka_rows(settings) == want
    assert ingest.stats.duplicates == 3 * overlap
    assert ingest.stats.gaps == 0 and gap_records(settings) == []
    assert reconnects("dropped") - before["dropped"] == 2  # code 1011 and the TCP drop
    assert reconnects("closed") - before["closed"] == 1  # code 1001


def test_server_shutdown_switches_over_without_loss(settings: Settings) -> None:
    before = reconnects("server_shutdown")
    # The old connection would keep streaming for good: only the client may close it.
    plans = [Plan(shutdown_after=400, shutdown_grace=10**9)]
    with FakeBinance(recorded_frames(), plans=plans, overlap=10) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        with running(settings, make_source(fake)) as ingest:
            wait_for_last_trades(ingest, want)
        fake.wait_all_closed()
        assert [c.closed_by for c in fake.connections] == ["client", "client"]
    assert kafka_rows(settings) == want
    assert ingest.stats.duplicates > 0
    assert ingest.stats.gaps == 0 and gap_records(settings) == []
    assert reconnects("server_shutdown") - before == 1


def test_switch_over_keeps_the_old_connection_while_a_new_one_fails(
    settings: Settings,
) -> None:
    # The first switch-over attempt gets HTTP 503; the second connects and is closed at once,
    # before it delivered anything; the third takes over.
    plans = [Plan(shutdown_after=300, shutdown_grace=10**9), Plan(disconnect_after=0)]
    with FakeBinance(recorded_frames(), plans=plans, overlap=10, refuse={1}) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        with running(settings, make_source(fake)) as ingest:
            wait_for_last_trades(ingest, want)
        fake.wait_all_closed()
        assert fake.handshakes == 4
        assert [c.closed_by for c in fake.connections] == ["client", "server", "client"]
    assert kafka_rows(settings) == want
    assert ingest.stats.gaps == 0 and gap_records(settings) == []


@pytest.mark.parametrize("grace", [10**9, 20], ids=["old-catches-up", "old-ends-first"])
def test_switch_over_to_a_connection_that_starts_ahead(settings: Settings, grace: int) -> None:
    # The new connection starts 100 frames past the newest frame the old one has sent. The
    # switch waits for the old one to deliver up to there; if the old one ends first, the
    # trades in between are lost and reported as gaps.
    plans = [Plan(shutdown_after=300, shutdown_grace=grace), Plan(skip=100)]
    with FakeBinance(recorded_frames(), plans=plans) as fake:
        frames = fake.frames_for(TRADE_STREAMS)
        with running(settings, make_source(fake)) as ingest:
            wait_until(lambda: len(fake.connections) == 2)
            wait_for_last_trades(ingest, trade_rows(frames))
        old, new = fake.connections
        lost = frames[old.next:new.start]
    if grace > 300:
        assert lost == []
    else:
        assert 80 <= len(lost) <= 100
    assert gap_records(settings) == sorted(
        (symbol, rows[0][0], rows[-1][0]) for symbol, rows in trade_rows(lost).items())
    assert kafka_rows(settings) == trade_rows(frames[:old.next] + frames[new.start:]
                                              if lost else frames)


def test_stop_does_not_wait_for_a_hanging_handshake(settings: Settings) -> None:
    # A listening socket nobody serves: TCP connects, the WebSocket handshake never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        source = BinanceWebSocketSource(["BTCUSDT"], base_url=f"ws://127.0.0.1:{port}",
                                        open_timeout=30)
        with running(settings, source):
            time.sleep(0.2)
            stopping = time.monotonic()
    assert time.monotonic() - stopping < 2


def test_age_limit_switches_over_before_the_server_cuts(settings: Settings) -> None:
    before = reconnects("max_age")
    with FakeBinance(recorded_frames(), overlap=10, fps=2000, max_age=30) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        with running(settings, make_source(fake, max_connection_age=0.35)) as ingest:
            wait_for_last_trades(ingest, want)
        fake.wait_all_closed()
        switched = fake.connections[:-1]
        assert len(switched) >= 2
        assert all(c.closed_by == "client" for c in switched)
    assert kafka_rows(settings) == want
    assert ingest.stats.duplicates > 0
    assert ingest.stats.gaps == 0 and gap_records(settings) == []
    assert reconnects("max_age") - before >= len(switched)


def test_trades_lost_while_disconnected_become_a_gap_record(settings: Settings) -> None:
    plans = [Plan(disconnect_after=500, close_code=1001), Plan(skip=40)]
    with FakeBinance(recorded_frames(), plans=plans) as fake:
        frames = fake.frames_for(TRADE_STREAMS)
        with running(settings, make_source(fake)) as ingest:
            wait_until(lambda: len(fake.connections) == 2)
            first, second = fake.connections
            lost = frames[first.next:second.start]
            kept = frames[:first.next] + frames[second.start:]
            wait_for_last_trades(ingest, trade_rows(kept))
    assert len(lost) == 40
    missing = trade_rows(lost)
    assert gap_records(settings) == sorted(
        (symbol, rows[0][0], rows[-1][0]) for symbol, rows in missing.items())
    assert kafka_rows(settings) == trade_rows(kept)
    assert ingest.stats.missing == 40 and ingest.stats.duplicates == 0


def test_streams_beyond_the_per_connection_limit_use_more_connections(
    settings: Settings,
) -> None:
    with FakeBinance(recorded_frames()) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        source = make_source(fake, max_streams_per_connection=1)
        with running(settings, source) as ingest:
            wait_for_last_trades(ingest, want)
        assert sorted(c.streams for c in fake.connections) == [
            ("btcusdt@trade",), ("ethusdt@trade",)]
    assert kafka_rows(settings) == want
    assert ingest.stats.gaps == 0 and ingest.stats.duplicates == 0


def test_server_pings_are_answered(settings: Settings) -> None:
    with FakeBinance(recorded_frames(), fps=500) as fake, running(settings, make_source(fake)):
        wait_until(lambda: len(fake.connections) == 1)
        assert fake.ping(timeout=2.0) == 1
        assert fake.connections[0].pongs == 1


def test_bad_frames_are_dead_lettered_while_trades_flow(settings: Settings) -> None:
    trade = orjson.loads(recorded_frames(1)[-1][1])
    trade["data"]["p"] = "-61837.63"
    bad_price = orjson.dumps(trade).decode()
    injected: list[tuple[int, str | bytes]] = [
        (50, "{not json"),
        (100, bad_price),
        (150, '{"e":"serverShutdown"'),  # looks like the event, is not one
        (200, b"\xff\xfe binary garbage"),
    ]
    with FakeBinance(recorded_frames(), plans=[Plan(inject=injected)]) as fake:
        want = trade_rows(fake.frames_for(TRADE_STREAMS))
        with running(settings, make_source(fake)) as ingest:
            wait_for_last_trades(ingest, want)
            wait_until(lambda: ingest.stats.dead_letters == 4)
        assert len(fake.connections) == 1
    letters = [decode_deadletter(m.value())
               for m in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    assert [(d["reason"], d["source"]) for d in letters] == [
        ("bad_json", "binance-ws"), ("bad_price", "binance-ws"), ("bad_json", "binance-ws"),
        ("bad_encoding", "binance-ws")]
    assert [d["raw"] for d in letters[:3]] == ["{not json", bad_price, '{"e":"serverShutdown"']
    assert kafka_rows(settings) == want


@hypothesis_settings(max_examples=4, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
@given(bad=st.lists(frames, min_size=20, max_size=40))
def test_no_frame_stops_or_drops_the_live_connection(kafka_bootstrap: str,
                                                     bad: list[bytes | str]) -> None:
    """Adversarial frames among the recorded ones, on one live connection: each is handled
    (dead-lettered, skipped, or a sane trade), every recorded trade arrives once, and the
    connection is never dropped."""
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=kafka_bootstrap, topic_trades=f"test.trades.{suffix}",
        topic_deadletter=f"test.deadletter.{suffix}", topic_gaps=f"test.gaps.{suffix}")
    ensure_topics(kafka_bootstrap, [settings.topic_trades, settings.topic_deadletter,
                                    settings.topic_gaps], 3)
    injected: list[tuple[int, str | bytes]] = [(30 + 7 * i, raw) for i, raw in enumerate(bad)]
    with FakeBinance(recorded_frames(600), plans=[Plan(inject=injected)]) as fake:
        served = fake.frames_for(TRADE_STREAMS)
        want = trade_rows(served)
        with running(settings, make_source(fake)) as ingest:
            wait_for_last_trades(ingest, want)
            stats = ingest.stats
            # Every frame served is accounted for, once: sent, skipped, rejected or a
            # duplicate (a variant that stayed a valid trade, of an old trade id).
            wait_until(lambda: stats.trades + stats.skipped + stats.dead_letters
                       + stats.duplicates == len(served) + len(bad))
        assert len(fake.connections) == 1, "the connection was dropped"
    got = kafka_rows(settings)
    recorded_ids = {symbol: {row[0] for row in rows} for symbol, rows in want.items()}
    assert {symbol: [row for row in rows if row[0] in recorded_ids[symbol]]
            for symbol, rows in got.items()} == want


def test_source_retries_while_nothing_answers_and_stops_promptly(settings: Settings) -> None:
    # Nothing listens on port 9 here: the source keeps retrying until stopped.
    source = BinanceWebSocketSource(["BTCUSDT"], base_url="ws://127.0.0.1:9",
                                    backoff_base=0.01, backoff_cap=0.02)
    before = reconnects("connect_failed")
    started = time.monotonic()
    with running(settings, source):
        wait_until(lambda: reconnects("connect_failed") - before >= 3, timeout=5)
    assert time.monotonic() - started < 5
