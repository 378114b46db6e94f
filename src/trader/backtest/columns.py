"""A window of the lake's ticks as numpy columns: what a bars-only backtest reads without making a
``MarketTick`` of every tick (``BacktestEngine.on_window``).

The decimal columns are taken as integers (the unscaled values of the lake's ``decimal128``, less the
trailing zeros every value of the window has), with each value's decimal places once its trailing
zeros are dropped: a price or size made back into a ``Decimal`` is the one ``trader.backtest.data``
reads (the same digits and exponent), and sums of them are exact integers that carry the exponent
``Decimal`` addition would give them (the least of the addends'). A window whose values do not fit
64-bit integers, or whose sums of price times size could overflow them, is not taken
(``WindowColumns.of`` returns None): the caller makes ticks of it one by one.

``bar_pieces``: what ticks of one instrument in a run of rows add to the bars, one summed piece per
bucket of the bar builder's grain, column-wise (the first and last row, the highest and lowest price,
the sums of sizes and of price times size, the count): fed to ``BarBuilder.add_summed``, the bars are
those of ``BarBuilder.add_many`` of the ticks, to the digit (tests/unit/backtest/test_columns.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trader.marketdata.bars import _Piece
from trader.messages import MarketTick

_LIMIT = 1 << 62  # products and int64 sums are kept below this, with room for the float estimate's error


def _exact_sum(units: np.ndarray, safe: bool) -> int:
    """The exact sum: in int64 when it cannot overflow (``safe``: the whole column's absolute sum is
    below the limit), else when the absolute sum of these is, else in Python integers."""
    if safe or float(np.abs(units).sum(dtype=np.float64)) < _LIMIT:
        return int(units.sum())
    return sum(units.tolist())


@dataclass(frozen=True)
class _Decimals:
    """A decimal column as integers at ``scale`` places (0 where null), each value's places once its
    trailing zeros are dropped, and which rows are null."""

    units: np.ndarray
    scale: int
    lake_scale: int  # the column's own: ``scale`` plus the trailing zeros all its values have
    places: np.ndarray
    null: np.ndarray | None

    def value(self, row: int) -> Decimal | None:
        if self.null is not None and self.null[row]:
            return None
        return decimal_of(int(self.units[row]), self.scale, self.lake_scale)


def decimal_of(units: int, scale: int, lake_scale: int) -> Decimal:
    """``units`` at ``scale`` places (of a lake column of ``lake_scale``) as the ``Decimal`` the lake
    reader makes (``trader.backtest.data._decimals``): Arrow's text of the value with the trailing zeros
    of the fraction dropped (``60000.500`` is ``60000.5``, ``60000.000`` is ``60000``), except that Arrow
    writes a value below 10^-6 (zero too, at more than 6 places) in scientific notation with every place
    of the column (``0E-8``, ``1.0E-7``), which keeps them."""
    whole = units * 10 ** (lake_scale - scale)
    if abs(whole) < 10 ** (lake_scale - 6) and (whole or lake_scale > 6):
        return Decimal(f"{whole}E-{lake_scale}")
    places = scale
    while places and units % 10 == 0:
        units //= 10
        places -= 1
    return Decimal(f"{units}E-{places}") if places else Decimal(units)


def sum_of(total: int, scale: int, places: int) -> Decimal:
    """A sum of values at ``scale`` places, the most places of any addend (as read) being ``places``:
    the ``Decimal`` exact addition gives (its exponent the least of the addends')."""
    value = total // 10 ** (scale - places) if places <= scale else total * 10 ** (places - scale)
    return Decimal(f"{value}E-{places}") if places else Decimal(value)


def _decimals(column: pa.ChunkedArray | pa.Array, *, places: bool = False) -> _Decimals | None:
    """The column as integers, or None when it is no decimal128 or a value is beyond 64 bits; with each
    value's places when ``places`` (else ``places`` is empty)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if not pa.types.is_decimal128(kind) or kind.scale > 18:
        return None
    count = len(array)
    words = np.frombuffer(array.buffers()[1], dtype=np.int64).reshape(-1, 2)[
        array.offset : array.offset + count
    ]
    low, high = words[:, 0], words[:, 1]
    null = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    if null is not None:
        low = np.where(null, 0, low)
        high = np.where(null, 0, high)
    if not np.array_equal(high, low >> 63):  # a value beyond 64 bits
        return None
    lake_scale = scale = kind.scale
    divisor = int(np.gcd.reduce(low)) if count else 0  # the trailing zeros every value has: the gcd's
    common = 0
    while common < scale and (divisor == 0 or divisor % 10 ** (common + 1) == 0):
        common += 1
    units = low // 10**common if common else low.copy()
    scale -= common
    if not places:
        return _Decimals(units, scale, lake_scale, np.empty(0, np.int8), null)
    zeros = np.zeros(count, dtype=np.int8)
    for p in range(1, scale + 1):
        divisible = units % 10**p == 0
        if not divisible.any():
            break
        zeros += divisible
    where = (scale - zeros).astype(np.int8)
    if lake_scale > 6:  # what Arrow writes in scientific notation keeps every place (``decimal_of``)
        small = np.abs(low) < 10 ** (lake_scale - 6)
        where[small] = lake_scale
    return _Decimals(units, scale, lake_scale, where, null)


@dataclass
class _Instrument:
    """The rows of one instrument in the window, and its columns at those rows."""

    key: tuple[str, str]
    rows: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    price_places: np.ndarray
    size: np.ndarray
    size_places: np.ndarray
    notional: np.ndarray
    notional_places: np.ndarray
    bid_rows: np.ndarray  # the rows with a bid
    ask_rows: np.ndarray


class WindowColumns:
    """One window (sorted by event time, then stream sequence) as columns, by instrument."""

    def __init__(self, table: pa.Table, columns: dict[str, _Decimals]) -> None:
        self.table = table
        self.rows = table.num_rows
        ts = pc.cast(pc.cast(table.column("ts"), pa.timestamp("ms", tz="UTC")), pa.int64())
        self.ts = ts.combine_chunks().to_numpy(zero_copy_only=False)
        self.columns = columns
        self._text = {}
        codes = []
        for name in ("exchange", "venue", "symbol"):
            encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
            indices = encoded.indices.to_numpy(zero_copy_only=False)
            self._text[name] = (encoded.dictionary.to_pylist(), indices)
            codes.append(indices)
        venues, symbols = self._text["venue"][0], self._text["symbol"][0]
        combined = codes[1].astype(np.int64) * max(len(symbols), 1) + codes[2]
        found, inverse = np.unique(combined, return_inverse=True)
        self.instrument_of = inverse  # each row's index in ``instruments``
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(found) + 1))
        price, size = columns["price"], columns["size"]
        notional = price.units * size.units
        notional_places = price.places.astype(np.int16) + size.places
        self.safe_sums = bool(
            float(np.abs(notional).sum(dtype=np.float64)) < _LIMIT
            and float(np.abs(size.units).sum(dtype=np.float64)) < _LIMIT
        )
        bid_null, ask_null = columns["bid"].null, columns["ask"].null
        self.instruments: list[_Instrument] = []
        for k, code in enumerate(found):
            rows = order[bounds[k] : bounds[k + 1]]
            key = (venues[int(code) // max(len(symbols), 1)], symbols[int(code) % max(len(symbols), 1)])
            self.instruments.append(
                _Instrument(
                    key,
                    rows,
                    self.ts[rows],
                    price.units[rows],
                    price.places[rows],
                    size.units[rows],
                    size.places[rows],
                    notional[rows],
                    notional_places[rows],
                    rows if bid_null is None else rows[~bid_null[rows]],
                    rows if ask_null is None else rows[~ask_null[rows]],
                )
            )
        self._rest = {}
        for name in ("side", "trade_id", "source_seq"):
            column = table.column(name)
            self._rest[name] = None if column.null_count == len(column) else column.combine_chunks()

    @classmethod
    def of(cls, table: pa.Table) -> WindowColumns | None:
        """The window's columns, or None when its values do not fit the integers they are summed in."""
        columns = {}
        for name in ("price", "size", "volume", "bid", "ask"):
            decimals = _decimals(table.column(name), places=name in ("price", "size"))
            if decimals is None:
                return None
            columns[name] = decimals
        price, size = columns["price"].units, columns["size"].units
        if len(price) and int(np.abs(price).max()) * int(np.abs(size).max()) >= 1 << 63:
            return None  # a price times a size beyond 64 bits
        return cls(table, columns)

    def tick(self, row: int) -> MarketTick:
        """The row as the ``MarketTick`` the lake reader makes of it."""
        text = self._text
        columns = self.columns
        rest = [None if c is None else c[row].as_py() for c in self._rest.values()]
        return MarketTick(
            int(self.ts[row]),
            text["exchange"][0][text["exchange"][1][row]],
            text["venue"][0][text["venue"][1][row]],
            text["symbol"][0][text["symbol"][1][row]],
            columns["price"].value(row),  # type: ignore[arg-type]  # the lake's price is never null
            columns["size"].value(row),  # type: ignore[arg-type]
            columns["volume"].value(row),  # type: ignore[arg-type]
            columns["bid"].value(row),
            columns["ask"].value(row),
            *rest,  # side, trade_id, source_seq
        )

    def price(self, row: int) -> Decimal:
        price = self.columns["price"]
        return decimal_of(int(price.units[row]), price.scale, price.lake_scale)


class HeldRow:
    """A row held for the desk (``BacktestEngine._held``), made a tick only if the desk is shown it."""

    __slots__ = ("row", "window")

    def __init__(self, window: WindowColumns, row: int) -> None:
        self.window, self.row = window, row

    def tick(self) -> MarketTick:
        return self.window.tick(self.row)


def bar_pieces(
    window: WindowColumns, instrument: _Instrument, a: int, b: int, first_seq: int, grain: int
) -> Iterator[tuple[int, _Piece]]:
    """The pieces of the instrument's rows ``a`` to ``b`` (positions in ``instrument.rows``), one per
    bucket of ``grain``, each with its first row; ``first_seq``: the stream sequence the backtest gives
    the window's row 0 (a row's is ``first_seq`` plus its index)."""
    price, size = window.columns["price"], window.columns["size"]
    price_scale, size_scale = price.scale, size.scale

    def decimal(units: int) -> Decimal:
        return decimal_of(units, price_scale, price.lake_scale)

    ts = instrument.ts[a:b]
    bucket = ts - ts % grain
    cuts = [0, *(np.flatnonzero(bucket[1:] != bucket[:-1]) + 1).tolist(), b - a]
    for lo, hi in itertools.pairwise(cuts):
        lo, hi = lo + a, hi + a
        first, last = int(instrument.rows[lo]), int(instrument.rows[hi - 1])
        prices = instrument.price[lo:hi]
        piece = _Piece.summed(
            (decimal(int(prices[0])), int(instrument.ts[lo]), first_seq + first),
            (decimal(int(prices[-1])), int(instrument.ts[hi - 1]), first_seq + last),
            decimal(int(prices.max())),
            decimal(int(prices.min())),
            sum_of(
                _exact_sum(instrument.size[lo:hi], window.safe_sums),
                size_scale,
                int(instrument.size_places[lo:hi].max()),
            ),
            sum_of(
                _exact_sum(instrument.notional[lo:hi], window.safe_sums),
                price_scale + size_scale,
                int(instrument.notional_places[lo:hi].max()),
            ),
            hi - lo,
        )
        yield first, piece
