"""Ticks from the lake's ``market_ticks`` Delta table, in time order, with memory bounded.

Pruning: only the files of the partitions asked for are listed (``symbol`` in the symbols, ``dt`` in
the UTC dates of the range), and each file's ``ts`` statistics (the min and max Delta keeps per file,
which pyarrow carries as the fragment's guarantee) let a read skip every file outside a window.

Order: the files are read in order of their first tick, each once: files whose time spans overlap
(one commit's file per symbol) are read together, and a group of more than ``window_rows`` ticks (a
compacted day) in slices of its span. A window is sorted by ``(ts, stream_seq)``: event time, then the
order the bus took them in, which is the order the live services saw them (for ticks of one feed, event
time never runs backwards in stream order, so the two agree). Memory is one window's ticks as Arrow
columns (half a million at most by default) plus one batch of them as Python objects, whatever the range.

Values: the lake keeps prices to 12 places and quantities to 8 (``trader.stores.lake``): a tick read
back has trailing zeros its publisher never wrote. They are dropped (``60000.500000000000`` becomes
``60000.5``), so that prices and fees print as in paper trading; the values are the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable

from trader.config import REPLAY_VENUE_PREFIX, Settings
from trader.messages import MarketTick
from trader.stores.lake import MARKET_TICKS, Lake, utc_dates

# A window holds about this many ticks at most: some 150 bytes each as Arrow columns, twice while sorted.
WINDOW_ROWS = 500_000
BATCH_ROWS = 50_000
COLUMNS = [
    "ts",
    "exchange",
    "venue",
    "symbol",
    "price",
    "size",
    "volume",
    "bid",
    "ask",
    "side",
    "trade_id",
    "source_seq",
    "stream_seq",
]


class BacktestDataError(RuntimeError):
    """The data a backtest asked for cannot be read: no table, or no ticks in the range."""


@dataclass(frozen=True)
class DataRange:
    """What a run reads: ``[start_ms, end_ms)`` of these symbols (all of the table's when empty), of
    these venues (all when empty), without the ticks of replay venues when ``skip_replays``."""

    start_ms: int
    end_ms: int
    symbols: tuple[str, ...]
    venues: tuple[str, ...] = ()
    skip_replays: bool = False

    def row_filter(self, start_ms: int, end_ms: int) -> pc.Expression:
        """Rows of ``[start_ms, end_ms)`` (within the range) of the venues asked for."""
        expression = _in_range(start_ms, end_ms)
        if self.venues:
            expression = expression & pc.field("venue").isin(list(self.venues))
        if self.skip_replays:
            expression = expression & ~pc.starts_with(pc.field("venue"), REPLAY_VENUE_PREFIX)
        return expression

    def dates(self) -> list[str]:
        """The UTC dates (the ``dt`` partitions) the range touches."""
        first = datetime.fromtimestamp(self.start_ms / 1000, tz=UTC).date()
        last = datetime.fromtimestamp((max(self.end_ms, self.start_ms + 1) - 1) / 1000, tz=UTC).date()
        return [(first + timedelta(days=d)).isoformat() for d in range((last - first).days + 1)]


class LakeTicks:
    """The ``market_ticks`` table of the configured lake, opened once (one Delta version for the run)."""

    def __init__(self, settings: Settings, *, window_rows: int = WINDOW_ROWS) -> None:
        if window_rows <= 0:
            raise ValueError(f"window_rows must be positive, got {window_rows}")
        self.lake = Lake(settings)
        self.window_rows = window_rows
        self.uri = self.lake.uri(MARKET_TICKS)
        try:
            delta = self.lake.open(MARKET_TICKS)
        except Exception as exc:  # an unreachable store: the same sentence as a missing table, with why
            raise BacktestDataError(f"cannot open the Delta table {self.uri}: {exc}") from exc
        if delta is None:
            raise BacktestDataError(
                f"no Delta table at {self.uri}: nothing has been written to the lake yet "
                "(sink-ticks writes it while the stack runs), or lake_root points elsewhere"
            )
        self.delta = delta
        self.version = delta.version()

    def dataset(self, data: DataRange) -> pads.Dataset:
        """The files of the range's partitions only."""
        predicate: list[tuple[str, str, object]] = [("dt", "in", data.dates())]
        if data.symbols:
            predicate.append(("symbol", "in", list(data.symbols)))
        return self.delta.to_pyarrow_dataset(file_pruning_predicate=predicate)

    def count(self, data: DataRange) -> int:
        return self.dataset(data).count_rows(filter=data.row_filter(data.start_ms, data.end_ms))

    def check_has_data(self, data: DataRange, heard_venues: Sequence[str] = ()) -> int:
        """The number of ticks in the range (of ``heard_venues`` when given: the venues the strategies
        hear of), or ``BacktestDataError`` saying what the table does hold."""
        if heard_venues:
            found = self.count(replace(data, venues=tuple(heard_venues)))
            if found:
                return found
        found = self.count(data)
        if found and heard_venues:
            table = self.dataset(data).to_table(
                columns=["venue"], filter=data.row_filter(data.start_ms, data.end_ms)
            )
            held = sorted(pc.unique(table.column("venue")).to_pylist())
            wanted = ", ".join(data.symbols) if data.symbols else "any symbol"
            raise BacktestDataError(
                f"no ticks of {wanted} on {', '.join(heard_venues)} (the strategies' data venues) from "
                f"{_iso(data.start_ms)} to {_iso(data.end_ms)} in {self.uri} (version {self.version}); "
                f"there are {found} of {', '.join(held)}: a strategy hears only its data_venue's"
            )
        if found:
            return found
        held = self.partitions()
        symbols = sorted({s for s, _ in held})
        dates = sorted({d for _, d in held})
        span = f"dates {dates[0]} to {dates[-1]}" if dates else "no dates"
        wanted = ", ".join(data.symbols) if data.symbols else "any symbol"
        raise BacktestDataError(
            f"no ticks of {wanted} from {_iso(data.start_ms)} to {_iso(data.end_ms)} in {self.uri} "
            f"(version {self.version}); it holds {', '.join(symbols) or 'no symbol'}, {span}"
        )

    def partitions(self) -> list[tuple[str, str]]:
        actions = pa.table(self.delta.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return []
        pairs = zip(actions["partition.symbol"].to_pylist(), actions["partition.dt"].to_pylist(), strict=True)
        return sorted(set(pairs))

    def windows(self, data: DataRange) -> Iterator[pa.Table]:
        """The range's ticks, a window at a time, each sorted by (ts, stream_seq), each file read once
        (``read_windows``)."""
        yield from read_windows(
            self.delta,
            self.dataset(data),
            data.start_ms,
            data.end_ms,
            data.row_filter,
            COLUMNS,
            self.window_rows,
        )

    def ticks(self, data: DataRange) -> Iterator[MarketTick]:
        for window in self.windows(data):
            yield from ticks_of(window)

    def batches_with_seq(self, data: DataRange) -> Iterator[tuple[list[MarketTick], list[int]]]:
        """The range's ticks in the order of ``ticks``, a batch at a time, each with its stream sequence
        (the lake's identity of a tick that has no trade id): what ``trader replay`` republishes."""
        for window in self.windows(data):
            for batch in window.to_batches(max_chunksize=BATCH_ROWS):
                ticks = list(map(MarketTick, *_python_columns(batch)))
                yield ticks, batch.column("stream_seq").to_pylist()


def read_windows(
    delta: DeltaTable,
    full: pads.Dataset,
    start_ms: int,
    end_ms: int,
    row_filter: Callable[[int, int], pc.Expression],
    columns: list[str],
    window_rows: int,
) -> Iterator[pa.Table]:
    """The rows of ``full`` (a Delta table's files, partitions pruned) in ``[start_ms, end_ms)`` that
    ``row_filter(start, end)`` keeps, a window at a time, each sorted by (ts, stream_seq), each file read
    once. The files are taken in order of their first row, in groups whose time spans overlap (a commit
    of a sink is a file per partition over the same half second): a group is read whole when it holds at
    most ``window_rows`` rows, else in slices of its span of about that many rows (a compacted day), each
    slice reading only the row groups its time overlaps."""
    files = _files_in(delta, full, start_ms, end_ms, window_rows)
    for group in _overlapping(files):
        start = max(min(f.first_ms for f in group), start_ms)
        end = min(max(f.last_ms for f in group) + 1, end_ms)
        rows = sum(f.rows for f in group)
        fragments = [f.fragment for f in group]
        subset = pads.FileSystemDataset(fragments, full.schema, full.format, full.filesystem)
        step = end - start if rows <= window_rows else max((end - start) * window_rows // rows, 1)
        while start < end:
            stop = min(start + step, end)
            table = subset.to_table(columns=columns, filter=row_filter(start, stop))
            if table.num_rows:
                yield table.sort_by([("ts", "ascending"), ("stream_seq", "ascending")])
            start = stop


def _files_in(
    delta: DeltaTable, full: pads.Dataset, start_ms: int, end_ms: int, window_rows: int
) -> list[_File]:
    """The dataset's files that may hold rows of the range, with their span from the Delta log's
    statistics (a file without them is taken to span the whole range)."""
    actions = pa.table(delta.get_add_actions(flatten=True))
    spans: dict[str, tuple[int | None, int | None, int]] = {}
    if actions.num_rows:
        first = _millis(actions["min.ts"]) if "min.ts" in actions.column_names else [None] * actions.num_rows
        last = _millis(actions["max.ts"]) if "max.ts" in actions.column_names else [None] * actions.num_rows
        for path, lo, hi, rows in zip(
            actions["path"].to_pylist(), first, last, actions["num_records"].to_pylist(), strict=True
        ):
            spans[path] = (lo, hi, rows or 0)
    files = []
    for fragment in full.get_fragments():
        lo, hi, rows = spans.get(fragment.path, (None, None, window_rows + 1))
        lo = start_ms if lo is None else lo
        hi = end_ms - 1 if hi is None else hi
        if hi >= start_ms and lo < end_ms:
            files.append(_File(lo, hi, rows, fragment))
    return sorted(files, key=lambda f: (f.first_ms, f.last_ms, f.fragment.path))


@dataclass(frozen=True)
class _File:
    first_ms: int
    last_ms: int
    rows: int
    fragment: pads.FileFragment


def _overlapping(files: list[_File]) -> Iterator[list[_File]]:
    """Files sorted by first tick, in groups whose spans overlap (a tick of one may fall between ticks of
    another: they must be sorted together)."""
    group: list[_File] = []
    end = None
    for file in files:
        if group and end is not None and file.first_ms > end:
            yield group
            group, end = [], None
        group.append(file)
        end = file.last_ms if end is None else max(end, file.last_ms)
    if group:
        yield group


def _millis(column: pa.ChunkedArray) -> list[int | None]:
    return pc.cast(pc.cast(column, pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()


def ticks_of(table: pa.Table) -> Iterator[MarketTick]:
    """``MarketTick`` messages of a window, a batch of rows at a time."""
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        yield from map(MarketTick, *_python_columns(batch))  # the columns are one batch's: equal lengths


def _python_columns(batch: pa.RecordBatch) -> list[list[object]]:
    # Parquet may hand the column back in microseconds: milliseconds, as on the bus.
    ts = pc.cast(pc.cast(batch.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()
    texts = [_repeated(batch.column(n)) for n in ("exchange", "venue", "symbol")]
    decimals = [_decimals(batch.column(n)) for n in ("price", "size", "volume", "bid", "ask")]
    rest = [_maybe_null(batch.column(n)) for n in ("side", "trade_id", "source_seq")]
    # MarketTick's fields in order: timestamp, exchange, venue, symbol, price, size, volume, bid, ask,
    # side, trade_id, source_seq (venue_symbol is not in the lake).
    return [ts, *texts, *decimals, *rest]


def _decimals(column: pa.Array) -> list[Decimal | None]:
    """The column's decimals without the trailing zeros of its scale (None stays None). Each distinct
    value is parsed once (prices and sizes repeat within a batch): the cost per tick of reading."""
    encoded = pc.dictionary_encode(column)
    text = pc.cast(encoded.dictionary, pa.string())
    text = pc.replace_substring_regex(text, pattern=r"(\.\d*?)0+$", replacement=r"\1")
    text = pc.replace_substring_regex(text, pattern=r"\.$", replacement="")
    values = np.array([Decimal(t) for t in text.to_pylist()], dtype=object)
    indices = encoded.indices
    if indices.null_count:
        return [None if i is None else values[i] for i in indices.to_pylist()]
    return values[indices.to_numpy()].tolist()  # each row's object picked in C, not in a comprehension


def _repeated(column: pa.Array) -> list[object]:
    """A column of few distinct values (venue, symbol): each made into a Python object once."""
    encoded = pc.dictionary_encode(column)
    values = np.array(encoded.dictionary.to_pylist(), dtype=object)
    if encoded.indices.null_count:
        return [None if i is None else values[i] for i in encoded.indices.to_pylist()]
    return values[encoded.indices.to_numpy()].tolist()


def _maybe_null(column: pa.Array) -> list[object]:
    if column.null_count == len(column):
        return [None] * len(column)
    return column.to_pylist()


def _in_range(start_ms: int, end_ms: int) -> pc.Expression:
    ts = pc.field("ts")
    return (ts >= pa.scalar(start_ms, pa.timestamp("ms", tz="UTC"))) & (
        ts < pa.scalar(end_ms, pa.timestamp("ms", tz="UTC"))
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def lake_table(ticks: list[MarketTick], first_seq: int = 1) -> pa.Table:
    """Ticks as rows of ``market_ticks`` (stream sequences from ``first_seq``, arrival at event time):
    what sink-ticks would write of them. For tests and the benchmark, which fill a lake of their own."""
    ts = pa.array([t.timestamp for t in ticks], pa.int64())
    stamp = ts.cast(pa.timestamp("ms", tz="UTC"))
    price, quantity = MARKET_TICKS.schema.field("price").type, MARKET_TICKS.schema.field("size").type

    def column(name: str, kind: pa.DataType) -> pa.Array:
        return pa.array([getattr(t, name) for t in ticks], kind)

    return pa.table(
        {
            "ts": stamp,
            "ingest_ts": stamp,
            "exchange": column("exchange", pa.string()),
            "venue": column("venue", pa.string()),
            "symbol": column("symbol", pa.string()),
            "price": column("price", price),
            "size": column("size", quantity),
            "volume": column("volume", quantity),
            "bid": column("bid", price),
            "ask": column("ask", price),
            "side": column("side", pa.string()),
            "trade_id": column("trade_id", pa.string()),
            "source_seq": column("source_seq", pa.int64()),
            "stream_seq": pa.array(range(first_seq, first_seq + len(ticks)), pa.int64()),
            "dt": utc_dates(ts),
        },
        schema=MARKET_TICKS.schema,
    )
