"""Settings from `ALPHAPLUS_*` environment variables and an optional `.env` file.

Every setting names its variable, its default and what it does in one place (the dataclass
field's metadata), so `alphaplus config` and docs/CONFIGURATION.md are generated from it and
cannot drift.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

from core.exceptions import ConfigError
from core.timeframes import parse_timeframes

PREFIX = "ALPHAPLUS_"
# ALPHAPLUS_TIMESCALEDB: which storage mode the migrations should build (core.db.mode).
Wanted = Literal["auto", "on", "off"]

MARKETS = ("spot", "usdm")
DEFAULT_WS_URL = {
    "spot": "wss://stream.binance.com:9443",
    "usdm": "wss://fstream.binance.com",
}


def _csv_upper(raw: str) -> tuple[str, ...]:
    items = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
    if not items:
        raise ValueError("needs at least one comma-separated value")
    return items


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def _int(raw: str) -> int:
    return int(raw)


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _float(raw: str) -> float:
    return float(raw)


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _stream_name(raw: str) -> str:
    names = {"trade": "trade", "aggtrade": "aggTrade"}
    try:
        return names[raw.strip().lower()]
    except KeyError:
        raise ValueError("expected trade or aggTrade") from None


def _str(raw: str) -> str:
    return raw.strip()


def setting(default: Any, doc: str, parse: Callable[[str], Any] = _str) -> Any:
    """A dataclass field that knows its environment variable's parser and documentation."""
    return field(default=default, metadata={"doc": doc, "parse": parse})


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = setting(
        "127.0.0.1:9092",
        "Kafka bootstrap servers. `alphaplus up` starts the embedded broker when none answers "
        "here.",
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "Redis URL. `alphaplus up` starts an embedded redis-server when none answers here.",
    )
    database_url: str = setting(
        "postgresql://postgres@127.0.0.1:5432/alphaplus",
        "PostgreSQL/TimescaleDB URL. `alphaplus up` creates the database if the server has none "
        "by that name, and starts an embedded PostgreSQL when no server answers.",
    )
    timescaledb: Wanted = setting(  # noqa: RUF009 (a str Literal: immutable)
        "auto",
        "TimescaleDB storage (docs/STORAGE.md): `auto` uses it when the server has it preloaded "
        "and otherwise makes plain PostgreSQL tables, saying why in one line; `on` requires it "
        "(`alphaplus migrate` and `up` stop with exit code 2 without it); `off` makes plain "
        "PostgreSQL tables.",
        _choice("auto", "on", "off"))
    trades_retention_days: int = setting(
        0,
        "TimescaleDB mode: the live run's trades are deleted this many days after their trade "
        "time; 0 keeps them (compressed after 7 days). History already older than that when "
        "retention starts (an import from data.binance.vision) and replay runs are never "
        "deleted (docs/STORAGE.md).", _non_negative_int)
    symbols: tuple[str, ...] = setting(
        ("BTCUSDT", "ETHUSDT"), "Comma-separated symbols to ingest.", _csv_upper
    )
    market: str = setting("spot", "Binance market: `spot` or `usdm` (USD-M futures).",
                          _choice(*MARKETS))
    binance_ws_url: str = setting(
        "",
        "Base of the Binance WebSocket endpoint; the client appends `/stream?streams=...`. "
        "Empty means the market's public endpoint (wss://stream.binance.com:9443 for spot, "
        "wss://fstream.binance.com for usdm). Override for testnet, a proxy or a local server.",
    )
    binance_stream: str = setting(
        "trade", "Binance stream to ingest: `trade` or `aggTrade`.", _stream_name
    )
    binance_microseconds: bool = setting(
        False, "Ask the spot endpoint for microsecond timestamps (`timeUnit=MICROSECOND`).", _bool
    )
    timeframes: tuple[str, ...] = setting(
        ("1m", "5m", "15m", "1h", "4h", "1d"),
        "Comma-separated candle timeframes (1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, "
        "12h, 1d).",
        parse_timeframes,
    )
    api_host: str = setting("127.0.0.1", "Address the API binds to.")
    api_port: int = setting(8000, "Port the API listens on.", _int)
    api_token: str = setting(
        "", "Bearer token for admin endpoints; empty means admin endpoints are refused.")
    api_namespace: str = setting(
        "live", "What the API serves: `live`, or a replay's run id (its Redis namespace and "
        "database rows).")
    api_workers: int = setting(
        1, "uvicorn worker processes of `alphaplus api` (each holds its own WebSockets).", _int)
    api_cors_origins: tuple[str, ...] = setting(
        (), "Comma-separated origins allowed by CORS (`*` for any); empty turns CORS off.", _csv)
    api_cache_size: int = setting(
        10_000, "Entries the API's in-process cache holds (least recently used go first).", _int)
    api_cache_ttl_s: float = setting(
        2.0, "Seconds an in-process cache entry lives (updates from the workers replace it "
        "sooner).", _float)
    api_redis_cache_ttl_s: int = setting(
        60, "Seconds a database result the API cached in Redis lives.", _int)
    ws_token: str = setting(
        "", "Token a `/ws` client must give (`?token=` or a bearer header); empty: open.")
    ws_max_streams: int = setting(
        200, "Streams one WebSocket connection may subscribe to.", _int)
    ws_max_message_bytes: int = setting(
        4096, "Largest request a WebSocket client may send.", _int)
    ws_requests_per_s: float = setting(
        10.0, "Requests per second a WebSocket client may send (burst: one second's worth).",
        _float)
    ws_queue_size: int = setting(
        256, "Messages queued per WebSocket client before it counts as slow.", _int)
    ws_slow_close_s: float = setting(
        5.0, "A client whose queue stays full this long is disconnected.", _float)
    ws_ping_interval_s: float = setting(
        20.0, "Seconds between server pings; a client silent for three intervals is closed.",
        _float)
    topic_trades: str = setting("market.trades", "Kafka topic of normalised trades.")
    topic_candles: str = setting("market.candles", "Kafka topic of closed candles.")
    topic_deadletter: str = setting(
        "market.deadletter", "Kafka topic of rejected input, with its reason.")
    topic_gaps: str = setting(
        "market.gaps", "Kafka topic of trade-id gap records (missing id ranges).")
    kafka_partitions: int = setting(
        3, "Partitions for the topics AlphaPlus creates.", _int)
    kafka_linger_ms: int = setting(
        20, "How long the producer lets trades gather into one Kafka batch (linger.ms). "
        "`alphaplus up` raises it to 100 with the embedded broker, whose fetch cost grows with "
        "the number of batches it holds.", _int)
    kafka_fetch_wait_ms: int = setting(
        10, "The stream stage's fetch.wait.max.ms. A real Kafka answers as soon as data is "
        "there; the embedded broker answers after about this long, and returns nothing when "
        "finding the offset in its log takes longer: `alphaplus up` raises it to 100 with it.",
        _int)
    kafka_compression: str = setting(
        "lz4", "Producer compression: lz4, zstd, snappy, gzip or none.",
        _choice("lz4", "zstd", "snappy", "gzip", "none"))
    state_dir: str = setting(
        ".alphaplus", "Folder for logs and embedded-server data of `alphaplus up`.")
    celery_broker_url: str = setting(
        "", "Celery broker URL; empty means ALPHAPLUS_REDIS_URL.")
    celery_queue_prefix: str = setting(
        "alphaplus", "Prefix of the Celery queue names (<prefix>.indicators, .persist, .jobs).")
    task_redeliver_s: int = setting(
        120,
        "A task the stream stage sent and no worker finished within this many seconds is sent "
        "again (tasks are idempotent); this covers a worker killed while taking a task.", _int)
    stream_group: str = setting(
        "alphaplus-stream", "Kafka consumer group of the stream stage (replays add their run id).")
    stream_batch: int = setting(
        10_000, "Most trades the stream stage takes from Kafka per batch.", _int)
    live_throttle_ms: int = setting(
        100, "A forming candle is published at most this often per symbol and timeframe.", _int)
    close_grace_ms: int = setting(
        2_000,
        "A live symbol that goes quiet has its candle closed by the wall clock this long after "
        "the candle's end (history is only ever closed by its own trades).", _int)
    late_grace_ms: int = setting(
        60_000,
        "Closed candles are held this long (event time) so that late trades amend them; "
        "later ones go to the dead-letter topic as `late_trade`.", _int)
    redis_window: int = setting(
        500, "Closed candles kept in Redis per symbol and timeframe.", _int)
    metrics_port: int = setting(
        0, "Port for this process's Prometheus metrics; 0 turns the endpoint off. A Celery "
        "worker serves the sum over its pool processes there (docs/OBSERVABILITY.md).", _int)
    metrics_host: str = setting(
        "127.0.0.1", "Address the metrics endpoint binds to (`0.0.0.0` in a container, for "
        "Prometheus on another host).")
    log_format: str = setting(
        "text", "Log lines as `text` (for a terminal) or `json` (one object per line, with "
        "the correlation id; recommended for deployment).", _choice("text", "json"))
    log_every_s: float = setting(
        10.0, "Seconds between the progress lines of a busy process (stream batches, API "
        "pushes); 0 logs every batch and every push.", _float)

    @property
    def ws_base_url(self) -> str:
        return (self.binance_ws_url or DEFAULT_WS_URL[self.market]).rstrip("/")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | Path | None = ".env",
    ) -> Settings:
        """Build settings: process environment first, then the `.env` file, then defaults."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(
                {k: v for k, v in dotenv_values(env_file).items() if v is not None}
            )
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = env_name(f.name)
            if env in values:
                try:
                    kwargs[f.name] = f.metadata["parse"](values[env])
                except ValueError as exc:
                    raise ConfigError(f"{env}={values[env]!r}: {exc}") from exc
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[env_name(f.name)] = text
        return out


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def markdown_table() -> str:
    """The documentation table of every setting (docs/CONFIGURATION.md is this output)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        if isinstance(default, bool):
            shown = "true" if default else "false"
        lines.append(f"| `{env_name(f.name)}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"
