"""Poison in data.binance.vision CSV files, imported by a real `alphaplus produce --source csv:`
process. One file holds every bad row kind, each between good rows: the import must finish
(exit 0), every bad row must reach the dead-letter topic with its reason and line number, and
every good row must reach `market.trades`. Whole-file problems are refused before anything is
sent, with a message that names the problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.kafka import ensure_topics, read_topic
from core.models import DeadLetter
from core.serde import decode_trade, raw_bytes
from core.settings import Settings
from tests.faults.poison_corpus import Case, CliProcess, dead_letters, ids, record

FILE = "BTCUSDT-trades-2024-08-08.csv"
MS = 1_723_075_200_000  # 2024-08-08, the file's day
# `{id}` is replaced by the row's trade id, so that no two raw rows are equal.
CSV: list[Case] = [
    Case("column-short", "{id},60000.10,0.5,30000.05,1723075200000,True", "bad_schema"),
    Case("column-extra", "{id},60000.10,0.5,30000.05,1723075200000,True,True,x", "bad_schema"),
    Case("tab-separated", "{id}\t60000.10\t0.5\t30000.05\t1723075200000\tTrue\tTrue",
         "bad_schema"),
    Case("json-row", '{"id":{id},"price":"60000.10"}', "bad_schema"),
    Case("only-commas", ",,,,,,", "bad_trade_id"),
    Case("quoted-fields", '"{id}","60000.10","0.5","30000.05","1723075200000","True","True"',
         "bad_trade_id"),
    Case("price-text", "{id},abc,0.5,30000.05,1723075200000,True,True", "bad_price"),
    Case("nan-price", "{id},NaN,0.5,30000.05,1723075200000,True,True", "bad_price"),
    Case("infinity-price", "{id},Infinity,0.5,30000.05,1723075200000,True,True", "bad_price"),
    Case("negative-price", "{id},-60000.10,0.5,30000.05,1723075200000,True,True", "bad_price"),
    Case("zero-price", "{id},0.00,0.5,0,1723075200000,True,True", "bad_price"),
    Case("price-1e400", "{id},1e400,0.5,30000.05,1723075200000,True,True", "bad_price"),
    Case("price-400-digits", "{id}," + "9" * 400 + ",0.5,1,1723075200000,True,True",
         "bad_price"),
    Case("sql-in-price", "{id},'; DROP TABLE trades;--,0.5,1,1723075200000,True,True",
         "bad_price"),
    Case("nul-byte-in-price", "{id},60000.10\x00,0.5,1,1723075200000,True,True", "bad_price"),
    Case("zero-qty", "{id},60000.10,0,0,1723075200000,True,True", "bad_qty"),
    Case("negative-qty", "{id},60000.10,-0.5,1,1723075200000,True,True", "bad_qty"),
    Case("negative-trade-id", "-{id},60000.10,0.5,1,1723075200000,True,True", "bad_trade_id"),
    Case("trade-id-2pow70", f"{2**70},60000.10,0.5,1,1723075200000,True,True", "bad_trade_id"),
    Case("sql-in-trade-id", "{id} OR 1=1,60000.10,0.5,1,1723075200000,True,True",
         "bad_trade_id"),
    Case("ts-far-past", "{id},60000.10,0.5,1,1000,True,True", "bad_timestamp"),
    Case("ts-far-future", "{id},60000.10,0.5,1,9999999999999,True,True", "bad_timestamp"),
    Case("ts-2pow70", "{id},60000.10,0.5,1," + str(2**70) + ",True,True", "bad_timestamp"),
    Case("ts-empty", "{id},60000.10,0.5,1,,True,True", "bad_timestamp"),
    Case("ts-iso-text", "{id},60000.10,0.5,1,2024-08-08T00:00:00Z,True,True", "bad_timestamp"),
    Case("side-not-bool", "{id},60000.10,0.5,1,1723075200000,yes,True", "bad_side"),
    Case("invalid-utf8", b"{id},6\xff000.10,0.5,1,1723075200000,True,True", "bad_encoding"),
    Case("non-ascii-digit", "{id},\u0661,0.5,1,1723075200000,True,True", "bad_schema"),
    Case("oversized-line", "{id}," + "9" * 2000 + ",0.5,1,1723075200000,True,True",
         "oversized"),
]
GOOD = "{id},60000.10,0.5,30000.05,{ms},True,True"


def row(case: Case, number: int) -> bytes:
    return case.raw_bytes.replace(b"{id}", str(number).encode())


@dataclass
class CsvRun:
    exit_code: int
    letters: list[DeadLetter]
    trade_ids: list[int]
    good_after: dict[str, int]  # case id -> the good row's trade id that follows it
    bad_lines: dict[str, tuple[int, bytes]]  # case id -> (line number, raw row)
    log: str


def settings_for(kafka_bootstrap: str) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(environ={}, env_file=None).replace(
        kafka_bootstrap=kafka_bootstrap, symbols=("BTCUSDT",),
        topic_trades=f"test.trades.{suffix}", topic_deadletter=f"test.deadletter.{suffix}",
        topic_gaps=f"test.gaps.{suffix}", kafka_partitions=3)
    ensure_topics(kafka_bootstrap, [settings.topic_trades, settings.topic_deadletter,
                                    settings.topic_gaps], 3)
    return settings


@pytest.fixture(scope="module")
def csv_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CsvRun]:
    settings = settings_for(kafka_bootstrap)
    folder = tmp_path_factory.mktemp("poison-csv")
    lines: list[bytes] = []
    good_after: dict[str, int] = {}
    bad_lines: dict[str, tuple[int, bytes]] = {}
    next_id = 100
    for case in CSV:
        lines.append(GOOD.format(id=next_id, ms=MS + len(lines)).encode())
        next_id += 1
        raw = row(case, next_id + 50_000)
        lines.append(raw)
        bad_lines[case.id] = (len(lines), raw)
        lines.append(GOOD.format(id=next_id, ms=MS + len(lines)).encode())
        good_after[case.id] = next_id
        next_id += 1
    path = folder / FILE
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = CliProcess(["produce", "--source", f"csv:{path}", "--symbols", "BTCUSDT"], settings,
                      folder / "produce.log")
    code = proc.wait(60)
    trade_ids = [decode_trade(m.value())["trade_id"]
                 for m in read_topic(kafka_bootstrap, settings.topic_trades)]
    yield CsvRun(code, dead_letters(settings), trade_ids, good_after, bad_lines, proc.log())


@pytest.mark.parametrize("case", CSV, ids=ids(CSV))
def test_bad_row_is_dead_lettered_and_the_next_row_flows(csv_run: CsvRun, case: Case) -> None:
    assert csv_run.exit_code == 0, csv_run.log[-3000:]
    line, raw = csv_run.bad_lines[case.id]
    mine = [d for d in csv_run.letters if d["detail"].startswith(f"{FILE} line {line}:")]
    assert [(d["reason"], d["source"], raw_bytes(d)) for d in mine] == [
        (case.outcome, "csv", raw[:1024])], [(d["reason"], d["detail"]) for d in mine]
    assert csv_run.good_after[case.id] in csv_run.trade_ids
    record("csv", case.id, f'{mine[0]["reason"]}: {mine[0]["detail"]}')


def test_every_good_row_once_and_nothing_else(csv_run: CsvRun) -> None:
    assert csv_run.exit_code == 0, csv_run.log[-3000:]
    assert len(csv_run.letters) == len(CSV)
    assert csv_run.trade_ids == list(range(100, 100 + 2 * len(CSV)))


@pytest.mark.parametrize(("name", "body", "message"), [
    ("SOLUSDT-trades-2024-08-08.csv", b"1,150.1,0.5,75.05,1723075200000,True,True\n",
     "SOLUSDT, which is not among the configured symbols"),
    ("BTCUSDT-trades-2024-08-08.zip", b"PK\x03\x04 not a zip at all", "broken zip file"),
    ("BTCUSDT-trades-2024-08-08.csv", b"id,price,qty,quote_qty,time,is_buyer_maker\n"
     b"1,60000.1,0.5,30000.05,1723075200000,true\n", "set ALPHAPLUS_MARKET=usdm"),
], ids=["unknown-symbol-file", "broken-zip", "usdm-file-as-spot"])
def test_bad_file_is_refused_before_anything_is_sent(
    kafka_bootstrap: str, tmp_path: Path, name: str, body: bytes, message: str,
    request: pytest.FixtureRequest
) -> None:
    settings = settings_for(kafka_bootstrap)
    path = tmp_path / name
    path.write_bytes(body)
    proc = CliProcess(["produce", "--source", f"csv:{path}", "--symbols", "BTCUSDT"], settings,
                      tmp_path / "produce.log")
    assert proc.wait(60) == 2
    assert message in proc.log()
    assert "Traceback" not in proc.log()
    assert list(read_topic(kafka_bootstrap, settings.topic_trades)) == []
    assert dead_letters(settings) == []
    record("csv", request.node.callspec.id, f"exit 2: {message}")
