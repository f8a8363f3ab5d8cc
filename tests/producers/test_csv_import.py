"""The data.binance.vision importer, end to end into the embedded broker.

Files are generated here in every layout Binance publishes (spot/USD-M, trades/aggTrades, with
and without a header row, ms/µs timestamps, csv/zip); expected trades are built from the same
rows by an independent reading of the format.
"""

from __future__ import annotations

import random
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.exceptions import ConfigError
from core.kafka import read_topic
from core.models import DeadLetter, Trade, TradeGap
from core.serde import decode_deadletter, decode_gap, decode_trade, raw_bytes
from core.settings import Settings
from producers.ingest import Ingestor
from producers.run import produce
from producers.sources.csv_import import CsvSource, parse_file_name
from tests.producers.counting_sink import CountingSink

MS_2024 = 1_723_075_200_000  # 2024-08-08
MS_2024_END = 1_735_689_000_000  # 2024-12-31 23:50
US_2025 = 1_735_776_000_000_000  # 2025-01-02, µs (spot files from 2025 on)
HEADERS = {
    ("trades", "spot"): "id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch",
    ("trades", "usdm"): "id,price,qty,quote_qty,time,is_buyer_maker",
    ("aggTrades", "spot"): "agg_trade_id,price,quantity,first_trade_id,last_trade_id,"
                           "transact_time,is_buyer_maker,is_best_match",
    ("aggTrades", "usdm"): "agg_trade_id,price,quantity,first_trade_id,last_trade_id,"
                           "transact_time,is_buyer_maker",
}


@dataclass(frozen=True)
class Layout:
    market: str
    kind: str
    unit: str  # "ms", "us" or "mixed" (ms rows, then µs rows: a spot file across 2025-01-01)
    header: bool
    container: str  # "csv" or "zip"
    newline: str = "\n"


def make_rows(layout: Layout, n: int, first_id: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    next_trade = first_id * 3
    for i in range(n):
        price = f"{60_000 + rng.randrange(-500_000, 500_000) / 100:.2f}"
        qty = f"{rng.randrange(1, 10**8) / 1e8:.8f}"
        us = layout.unit == "us" or (layout.unit == "mixed" and i >= n // 2)
        ts = str(US_2025 + i * 7_001) if us else str(
            (MS_2024_END if layout.unit == "mixed" else MS_2024) + i * 7)
        maker = rng.choice(["True", "False"] if layout.market == "spot" else ["true", "false"])
        if layout.kind == "trades":
            row = [str(first_id + i), price, qty, "123.45", ts, maker]
        else:
            span = rng.randrange(1, 4)
            row = [str(first_id + i), price, qty, str(next_trade), str(next_trade + span - 1),
                   ts, maker]
            next_trade += span
        if layout.market == "spot":
            row.append("True")
        rows.append(row)
    return rows


def expected_trade(layout: Layout, symbol: str, row: list[str]) -> dict[str, Any]:
    agg = layout.kind == "aggTrades"
    raw_ts = int(row[5] if agg else row[4])
    ts = raw_ts // 1000 if len(row[5] if agg else row[4]) == 16 else raw_ts
    trade: dict[str, Any] = {
        "v": 1, "exchange": "binance", "market": layout.market, "symbol": symbol,
        "trade_id": int(row[0]), "price": row[1], "qty": row[2], "ts": ts,
        "buyer_maker": (row[6] if agg else row[5]).lower() == "true", "recv_ts": ts,
    }
    if ts != raw_ts:
        trade["ts_us"] = raw_ts
    if agg:
        trade["first_trade_id"] = int(row[3])
        trade["last_trade_id"] = int(row[4])
    return trade


def write_file(folder: Path, name: str, lines: list[bytes], container: str = "csv",
               newline: bytes = b"\n") -> Path:
    body = b"".join(line + newline for line in lines)
    if container == "csv":
        path = folder / f"{name}.csv"
        path.write_bytes(body)
    else:
        path = folder / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{name}.csv", body)
    return path


def read_back(settings: Settings) -> tuple[dict[str, list[Trade]], list[DeadLetter],
                                           list[TradeGap]]:
    trades: dict[str, list[Trade]] = {}
    for msg in read_topic(settings.kafka_bootstrap, settings.topic_trades):
        trade = decode_trade(msg.value())
        assert msg.key() == trade["symbol"].encode()
        assert msg.timestamp()[1] == trade["ts"]
        trades.setdefault(trade["symbol"], []).append(trade)
    letters = [decode_deadletter(m.value())
               for m in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    gaps = [decode_gap(m.value())
            for m in read_topic(settings.kafka_bootstrap, settings.topic_gaps)]
    return trades, letters, gaps


LAYOUTS = [
    Layout("spot", "trades", "ms", header=False, container="csv"),
    Layout("spot", "trades", "us", header=False, container="zip"),
    Layout("spot", "trades", "mixed", header=True, container="csv"),
    Layout("spot", "aggTrades", "ms", header=False, container="zip"),
    Layout("spot", "aggTrades", "us", header=False, container="csv"),
    Layout("usdm", "trades", "ms", header=True, container="csv", newline="\r\n"),
    Layout("usdm", "trades", "ms", header=False, container="zip"),
    Layout("usdm", "aggTrades", "ms", header=True, container="zip"),
    Layout("usdm", "aggTrades", "ms", header=False, container="csv"),
]


@pytest.mark.parametrize(
    "layout", LAYOUTS,
    ids=lambda lay: f"{lay.market}-{lay.kind}-{lay.unit}-"
                    f"{'header' if lay.header else 'noheader'}-{lay.container}",
)
def test_every_row_lands_in_kafka_in_order(
    settings: Settings, tmp_path: Path, layout: Layout
) -> None:
    settings = settings.replace(market=layout.market)
    date = "2025-01-02" if layout.unit == "us" else "2024-08"
    want: dict[str, list[dict[str, Any]]] = {}
    paths = []
    for n, (symbol, first_id) in enumerate([("BTCUSDT", 3_000_000_000), ("ETHUSDT", 17)]):
        rows = make_rows(layout, 300 + n * 50, first_id, seed=n)
        lines = [",".join(r).encode() for r in rows]
        if layout.header:
            lines.insert(0, HEADERS[(layout.kind, layout.market)].encode())
        paths.append(write_file(tmp_path, f"{symbol}-{layout.kind}-{date}", lines,
                                layout.container, layout.newline.encode()))
        want[symbol] = [expected_trade(layout, symbol, r) for r in rows]

    stats = produce(settings, CsvSource(paths, market=layout.market, progress=False),
                    threading.Event())

    trades, letters, gaps = read_back(settings)
    assert trades == want
    assert letters == [] and gaps == []
    assert stats.trades == sum(len(v) for v in want.values()) and stats.duplicates == 0


GOOD = "{id},60000.10,0.5,30000.05,1723075200{ms:03d},True,True"
BAD_ROWS: list[tuple[bytes, str]] = [
    (b"{id},60000.10,0.5,30000.05,1723075200000,True", "bad_schema"),  # a column short
    (b"{id},60000.10,0.5,30000.05,1723075200000,True,True,x", "bad_schema"),
    (b"{id},abc,0.5,30000.05,1723075200000,True,True", "bad_price"),
    (b"{id},NaN,0.5,30000.05,1723075200000,True,True", "bad_price"),
    (b"{id},-60000.10,0.5,30000.05,1723075200000,True,True", "bad_price"),
    (b"{id},0.00,0.5,30000.05,1723075200000,True,True", "bad_price"),
    (b"{id},1e5,0.5,30000.05,1723075200000,True,True", "bad_price"),
    (b"{id},60000.10,0,30000.05,1723075200000,True,True", "bad_qty"),
    (b"{id},60000.10,inf,30000.05,1723075200000,True,True", "bad_qty"),
    (b"12a,60000.10,0.5,30000.05,1723075200000,True,True", "bad_trade_id"),
    (b"-5,60000.10,0.5,30000.05,1723075200000,True,True", "bad_trade_id"),
    (b"{id},60000.10,0.5,30000.05,17230752000x0,True,True", "bad_timestamp"),
    (b"{id},60000.10,0.5,30000.05,1000000000000,True,True", "bad_timestamp"),  # 2001
    (b"{id},60000.10,0.5,30000.05,17230752000000,True,True", "bad_timestamp"),  # 14 digits
    (b"{id},60000.10,0.5,30000.05,,True,True", "bad_timestamp"),
    (b"{id},60000.10,0.5,30000.05,1723075200000,yes,True", "bad_side"),
    (b"{id},6\xff000.10,0.5,30000.05,1723075200000,True,True", "bad_encoding"),
    (b"{id},\xd9\xa1,0.5,30000.05,1723075200000,True,True", "bad_schema"),  # Arabic digit one
    (b"{id}," + b"9" * 2000 + b",0.5,1,1723075200000,True,True", "oversized"),
]


def test_bad_rows_go_to_deadletter_and_good_rows_flow(settings: Settings, tmp_path: Path) -> None:
    settings = settings.replace(symbols=("BTCUSDT", "ETHUSDT"))
    lines: list[bytes] = []
    good_ids: list[int] = []
    bad: dict[int, tuple[bytes, str]] = {}  # line number -> (raw, reason)
    next_id = 100
    for template, reason in BAD_ROWS:
        for _ in range(2):
            lines.append(GOOD.format(id=next_id, ms=len(lines)).encode())
            good_ids.append(next_id)
            next_id += 1
        raw = template.replace(b"{id}", str(next_id + 10_000).encode())
        lines.append(raw)
        bad[len(lines)] = (raw, reason)
        lines.append(b"")  # blank lines are skipped, but still counted as lines
    lines.append(GOOD.format(id=next_id, ms=999).encode())
    good_ids.append(next_id)
    trades_file = write_file(tmp_path, "BTCUSDT-trades-2024-08-08", lines)

    agg_lines = [b"1,2500.5,1.0,10,12,1723075200000,False,True",
                 b"2,2500.5,1.0,14,13,1723075200001,False,True",  # last < first
                 b"2,2500.5,1.0,1x,13,1723075200001,False,True",
                 b"2,2500.6,1.0,13,13,1723075200002,true,True"]
    agg_file = write_file(tmp_path, "ETHUSDT-aggTrades-2024-08-08", agg_lines, "zip")

    stats = produce(settings, CsvSource([trades_file, agg_file], "spot", progress=False),
                    threading.Event())

    trades, letters, gaps = read_back(settings)
    assert [t["trade_id"] for t in trades["BTCUSDT"]] == good_ids
    assert [(t["trade_id"], t["first_trade_id"], t["last_trade_id"])
            for t in trades["ETHUSDT"]] == [(1, 10, 12), (2, 13, 13)]
    assert gaps == []
    got = {(letter["detail"].split(":")[0], letter["reason"], raw_bytes(letter))
           for letter in letters}
    want = {(f"{trades_file.name} line {n}", reason, raw[:1024])
            for n, (raw, reason) in bad.items()}
    want |= {(f"{agg_file.name} line 2", "bad_trade_id", agg_lines[1]),
             (f"{agg_file.name} line 3", "bad_trade_id", agg_lines[2])}
    assert got == want
    assert all(letter["source"] == "csv" for letter in letters)
    assert stats.dead_letters == len(want) == len(letters)
    assert set(stats.rejected) <= {r for _, r in BAD_ROWS} | {"bad_trade_id"}


@pytest.mark.parametrize("name", [
    "trades.csv", "BTCUSDT.csv", "BTCUSDT-klines-1m-2024-08-08.zip",
    "BTCUSDT-trades-2024-08-08.csv.gz", "BTCUSDT-trades-2024-08-08.zip.CHECKSUM",
    "BTCUSDT-trades-yesterday.csv",
])
def test_file_name_must_tell_symbol_and_kind(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("1,1.0,1.0,1.0,1723075200000,True,True\n")
    with pytest.raises(ConfigError, match=r"expected SYMBOL-trades-YYYY-MM\[-DD\]") as exc:
        CsvSource([tmp_path / name], "spot")
    assert name in str(exc.value)


def test_file_names_binance_publishes() -> None:
    f = parse_file_name("/data/ETHUSDT-aggTrades-2024-08.zip")
    assert (f.symbol, f.kind) == ("ETHUSDT", "aggTrades")
    f = parse_file_name("1000PEPEUSDT-trades-2024-08-08.csv")
    assert (f.symbol, f.kind) == ("1000PEPEUSDT", "trades")


def test_usdm_file_with_spot_market_is_refused(settings: Settings, tmp_path: Path) -> None:
    for header in (True, False):
        lines = [b"1,60000.1,0.5,30000.05,1723075200000,true"]
        if header:
            lines.insert(0, HEADERS[("trades", "usdm")].encode())
        path = write_file(tmp_path, "BTCUSDT-trades-2024-08-08", lines)
        with pytest.raises(ConfigError, match="ALPHAPLUS_MARKET=usdm"):
            produce(settings, CsvSource([path], "spot", progress=False), threading.Event())
    assert list(read_topic(settings.kafka_bootstrap, settings.topic_trades)) == []


def test_symbol_outside_configuration_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = write_file(tmp_path, "SOLUSDT-trades-2024-08-08",
                      [b"1,150.1,0.5,75.05,1723075200000,True,True"])
    with pytest.raises(ConfigError, match="SOLUSDT"):
        produce(settings, CsvSource([path], "spot", progress=False), threading.Event())


def test_mixing_trades_and_aggtrades_of_one_symbol_is_refused(tmp_path: Path) -> None:
    a = write_file(tmp_path, "BTCUSDT-trades-2024-08-08", [])
    b = write_file(tmp_path, "BTCUSDT-aggTrades-2024-08-08", [])
    with pytest.raises(ConfigError, match="one kind per symbol"):
        CsvSource([a, b], "spot")


def test_broken_zip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.zip"
    path.write_bytes(b"not a zip at all")
    ingest = Ingestor(CountingSink(), "spot", ["BTCUSDT"], "csv")
    with pytest.raises(ConfigError, match="broken zip"):
        CsvSource([path], "spot", progress=False).run(ingest, threading.Event())


def test_stops_promptly(tmp_path: Path) -> None:
    layout = Layout("spot", "trades", "ms", header=False, container="csv")
    lines = [",".join(r).encode() for r in make_rows(layout, 50_000, 1, seed=3)]
    path = write_file(tmp_path, "BTCUSDT-trades-2024-08-08", lines)
    stop = threading.Event()
    sink = CountingSink(stop, stop_after=1_000)
    CsvSource([path], "spot", progress=False).run(
        Ingestor(sink, "spot", ["BTCUSDT"], "csv"), stop)
    assert 1_000 <= sink.trades < 10_000


def test_progress_bar_when_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_file(tmp_path, "BTCUSDT-trades-2024-08-08",
                      [b"1,60000.1,0.5,30000.05,1723075200000,True,True"])
    sink = CountingSink()
    CsvSource([path], "spot", progress=True).run(
        Ingestor(sink, "spot", ["BTCUSDT"], "csv"), threading.Event())
    assert sink.trades == 1
    assert path.name in capsys.readouterr().err
