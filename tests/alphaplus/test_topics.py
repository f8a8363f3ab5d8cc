from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer

from alphaplus.cli import main
from alphaplus.commands.topics import show_time
from core.settings import Settings
from infra.stack.ports import free_port

BASE_TS = 1_722_000_000_000


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The CLI's environment: this test's topics on the session broker, no .env file."""
    monkeypatch.chdir(tmp_path)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    return settings


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    assert main(["topics", *argv]) == 0
    return [line.split() for line in capsys.readouterr().out.splitlines()]


def produce(settings: Settings, count: int) -> dict[int, tuple[int, int]]:
    """`count` keyed messages; returns partition -> (messages, latest timestamp)."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    landed: Counter[int] = Counter()
    latest: dict[int, int] = {}

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None
        part = msg.partition()
        assert part is not None
        landed[part] += 1
        latest[part] = max(latest.get(part, 0), msg.timestamp()[1])

    for i in range(count):
        producer.produce(settings.topic_trades, b"{}", f"SYM{i % 5}".encode(),
                         timestamp=BASE_TS + i, on_delivery=delivered)
    assert producer.flush(10) == 0
    return {p: (n, latest[p]) for p, n in landed.items()}


def test_create_is_idempotent_and_list_shows_partitions(
        env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_cli(capsys, "create")
    assert rows[0] == ["TOPIC", "PARTITIONS", "STATUS"]
    status = {r[0]: (r[1], r[2]) for r in rows[1:]}
    # The fixture made trades, deadletter and gaps; candles is new.
    assert status == {env.topic_trades: ("3", "exists"), env.topic_candles: ("3", "created"),
                      env.topic_deadletter: ("3", "exists"), env.topic_gaps: ("3", "exists")}
    again = run_cli(capsys, "create")
    assert {r[2] for r in again[1:]} == {"exists"}

    listed = {r[0]: r[1] for r in run_cli(capsys, "list")[1:]}
    for topic in (env.topic_trades, env.topic_candles, env.topic_deadletter, env.topic_gaps):
        assert listed[topic] == "3"
    assert not any(name.startswith("__") for name in listed)


@pytest.mark.parametrize("count_flag", [[], ["--count"]])
def test_describe_shows_counts_and_latest_time_per_partition(
        env: Settings, capsys: pytest.CaptureFixture[str], count_flag: list[str]) -> None:
    expected = produce(env, 2_000)
    rows = run_cli(capsys, "describe", *count_flag, env.topic_trades, "no.such.topic")
    assert rows[0] == ["TOPIC", "PARTITION", "LOW", "HIGH", "MESSAGES", "LATEST"]
    mine = [r for r in rows[1:] if r[0] == env.topic_trades]
    per_partition = {int(r[1]): r for r in mine if r[1] != "all"}
    assert sorted(per_partition) == [0, 1, 2]
    for part, row in per_partition.items():
        messages, latest = expected.get(part, (0, None))
        assert row[2:5] == ["0", str(messages), str(messages)]
        assert " ".join(row[5:]) == show_time(latest)
    total = next(r for r in mine if r[1] == "all")
    assert total[2] == "2000"
    assert " ".join(total[3:]) == show_time(BASE_TS + 1_999)
    assert rows[-1] == ["no.such.topic", "-", "-", "-", "-", "no", "such", "topic"]


def test_describe_defaults_to_the_configured_topics(
        env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_cli(capsys, "describe")
    assert {r[0] for r in rows[1:]} == {env.topic_trades, env.topic_deadletter, env.topic_gaps,
                                        env.topic_candles}


def test_no_broker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    assert main(["topics", "--bootstrap", f"127.0.0.1:{port}", "list"]) == 2
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in capsys.readouterr().err
