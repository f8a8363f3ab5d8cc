from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from core.exceptions import ConfigError
from core.kafka import read_topic
from core.models import Trade
from core.serde import decode_trade
from core.settings import Settings
from core.validation import check_decimal, split_timestamp
from producers.ingest import Ingestor
from producers.run import produce
from producers.sources import synthetic
from producers.sources.synthetic import SyntheticSource, TradeGenerator
from tests.producers.counting_sink import CountingSink

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


def without_time(trade: Trade) -> dict[str, Any]:
    return {k: v for k, v in trade.items() if k not in ("ts", "recv_ts")}


def read_trades(settings: Settings) -> list[Trade]:
    out = []
    for msg in read_topic(settings.kafka_bootstrap, settings.topic_trades):
        value = msg.value()
        assert value is not None
        trade = decode_trade(value)
        assert msg.key() == trade["symbol"].encode()
        assert msg.timestamp()[1] == trade["ts"]
        out.append(trade)
    return out


def test_valid_contiguous_and_deterministic_through_kafka(settings: Settings) -> None:
    settings = settings.replace(symbols=SYMBOLS)
    source = SyntheticSource(SYMBOLS, seed=7, limit=6_000)
    stats = produce(settings, source, threading.Event())

    got = read_trades(settings)
    assert stats.trades == len(got) == 6_000
    assert stats.dead_letters == stats.gaps == stats.duplicates == 0
    assert list(read_topic(settings.kafka_bootstrap, settings.topic_deadletter)) == []
    assert list(read_topic(settings.kafka_bootstrap, settings.topic_gaps)) == []

    by_symbol: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}
    for trade in got:
        by_symbol[trade["symbol"]].append(trade)
        # The same checks the live path applies to exchange input.
        check_decimal(trade["price"], "bad_price")
        check_decimal(trade["qty"], "bad_qty")
        split_timestamp(trade["ts"])
        assert trade["market"] == "spot" and trade["recv_ts"] == trade["ts"]
        assert trade["price"].count(".") == 1 and len(trade["price"].split(".")[1]) == 2
    for symbol, trades in by_symbol.items():
        assert len(trades) > 1_000, symbol
        assert [t["trade_id"] for t in trades] == list(range(1, len(trades) + 1))
        stamps = [t["ts"] for t in trades]
        assert stamps == sorted(stamps)
    first_prices = {s: float(t[0]["price"]) for s, t in by_symbol.items()}
    assert 50_000 < first_prices["BTCUSDT"] < 70_000
    assert 2_000 < first_prices["ETHUSDT"] < 3_000
    assert 50 < first_prices["XRPUSDT"] < 150

    # Kafka keeps order per symbol only, so compare per symbol with a fresh run of the seed.
    gen = TradeGenerator(SYMBOLS, seed=7, market="spot")
    again: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
    for _ in range(6_000):
        trade = gen.next()
        again[trade["symbol"]].append(without_time(trade))
    assert {s: [without_time(t) for t in ts] for s, ts in by_symbol.items()} == again


def test_same_seed_same_sequence_other_seed_differs() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        gen = TradeGenerator(["BTCUSDT", "ETHUSDT"], seed=seed, market="usdm")
        return [without_time(gen.next()) for _ in range(2_000)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert {t["market"] for t in run(1)} == {"usdm"}
    assert {t["buyer_maker"] for t in run(1)} == {True, False}


def test_rate_is_respected(settings: Settings) -> None:
    source = SyntheticSource(["BTCUSDT"], rate=1_000, limit=2_000)
    started = time.monotonic()
    stats = produce(settings, source, threading.Event())
    elapsed = time.monotonic() - started

    assert stats.trades == 2_000
    assert 1.8 < elapsed < 4.0
    stamps = [t["ts"] for t in read_trades(settings)]
    # Trade times are the wall clock, so they show the pacing: ~2 s from first to last.
    assert 1_800 <= stamps[-1] - stamps[0] <= 2_600


@pytest.mark.parametrize("start", [100.0, 0.5])
def test_prices_stay_positive_and_bounded(monkeypatch: pytest.MonkeyPatch, start: float) -> None:
    # A wild walk drives prices to both bounds quickly.
    monkeypatch.setattr(synthetic, "STEP_SIGMA", 0.5)
    monkeypatch.setitem(synthetic.START_PRICES, "ABCUSDT", start)
    gen = TradeGenerator(["ABCUSDT"], seed=3, market="spot")
    prices = [gen.next()["price"] for _ in range(20_000)]
    for price in prices:
        check_decimal(price, "bad_price")
    values = {float(p) for p in prices}
    assert min(values) == max(0.01, round(start / 1000, 2))
    assert max(values) == start * 1000


@pytest.mark.parametrize("rate", [None, 50.0])
def test_runs_until_stopped(rate: float | None) -> None:
    sink = CountingSink()
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    SyntheticSource(["BTCUSDT"], rate=rate).run(Ingestor(sink, "spot", ["BTCUSDT"], "x"), stop)
    assert time.monotonic() - started < 1.0
    assert sink.trades > (10 if rate else 1_000)


def test_refuses_bad_parameters_and_unconfigured_symbols() -> None:
    with pytest.raises(ConfigError):
        SyntheticSource([])
    with pytest.raises(ConfigError):
        SyntheticSource(["BTCUSDT"], rate=0)
    with pytest.raises(ConfigError):
        SyntheticSource(["BTCUSDT"], market="coinm")
    with pytest.raises(ConfigError, match="SOLUSDT"):
        SyntheticSource(["SOLUSDT"], limit=1).run(
            Ingestor(CountingSink(), "spot", ["BTCUSDT"], "synthetic"), threading.Event())
