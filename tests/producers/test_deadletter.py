"""Bad input lands in the dead-letter topic with its reason; good input around it still flows."""

from __future__ import annotations

import threading
from pathlib import Path

from core.kafka import read_topic
from core.serde import decode_deadletter, decode_gap, decode_trade, raw_bytes
from core.settings import Settings
from producers.run import produce
from producers.sources.recording import RecordingSource, read_lines
from tests.conftest import HFT
from tests.producers.test_frames import BAD


def good_trade_lines(n: int) -> list[bytes]:
    lines = []
    for recv_ns, raw in read_lines(HFT / "spot" / "btcusdt_20240808.gz"):
        if recv_ns is not None and b"@trade" in raw[:40]:
            lines.append(b"%d %s" % (recv_ns, raw))
            if len(lines) == n:
                break
    return lines


def test_each_bad_kind_is_dead_lettered_between_good_trades(
    settings: Settings, tmp_path: Path
) -> None:
    good = good_trade_lines(len(BAD) + 1)
    recv_ns = int(good[0].split(b" ", 1)[0])
    lines: list[bytes] = []
    for i, (_, raw, _) in enumerate(BAD):
        lines.append(good[i])
        bad = raw.encode() if isinstance(raw, str) else raw
        lines.append(b"%d %s" % (recv_ns, bad))
    lines.append(good[-1])
    lines.append(b"no-timestamp-prefix")
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")

    stats = produce(settings.replace(symbols=("BTCUSDT", "ETHUSDT")),
                    RecordingSource([path]), threading.Event())

    trades = [decode_trade(m.value())
              for m in read_topic(settings.kafka_bootstrap, settings.topic_trades)]
    assert [t["trade_id"] for t in trades] == [
        int(line.split(b'"t":', 1)[1].split(b",", 1)[0]) for line in good
    ]
    letters = [decode_deadletter(m.value())
               for m in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    expected = [(reason, raw.encode() if isinstance(raw, str) else raw) for _, raw, reason in BAD]
    expected.append(("bad_schema", b"no-timestamp-prefix"))
    assert [(d["reason"], raw_bytes(d)) for d in letters] == expected
    assert all(d["source"] == "recording" and d["detail"] for d in letters)
    assert stats.dead_letters == len(expected)


def test_duplicates_dropped_and_gaps_reported(settings: Settings, tmp_path: Path) -> None:
    good = good_trade_lines(20)
    # A replayed stretch (3..6 again) and a lost stretch (12..14 never sent).
    lines = good[:7] + good[3:7] + good[7:12] + good[15:]
    path = tmp_path / "gappy.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")

    stats = produce(settings, RecordingSource([path]), threading.Event())

    ids = [decode_trade(m.value())["trade_id"]
           for m in read_topic(settings.kafka_bootstrap, settings.topic_trades)]
    first = ids[0]
    assert ids == [first + i for i in range(20) if not 12 <= i <= 14]
    gaps = [decode_gap(m.value())
            for m in read_topic(settings.kafka_bootstrap, settings.topic_gaps)]
    assert [(g["symbol"], g["first_missing"], g["last_missing"], g["missing"]) for g in gaps] == [
        ("BTCUSDT", first + 12, first + 14, 3)
    ]
    assert stats.duplicates == 4 and stats.gaps == 1 and stats.missing == 3
