"""Binance public-data trade files (data.binance.vision) → trades.

Reads the daily and monthly `trades` and `aggTrades` files of the spot and USD-M markets, as
`.csv` or as the `.zip` Binance publishes (one csv of the same name inside):

| file | columns |
| --- | --- |
| spot trades | id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch |
| USD-M trades | id, price, qty, quote_qty, time, is_buyer_maker |
| spot aggTrades | agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker, is_best_match |
| USD-M aggTrades | the spot columns without is_best_match |

Spot files have no header row; recent USD-M files have one. Spot timestamps are microseconds
from 2025-01-01 on and milliseconds before, so the unit is decided per value by its size. The
symbol and the kind come from the file name (`BTCUSDT-trades-2024-08-08.csv`,
`ETHUSDT-aggTrades-2024-08.zip`); the market is given, and the column count must agree with it.

A file has no receive time, so `recv_ts` is the trade time. Bad rows go to the dead-letter
topic with the file name and line number; the import goes on. Files are read in the order
given: within a symbol, give them oldest first, or the continuity check drops the older rows as
duplicates.
"""  # noqa: E501

from __future__ import annotations

import os
import re
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from core.exceptions import ConfigError, InvalidInput
from core.models import SCHEMA_VERSION, Trade
from core.settings import MARKETS
from core.validation import check_decimal, check_trade_id, split_timestamp
from producers.ingest import Ingestor

EXPECTED_NAME = (
    "SYMBOL-trades-YYYY-MM[-DD].csv|.zip or SYMBOL-aggTrades-YYYY-MM[-DD].csv|.zip "
    "(the data.binance.vision names, e.g. BTCUSDT-trades-2024-08-08.zip)"
)
_NAME = re.compile(
    r"(?P<symbol>[A-Za-z0-9]+)-(?P<kind>trades|aggTrades)-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?P<ext>csv|zip)",
    re.IGNORECASE,
)
# Spot files carry a trailing best-match column that USD-M files lack.
_COLUMNS = {
    ("trades", "spot"): 7,
    ("trades", "usdm"): 6,
    ("aggTrades", "spot"): 8,
    ("aggTrades", "usdm"): 7,
}
_BOOL = {"True": True, "False": False, "true": True, "false": False}
# ~4k rows per chunk: the stop flag is checked once per chunk, off the per-row path.
CHUNK_BYTES = 256 * 1024
# A real row is under 120 bytes; anything this long is not a row, and is cut in the dead letter.
MAX_LINE = 1024
_UTF8_BOM = "\ufeff"


@dataclass(frozen=True)
class TradeFile:
    path: Path
    symbol: str
    kind: str  # "trades" or "aggTrades"

    @property
    def name(self) -> str:
        return self.path.name


def parse_file_name(path: str | Path) -> TradeFile:
    """Symbol and kind from a data.binance.vision file name, or `ConfigError`."""
    p = Path(path)
    match = _NAME.fullmatch(p.name)
    if match is None:
        raise ConfigError(
            f"{p.name}: cannot tell the symbol and kind (trades/aggTrades) from the file name; "
            f"expected {EXPECTED_NAME}"
        )
    kind = "aggTrades" if match["kind"].lower() == "aggtrades" else "trades"
    return TradeFile(p, match["symbol"].upper(), kind)


@contextmanager
def open_trade_file(f: TradeFile) -> Iterator[tuple[IO[bytes], int]]:
    """The csv bytes of `f` (unpacked from its zip when it is one) and their size."""
    if f.path.suffix.lower() != ".zip":
        with open(f.path, "rb") as fh:
            yield fh, os.fstat(fh.fileno()).st_size
        return
    try:
        with zipfile.ZipFile(f.path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            wanted = f.path.stem + ".csv"
            chosen = [i for i in members if Path(i.filename).name == wanted]
            if not chosen and len(members) == 1:
                chosen = members
            if len(chosen) != 1:
                raise ConfigError(f"{f.name}: expected one member {wanted}, found "
                                  f"{[i.filename for i in members][:5]}")
            with zf.open(chosen[0]) as fh:
                yield fh, chosen[0].file_size
    except zipfile.BadZipFile as exc:
        # Also raised at the end of a member whose CRC does not match.
        raise ConfigError(f"{f.name}: broken zip file ({exc})") from exc


def read_chunks(fh: IO[bytes], progress: Callable[[int], object]) -> Iterator[list[bytes]]:
    """Lines (without "\\n") in lists of about `CHUNK_BYTES`."""
    rest = b""
    while chunk := fh.read(CHUNK_BYTES):
        progress(len(chunk))
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


def _unsigned(value: str, reason: str, what: str) -> int:
    # int() alone would also take "+5", " 5" and "1_000".
    if not value.isdigit():
        raise InvalidInput(reason, f"{what} is not an unsigned integer: {value!r:.60}")
    return int(value)


def parse_row(fields: list[str], symbol: str, market: str, agg: bool) -> Trade:
    """One split row (column count already checked) → a trade, or `InvalidInput`."""
    # The id and time checks are inlined: a call costs more than the check on this path.
    raw_id = fields[0]
    if not raw_id.isdigit():
        raise InvalidInput("bad_trade_id", f"id is not an unsigned integer: {raw_id!r:.60}")
    trade_id = check_trade_id(int(raw_id))
    price = check_decimal(fields[1], "bad_price")
    qty = check_decimal(fields[2], "bad_qty")
    if agg:
        first = _unsigned(fields[3], "bad_trade_id", "first trade id")
        last = _unsigned(fields[4], "bad_trade_id", "last trade id")
        if last < first:
            raise InvalidInput("bad_trade_id", f"last trade id {last} < first {first}")
        check_trade_id(last)
        time_field, side_field = fields[5], fields[6]
    else:
        time_field, side_field = fields[4], fields[5]
    if not time_field.isdigit():
        raise InvalidInput("bad_timestamp", f"time is not an unsigned integer: {time_field!r:.60}")
    ts, ts_us = split_timestamp(int(time_field))
    side = _BOOL.get(side_field)
    if side is None:
        raise InvalidInput("bad_side", f"buyer-maker flag must be True/False: {side_field!r:.60}")
    trade: Trade = {
        "v": SCHEMA_VERSION,
        "exchange": "binance",
        "market": market,
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "qty": qty,
        "ts": ts,
        "buyer_maker": side,
        "recv_ts": ts,
    }
    if ts_us is not None:
        trade["ts_us"] = ts_us
    if agg:
        trade["first_trade_id"] = first
        trade["last_trade_id"] = last
    return trade


def _parses(fields: list[str], f: TradeFile, market: str) -> bool:
    try:
        parse_row(fields, f.symbol, market, f.kind == "aggTrades")
    except InvalidInput:
        return False
    return True


class CsvSource:
    name = "csv"

    def __init__(self, paths: Sequence[str | Path], market: str = "spot",
                 progress: bool | None = None) -> None:
        """`progress`: show a bar per file on stderr; None = only when stderr is a terminal."""
        if market not in MARKETS:
            raise ConfigError(f"market {market!r}: expected one of {', '.join(MARKETS)}")
        if not paths:
            raise ConfigError("csv source needs at least one file")
        self.files = [parse_file_name(p) for p in paths]
        missing = [str(f.path) for f in self.files if not f.path.is_file()]
        if missing:
            raise FileNotFoundError(f"csv file not found: {', '.join(missing)}")
        kinds: dict[str, str] = {}
        for f in self.files:
            # trade ids and aggTrade ids are separate sequences; mixed, continuity means nothing.
            if kinds.setdefault(f.symbol, f.kind) != f.kind:
                raise ConfigError(f"{f.symbol}: both trades and aggTrades files given; "
                                  "import one kind per symbol")
        self.market = market
        self.progress = sys.stderr.isatty() if progress is None else progress

    def run(self, ingest: Ingestor, stop: threading.Event) -> None:
        unknown = sorted({f.symbol for f in self.files} - ingest.parser.symbols)
        if unknown:
            # Every row would be dead-lettered as unknown_symbol: refuse before sending any.
            raise ConfigError(f"the files hold {', '.join(unknown)}, which is not among the "
                              "configured symbols (ALPHAPLUS_SYMBOLS or --symbols)")
        for f in self.files:
            if not self._import(f, ingest, stop):
                return

    def _import(self, f: TradeFile, ingest: Ingestor, stop: threading.Event) -> bool:
        """Send one file's rows; False when stopped."""
        symbol, market, agg = f.symbol, self.market, f.kind == "aggTrades"
        ncols = _COLUMNS[(f.kind, market)]
        accept, reject = ingest.trade, ingest.reject
        lineno = 0
        with (
            open_trade_file(f) as (fh, size),
            tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f.name,
                 disable=not self.progress, file=sys.stderr, dynamic_ncols=True) as bar,
        ):
            for lines in read_chunks(fh, bar.update):
                if stop.is_set():
                    return False
                ingest.flush_metrics()
                for line in lines:
                    lineno += 1
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if not line:
                        continue
                    try:
                        if len(line) > MAX_LINE:
                            raise InvalidInput("oversized", f"{len(line)} bytes > {MAX_LINE}")
                        text = line.decode()
                        if not text.isascii():
                            raise InvalidInput("bad_schema", "non-ASCII character in row")
                        fields = text.split(",")
                        if len(fields) != ncols:
                            raise InvalidInput(
                                "bad_schema", f"{len(fields)} columns, expected {ncols}")
                        trade = parse_row(fields, symbol, market, agg)
                    except UnicodeDecodeError as exc:
                        reject(line, InvalidInput(
                            "bad_encoding", f"{f.name} line {lineno}: invalid UTF-8 ({exc.reason})"
                        ))
                        continue
                    except InvalidInput as exc:
                        # The first line may be a header or tell a wrong market: only checked
                        # when it fails as a row, so good rows pay nothing for it.
                        if lineno == 1 and self._first_line(f, line, ncols):
                            continue
                        reject(line[:MAX_LINE], InvalidInput(
                            exc.reason, f"{f.name} line {lineno}: {exc.detail}"))
                        continue
                    accept(trade, line)
        return True

    def _first_line(self, f: TradeFile, line: bytes, ncols: int) -> bool:
        """True if the first line is this file's header; `ConfigError` if it shows the file
        belongs to the other market; False to treat it as a bad row."""
        try:
            text = line.decode().removeprefix(_UTF8_BOM)
        except UnicodeDecodeError:
            return False
        fields = text.split(",")
        other = "usdm" if self.market == "spot" else "spot"
        if len(fields) == _COLUMNS[(f.kind, other)] and (
            fields[0][:1].isalpha() or _parses(fields, f, other)
        ):
            raise ConfigError(
                f"{f.name}: {len(fields)} columns is the {other} {f.kind} layout, but the "
                f"market is {self.market}; set ALPHAPLUS_MARKET={other} for this file"
            )
        is_header = fields[0][:1].isalpha()
        if is_header and len(fields) != ncols:
            raise ConfigError(f"{f.name}: unexpected header {text[:200]!r}")
        return is_header
