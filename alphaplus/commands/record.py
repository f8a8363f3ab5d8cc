"""`alphaplus record`: capture raw Binance frames into a file that `--source recording:` replays.

Each line is `<receive time ns> <frame JSON>`, the format of the hftbacktest recordings; gzip
when the path ends in .gz. The connections are the live source's (same stream splitting,
reconnects and switch-over). A switch-over overlaps two connections, so a frame whose sequence
number (trade id, aggTrade id, book update id) the file already holds is not written again;
frames of other streams (klines, tickers) carry no such number and may repeat in that overlap.
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from core.exceptions import ConfigError
from producers.sources.ws_switchover import TRADE_ID_FIELDS, WsOptions, stream_sequence

log = logging.getLogger(__name__)

# Stream kind (the part after the symbol) -> the field that numbers its frames in order.
SEQUENCE_FIELDS = {**TRADE_ID_FIELDS, "bookTicker": "u", "depth": "u"}


class BinaryOut(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class FrameRecorder:
    """A frame handler writing recording lines to a binary file."""

    def __init__(self, out: BinaryOut) -> None:
        self.out = out
        self.frames = 0
        self.duplicates = 0
        self.last_seq: dict[str, int] = {}

    def frame(self, raw: bytes, recv_ns: int) -> None:
        key = stream_sequence(raw, SEQUENCE_FIELDS)
        if key is not None:
            stream, seq = key
            last = self.last_seq.get(stream)
            if last is not None and seq <= last:
                self.duplicates += 1
                return
            self.last_seq[stream] = seq
        if b"\n" in raw or b"\r" in raw:
            # A line break can only be whitespace between JSON tokens: keep one frame a line.
            raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
        self.out.write(b"%d %s\n" % (recv_ns, raw))
        self.frames += 1

    def last_trade_id(self, stream: str) -> int | None:
        if stream.rpartition("@")[2] not in TRADE_ID_FIELDS:
            return None
        return self.last_seq.get(stream)

    def tick(self) -> None:
        # A crash or kill loses at most about a second of frames.
        self.out.flush()


def open_output(path: Path) -> gzip.GzipFile | io.BufferedWriter:
    if path.suffix == ".gz":
        return gzip.open(path, "wb")
    return open(path, "wb")


def record(path: Path, connections: list[tuple[str, tuple[str, ...]]], stop: threading.Event,
           options: WsOptions | None = None) -> FrameRecorder:
    """Write every frame of `connections` to `path` until `stop` is set."""
    from producers.sources.binance_ws import run_streams

    with open_output(path) as out:
        recorder = FrameRecorder(out)
        run_streams(connections, recorder, stop, options, label="record")
    return recorder


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "record",
        help="capture raw Binance WebSocket frames into a file (replay it with "
             "`produce --source recording:PATH`)",
    )
    parser.add_argument("--out", required=True,
                        help="file to write (gzip when the name ends in .gz)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to record; default: until Ctrl-C or SIGTERM")
    parser.add_argument("--symbols", help="comma list; overrides ALPHAPLUS_SYMBOLS")
    parser.add_argument(
        "--streams", default=None,
        help="comma list of stream kinds per symbol, e.g. trade,aggTrade,bookTicker,"
             "depth@100ms (default: ALPHAPLUS_BINANCE_STREAM)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alphaplus.commands.produce import settings_from_args
    from producers.run import stop_on_signals
    from producers.sources.binance_ws import combined_urls, stream_names

    settings = settings_from_args(args)
    raw_kinds = args.streams if args.streams is not None else settings.binance_stream
    kinds = [k.strip() for k in raw_kinds.split(",") if k.strip()]
    if not kinds:
        raise ConfigError("--streams needs at least one stream kind, e.g. trade")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0 seconds")
    connections = combined_urls(
        settings.ws_base_url,
        stream_names(settings.symbols, kinds),
        microseconds=settings.binance_microseconds and settings.market == "spot",
    )
    path = Path(args.out)
    started = time.monotonic()
    with stop_on_signals() as stop:
        timer = threading.Timer(args.duration, stop.set) if args.duration else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            recorder = record(path, connections, stop)
        finally:
            if timer is not None:
                timer.cancel()
    log.info("recorded %d frames in %.1fs to %s (%d overlap duplicates skipped)",
             recorder.frames, time.monotonic() - started, path, recorder.duplicates)
    return 0
