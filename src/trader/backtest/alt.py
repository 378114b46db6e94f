"""Alternative data from the lake's ``alt_data`` Delta table, in time order, with memory bounded: what a
backtest hands to the strategies that override ``on_alt`` (docs/backtest.md, "Alternative data").

The rows are those sink-alt stored of ``alt.norm.>`` (``trader.services.sink_alt``), read back as the
``AltDatum`` messages the strategy service decodes live: the same fields, each decimal the same number
(the trailing zeros of the lake's 18 places dropped, as the ticks' are). Only the rows a strategy can
hear are read: of the range, of its symbols and their perpetuals (``BTCUSDT-PERP`` for ``BTCUSDT``,
as the live service maps them), of the kinds the strategies declare (``Strategy.alt_kinds``; every
kind when one of them declares none).

Pruning: the ``kind`` and ``dt`` partitions of those kinds and the range's UTC dates only, and each
file's ``ts`` statistics, as for the ticks (``trader.backtest.data.read_windows``). Order: a window at a
time, sorted by event time and then by the ALT_DATA stream sequence (the order the live service took
them in, among data of one event time). Memory: one window (``window_rows`` rows at most) as Arrow
columns, one batch as Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from trader.backtest.data import (
    BATCH_ROWS,
    WINDOW_ROWS,
    BacktestDataError,
    DataRange,
    _decimals,
    _in_range,
    _maybe_null,
    _repeated,
    read_windows,
)
from trader.config import Settings
from trader.messages import AltDatum
from trader.stores.lake import ALT_DATA, Lake

PERPETUAL = "-PERP"
COLUMNS = [
    "ts",
    "kind",
    "source",
    "value",
    "symbol",
    "unit",
    "venue_symbol",
    "predicted",
    "next_ts",
    "price",
    "side",
    "stream_seq",
]


def alt_symbols(symbols: Iterable[str]) -> tuple[str, ...]:
    """The ``symbol`` values of the data a strategy of ``symbols`` hears of: each, and its perpetual."""
    return tuple(sorted({s for symbol in symbols for s in (symbol, symbol + PERPETUAL)}))


@dataclass(frozen=True)
class AltRange:
    """``[start_ms, end_ms)`` of data about these symbols (exactly), of these kinds (every kind when
    empty)."""

    start_ms: int
    end_ms: int
    symbols: tuple[str, ...]
    kinds: tuple[str, ...] = ()

    def row_filter(self, start_ms: int, end_ms: int) -> pc.Expression:
        return _in_range(start_ms, end_ms) & pc.field("symbol").isin(list(self.symbols))

    def dates(self) -> list[str]:
        return DataRange(self.start_ms, self.end_ms, ()).dates()

    def describe(self) -> str:
        kinds = f"{', '.join(self.kinds)} " if self.kinds else ""
        return f"{kinds}data of {', '.join(self.symbols)}"


class LakeAlt:
    """The ``alt_data`` table of the configured lake, opened once (one Delta version for the run);
    ``delta`` is None when there is no such table (nothing stored yet): no data then, no error."""

    def __init__(self, settings: Settings, *, window_rows: int = WINDOW_ROWS) -> None:
        if window_rows <= 0:
            raise ValueError(f"window_rows must be positive, got {window_rows}")
        self.lake = Lake(settings)
        self.window_rows = window_rows
        self.uri = self.lake.uri(ALT_DATA)
        try:
            self.delta = self.lake.open(ALT_DATA)
        except Exception as exc:  # an unreachable store: not the same as no table
            raise BacktestDataError(f"cannot open the Delta table {self.uri}: {exc}") from exc
        self.version = None if self.delta is None else self.delta.version()

    def dataset(self, wanted: AltRange) -> pads.Dataset | None:
        if self.delta is None:
            return None
        predicate: list[tuple[str, str, object]] = [("dt", "in", wanted.dates())]
        if wanted.kinds:
            predicate.append(("kind", "in", list(wanted.kinds)))
        return self.delta.to_pyarrow_dataset(file_pruning_predicate=predicate)

    def windows(self, wanted: AltRange) -> Iterator[pa.Table]:
        full = self.dataset(wanted)
        if full is None or not wanted.symbols:
            return
        yield from read_windows(
            self.delta,  # type: ignore[arg-type]  # not None: it has a dataset
            full,
            wanted.start_ms,
            wanted.end_ms,
            wanted.row_filter,
            [c for c in COLUMNS if c in full.schema.names],  # a table older than issue 18's columns
            self.window_rows,
        )

    def data(self, wanted: AltRange) -> Iterator[AltDatum]:
        """The range's data in event-time order (then stream order), as ``AltDatum`` messages."""
        for window in self.windows(wanted):
            for batch in window.to_batches(max_chunksize=BATCH_ROWS):
                yield from map(AltDatum, *_python_columns(batch))


def _python_columns(batch: pa.RecordBatch) -> list[list[object]]:
    # AltDatum's fields in order: timestamp, kind, source, value, symbol, unit, venue_symbol, predicted,
    # next_time, price, side.
    def column(name: str) -> pa.Array:
        if name in batch.schema.names:
            return batch.column(name)
        return pa.nulls(batch.num_rows, ALT_DATA.schema.field(name).type)

    return [
        _millis(column("ts")),
        *(_repeated(column(n)) for n in ("kind", "source")),
        _decimals(column("value")),
        *(_repeated(column(n)) for n in ("symbol", "unit")),
        _maybe_null(column("venue_symbol")),
        _decimals(column("predicted")),
        _millis(column("next_ts")),
        _decimals(column("price")),
        _maybe_null(column("side")),
    ]


def _millis(column: pa.Array) -> list[int | None]:
    # Parquet may hand a timestamp back in microseconds: milliseconds, as on the bus.
    return pc.cast(pc.cast(column, pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()  # type: ignore[no-any-return]
