"""Replays against the real parts: the embedded broker (whose offset-by-time answers fail the
check, so the scan fallback runs), Redis, PostgreSQL and a Celery worker process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis
from psycopg2.extensions import connection as PGConnection

from core import redis_keys
from core import replays as progress
from core.candles import Candle
from core.db.connect import connect
from core.kafka import read_topic
from core.models import Trade
from core.replays import BadReplay, ReplayConflict, ReplayStatus, make_request
from core.settings import Settings
from tests.conftest import REPO
from tests.core.test_candles import ALL, assert_same, offline
from tests.workers.helpers import START_MS, Processes
from tests.workers.replay.rows import (
    assert_indicators_of_one_pass,
    expected_candles,
    in_range,
    run_rows,
    stored_candles,
    warmed_candles,
    written,
)
from workers.celery_app import make_app
from workers.replay.job import Replay
from workers.replay.timerange import SCAN

MIN = 60_000
HOUR = 60 * MIN
# Not on any candle boundary: the first candles of the range are partial, which the offline
# computation over the same trades must agree with.
FROM_MS = START_MS + 31 * MIN + 17_123
TO_MS = START_MS + 2 * HOUR + 30 * MIN + 33_456  # after midnight: the 1d candle closes


@pytest.fixture
def db(replay_settings: Settings) -> Iterator[PGConnection]:
    conn = connect(replay_settings.database_url)
    yield conn
    conn.close()


def replay(settings: Settings, run_id: str, from_ms: int = FROM_MS, to_ms: int = TO_MS,
           **options: object) -> ReplayStatus:
    request = make_request(run_id, from_ms, to_ms, **options)  # type: ignore[arg-type]
    return Replay(settings, make_app(settings), request, task_timeout_s=60).run()


def test_without_a_warm_up_a_replay_gives_the_candles_and_indicators_of_its_range_only(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str], db: PGConnection, redis_url: str) -> None:
    run_id = run_ids("range")
    status = replay(replay_settings, run_id, warmup="none")

    inside = in_range(topic_trades, FROM_MS, TO_MS)
    n_inside = sum(len(t) for t in inside.values())
    want = expected_candles(topic_trades, FROM_MS, TO_MS, ALL)
    assert status.state == "done", status.error
    assert status.trades == n_inside
    assert status.candles == sum(len(c) for c in want.values())
    assert status.progress == 1.0 and status.pending_tasks == 0
    # The embedded broker answers 0 for every time: every partition was scanned.
    assert set(status.lookup.values()) == {SCAN}
    # Skipped: every message before the range (the scan), and those after it until each
    # partition's first message past the disorder allowance.
    slack = replay_settings.late_grace_ms
    assert status.skipped == sum(1 for t in topic_trades if t["ts"] < FROM_MS
                                 or TO_MS <= t["ts"] < TO_MS + slack)

    rows = run_rows(db, run_id)
    assert rows["trades"] == []  # not persisted unless asked
    stored = stored_candles(rows)
    assert set(stored) == set(want)
    for key, candles in want.items():
        assert_same(stored[key], candles)
    assert_indicators_of_one_pass(db, run_id, want)

    # Nothing went to the live topics.
    assert list(read_topic(replay_settings.kafka_bootstrap, replay_settings.topic_candles)) == []
    assert list(read_topic(replay_settings.kafka_bootstrap,
                           replay_settings.topic_deadletter)) == []
    # The latest value of a candle still open at the end is its forming candle, once.
    client = redis.Redis.from_url(redis_url)
    try:
        latest = client.get(redis_keys.candle(run_id, "BTCUSDT", "4h"))
        stored_status = progress.read_status(client, run_id)
    finally:
        client.close()
    forming = msgspec.json.decode(latest or b"", type=Candle)
    last = offline(inside["BTCUSDT"], "BTCUSDT", "4h")[-1]
    last.closed = False
    assert_same([forming], [last])
    assert stored_status is not None and stored_status.state == "done"
    assert stored_status.trades == n_inside


def test_a_warmed_up_replay_writes_its_range_with_the_indicators_of_the_whole_history(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str], db: PGConnection, redis_url: str) -> None:
    """The default warm-up reads the topic from its start: the candles opening before the
    range feed the indicators and are stored nowhere."""
    run_id = run_ids("warm")
    status = replay(replay_settings, run_id)
    assert status.state == "done", status.error
    built = warmed_candles(topic_trades, FROM_MS, TO_MS, ALL)
    want = written(built, FROM_MS)
    assert status.trades == sum(1 for t in topic_trades if t["ts"] < TO_MS)
    slack = replay_settings.late_grace_ms
    assert status.skipped == sum(1 for t in topic_trades if TO_MS <= t["ts"] < TO_MS + slack)

    rows = run_rows(db, run_id)
    stored = stored_candles(rows)
    assert set(stored) == set(want)
    for key, candles in want.items():
        assert_same(stored[key], candles)
    # The first stored 1m candle is the first one opening at or after the range's start,
    # complete (it holds no trade before its minute began, nor lacks one).
    assert stored["BTCUSDT", "1m"][0].open_time == FROM_MS - FROM_MS % MIN + MIN
    assert_indicators_of_one_pass(db, run_id, built, written_from=FROM_MS)
    assert all(int(r[2]) >= FROM_MS for table in ("signals", "patterns") for r in rows[table])
    assert rows["signals"]

    client = redis.Redis.from_url(redis_url)
    try:  # the warm-up's candles are gone from the run's windows once its tasks are done
        oldest = client.zrange(redis_keys.candle_window(run_id, "BTCUSDT", "1m"), 0, 0,
                               withscores=True)
    finally:
        client.close()
    assert oldest and float(oldest[0][1]) >= FROM_MS


def cli(procs: Processes, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alphaplus.cli", "replay", *args],
                          env=procs.env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_same_range_twice_gives_identical_candles_indicators_and_signals(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str], db: PGConnection, redis_url: str) -> None:
    """Once from the CLI (in its process, with the progress bar), once as the Celery task
    (`--celery`: sent to the jobs queue, run by the worker, followed by the CLI)."""
    first, second = run_ids("cli"), run_ids("celery")
    times = ["--from", str(FROM_MS), "--to", "2024-08-09T00:30:33.456Z"]
    here = cli(worker, *times, "--run-id", first)
    assert here.returncode == 0, here.stdout + here.stderr
    assert f"replay {first}: done" in here.stdout
    assert "trades/s" in here.stderr  # the progress bar's rate
    sent = cli(worker, *times, "--run-id", second, "--celery", "--quiet")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "sent as task" in sent.stdout and f"replay {second}: done" in sent.stdout
    assert worker.tasks("worker", "succeeded")  # the worker ran it

    a, b = run_rows(db, first), run_rows(db, second)
    assert a == b
    want = written(warmed_candles(topic_trades, FROM_MS, TO_MS, ALL), FROM_MS)
    assert len(a["candles"]) == sum(len(c) for c in want.values())
    assert len(a["indicators"]) == len(a["candles"])
    assert a["signals"] and a["patterns"]  # something to compare

    client = redis.Redis.from_url(redis_url)
    try:
        done = progress.read_status(client, second)
        # A finished run id is not run again, nor used for another range.
        request = make_request(first, FROM_MS, TO_MS)
        with pytest.raises(ReplayConflict, match="done already"):
            Replay(replay_settings, make_app(replay_settings), request).run()
        with pytest.raises(ReplayConflict, match="another replay"):
            Replay(replay_settings, make_app(replay_settings),
                   make_request(first, FROM_MS, TO_MS + 1)).run()
    finally:
        client.close()
    assert done is not None and done.task_id is not None and done.state == "done"


def redis_snapshot(redis_url: str, ns: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{redis_keys.PREFIX}:{ns}:*", count=1000))
        return {k: client.dump(k) for k in keys}  # type: ignore[misc]
    finally:
        client.close()


def test_a_replay_leaves_the_live_run_untouched_and_matches_what_it_stored(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        namespace: str, run_ids: Callable[[str], str], db: PGConnection,
        redis_url: str) -> None:
    """The test's namespace plays the live pipeline: the stream stage over the whole topic,
    then replays of its first two hours and of a range starting half an hour into it. The live
    keys and rows stay exactly as they were, and the replays' candles, indicators, signals and
    patterns equal the live ones of the same candles (the parity of issue 5: the same code,
    the same values; the warm-up gives the later range the history live had)."""
    from tests.workers.test_stream_stage import run_stage

    live = run_stage(replay_settings, namespace, len(topic_trades))
    assert live.stats.trades == len(topic_trades)
    client = redis.Redis.from_url(redis_url)
    try:
        outbox = redis_keys.task_outbox(namespace)
        deadline = time.monotonic() + 120
        while client.hlen(outbox):
            worker.check_running()
            assert time.monotonic() < deadline, "the live run's tasks did not finish"
            time.sleep(0.1)
    finally:
        client.close()
    live_keys = redis_snapshot(redis_url, namespace)
    live_rows = run_rows(db, namespace)
    live_candles_topic = len(list(read_topic(replay_settings.kafka_bootstrap,
                                             replay_settings.topic_candles)))
    assert live_rows["trades"] and live_rows["signals"] and live_candles_topic

    run_id = run_ids("parity")
    to_ms = START_MS + 2 * HOUR  # the topic's start to midnight
    status = replay(replay_settings, run_id, START_MS, to_ms)
    assert status.state == "done", status.error

    assert redis_snapshot(redis_url, namespace) == live_keys
    assert run_rows(db, namespace) == live_rows
    assert len(list(read_topic(replay_settings.kafka_bootstrap,
                               replay_settings.topic_candles))) == live_candles_topic

    mine = run_rows(db, run_id)
    assert mine["candles"]
    ranges = {(r[0], r[1], r[2]) for r in mine["candles"]}
    # Every live candle of the range that ends by its end was replayed, with the same values
    # (not the day's and 4 hours' that opened before the topic's first trade: a replay
    # with a warm-up writes the candles opening in its range).
    assert mine["candles"] == [r for r in live_rows["candles"]
                               if r[2] >= START_MS and r[3] < to_ms]
    for table in ("indicators", "signals", "patterns"):
        assert mine[table] == [r for r in live_rows[table] if (r[0], r[1], r[2]) in ranges], (
            table)
    assert mine["signals"]

    later = replay(replay_settings, run_ids("parity-later"), FROM_MS, to_ms)
    assert later.state == "done", later.error
    theirs = run_rows(db, later.run_id)
    assert theirs["candles"] == [r for r in live_rows["candles"]
                                 if r[2] >= FROM_MS and r[3] < to_ms]
    ranges = {(r[0], r[1], r[2]) for r in theirs["candles"]}
    for table in ("indicators", "signals", "patterns"):
        assert theirs[table] == [r for r in live_rows[table]
                                 if (r[0], r[1], r[2]) in ranges], table
    assert theirs["signals"] and len(theirs["signals"]) < len(mine["signals"])


def test_the_indicator_tasks_never_lose_a_candle_to_a_small_window(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str], db: PGConnection, redis_url: str) -> None:
    """Two hours of 1m candles (120 a symbol) through a Redis window of 16: the replay may
    run at most half a window ahead of the indicator tasks, or candles would fall out of the
    window before a task saw them and the values after them would all be wrong."""
    settings = replay_settings.replace(redis_window=16)
    run_id = run_ids("window")
    status = replay(settings, run_id, START_MS, START_MS + 2 * HOUR,
                    timeframes=["1m", "5m"])
    assert status.state == "done", status.error
    want = expected_candles(topic_trades, START_MS, START_MS + 2 * HOUR, ("1m", "5m"))
    assert len(want["BTCUSDT", "1m"]) == 120
    assert_indicators_of_one_pass(db, run_id, want)
    client = redis.Redis.from_url(redis_url)
    try:
        window = client.zcard(redis_keys.candle_window(run_id, "BTCUSDT", "1m"))
    finally:
        client.close()
    assert window == 16


def test_a_speed_paces_the_replay_by_trade_time(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str]) -> None:
    from_ms = START_MS + 10 * MIN
    # No warm-up: it runs at full speed, and would blur the pace measured here.
    status = replay(replay_settings, run_ids("paced"), from_ms, from_ms + 20_000, speed="10",
                    warmup="none")
    assert status.state == "done", status.error
    assert status.trades == sum(len(t) for t in in_range(topic_trades, from_ms,
                                                         from_ms + 20_000).values())
    assert status.started_at is not None and status.finished_at is not None
    # 20 s of trades at 10x: the last is processed no earlier than 2 s after the start.
    assert status.finished_at - status.started_at >= 2_000


def test_a_running_replay_can_be_cancelled(
        replay_settings: Settings, topic_trades: list[Trade], worker: Processes,
        run_ids: Callable[[str], str], redis_url: str) -> None:
    run_id = run_ids("cancel")
    request = make_request(run_id, START_MS, START_MS + HOUR, speed=1)
    results: list[ReplayStatus] = []
    thread = threading.Thread(target=lambda: results.append(
        Replay(replay_settings, make_app(replay_settings), request).run()))
    thread.start()
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 30
        while not progress.request_cancel(client, run_id):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        thread.join(60)
        assert not thread.is_alive()
        assert results[0].state == "cancelled"
        assert not progress.request_cancel(client, run_id)  # no longer running
        # A cancelled replay may be started again (it starts over).
        progress.check_startable(client, request)
    finally:
        client.close()


@pytest.mark.parametrize(("run_id", "from_ms", "to_ms", "speed", "message"), [
    ("live", 1, 2, None, "live pipeline"),
    ("a:b", 1, 2, None, "run id"),
    ("", 1, 2, None, "run id"),
    ("ok", 2, 2, None, "empty range"),
    ("ok", 1, 2, "fast", "speed"),
    ("ok", 1, 2, -1, "speed"),
])
def test_bad_requests_are_refused(run_id: str, from_ms: int, to_ms: int,
                                  speed: object, message: str) -> None:
    with pytest.raises(BadReplay, match=message):
        make_request(run_id, from_ms, to_ms, speed=speed)  # type: ignore[arg-type]


def test_a_request_gets_a_fresh_run_id_and_normalised_fields() -> None:
    request = make_request(None, 1, 2, symbols=["btcusdt", " ethusdt", "BTCUSDT"],
                           speed="max", timeframes=["1h", "1m"])
    assert request.run_id.startswith("replay-") and ":" not in request.run_id
    assert request.symbols == ("BTCUSDT", "ETHUSDT")
    assert request.speed == 0.0 and request.timeframes == ("1m", "1h")
    assert make_request("x", 1, 2, speed="10x").speed == 10.0


@pytest.mark.parametrize(("warmup", "warmup_ms", "read_from_ms"), [
    (None, None, 0), ("all", None, 0), (" ALL ", None, 0), ("none", 0, 5 * HOUR),
    ("0", 0, 5 * HOUR), (0, 0, 5 * HOUR), ("90m", 90 * MIN, 5 * HOUR - 90 * MIN),
    ("2h", 2 * HOUR, 3 * HOUR), ("2d", 48 * HOUR, 0), ("1500ms", 1500, 5 * HOUR - 1500),
    (60_000, MIN, 5 * HOUR - MIN),
])
def test_a_warm_up_is_all_none_or_a_duration(warmup: str | int | None, warmup_ms: int | None,
                                             read_from_ms: int) -> None:
    request = make_request("x", 5 * HOUR, 6 * HOUR, warmup=warmup)
    assert request.warmup_ms == warmup_ms
    assert request.read_from_ms == read_from_ms  # never before the epoch
    # The Celery task gets it back the same.
    again = make_request("x", 5 * HOUR, 6 * HOUR, warmup=request.task_kwargs()["warmup"])
    assert again == request


@pytest.mark.parametrize("warmup", ["6 hours", "-1h", "1w", "h", "1.5h", -5, True])
def test_a_bad_warm_up_says_what_is_allowed(warmup: object) -> None:
    with pytest.raises(BadReplay, match="warm-up"):
        make_request("x", 1, 2, warmup=warmup)  # type: ignore[arg-type]
