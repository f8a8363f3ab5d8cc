"""Replays captured Binance frames: `<receive time ns> <combined-stream JSON>` per line.

This is the format of the hftbacktest recordings in tests/fixtures and of `alphaplus record`.
Files may be gzip (by magic bytes, not name). Lines are replayed in file order; with a `speed`
the gaps between receive times are kept, divided by `speed`.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator, Sequence
from io import BufferedIOBase
from pathlib import Path

from core.exceptions import InvalidInput
from producers.ingest import Ingestor

GZIP_MAGIC = b"\x1f\x8b"


def open_recording(path: str | Path) -> BufferedIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_lines(path: str | Path) -> Iterator[tuple[int | None, bytes]]:
    """(receive time in ns, or None when the line has no valid one; the frame bytes)."""
    with open_recording(path) as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            head, sep, frame = line.partition(b" ")
            if sep and head.isdigit():
                yield int(head), frame
            else:
                yield None, line


class RecordingSource:
    name = "recording"

    def __init__(self, paths: Sequence[str | Path], speed: float | None = None) -> None:
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"recording not found: {', '.join(missing)}")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0")
        self.paths = list(paths)
        self.speed = speed

    def run(self, ingest: Ingestor, stop: threading.Event) -> None:
        start_wall: float | None = None
        start_rec = 0
        frame_fn = ingest.frame
        for path in self.paths:
            for n, (recv_ns, frame) in enumerate(read_lines(path)):
                if recv_ns is None:
                    ingest.reject(frame, InvalidInput("bad_schema", "line lacks '<ns> ' prefix"))
                    continue
                if n % 4096 == 0:
                    if stop.is_set():
                        return
                    ingest.flush_metrics()
                if self.speed is not None:
                    if start_wall is None:
                        start_wall, start_rec = time.monotonic(), recv_ns
                    due = start_wall + (recv_ns - start_rec) / 1e9 / self.speed
                    delay = due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                frame_fn(frame, recv_ns // 1_000_000)
