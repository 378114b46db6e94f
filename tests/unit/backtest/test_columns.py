"""The lake's ticks taken column-wise (``trader.backtest.columns``): each row made back into the tick the
lake reader makes, and bars summed up column-wise that are the live bar builder's, to the digit."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import msgspec
import pyarrow as pa
import pytest

from trader.backtest.columns import WindowColumns, bar_pieces
from trader.backtest.data import lake_table, ticks_of
from trader.marketdata.bars import BarBuilder, Output
from trader.messages import MarketTick

T0 = 1_764_547_200_000
INSTRUMENTS = [("mock", "BTCUSDT", "60000"), ("mock", "ETHUSDT", "3000"), ("mock2", "BTCUSDT", "60010")]


def random_ticks(seed: int, count: int) -> list[MarketTick]:
    """Ticks of three instruments (two venues of one symbol), prices of 0 to 4 places and sizes of 2 to 8
    with trailing zeros now and then, ties in time, no bid or ask on some, and quiet minutes."""
    rng = random.Random(seed)
    prices = {(v, s): Decimal(p) for v, s, p in INSTRUMENTS}
    ticks, now = [], T0 - 3_000
    for _ in range(count):
        now += rng.choice([0, 0, 1, 7, 130, 999]) if rng.random() > 0.01 else rng.randint(60_000, 200_000)
        venue, symbol, _ = rng.choice(INSTRUMENTS)
        price = prices[(venue, symbol)] + Decimal(rng.randint(-300, 300)).scaleb(-rng.randint(0, 4))
        prices[(venue, symbol)] = price
        size = Decimal(rng.randint(0, 10**4)).scaleb(-rng.randint(2, 8))  # sums past 64 bits, now and then
        quoted = rng.random() > 0.2
        ticks.append(
            MarketTick(
                timestamp=now,
                exchange="mock",
                venue=venue,
                symbol=symbol,
                price=price,
                size=size,
                volume=size * 2,
                bid=price - Decimal("0.5") if quoted else None,
                ask=price + Decimal("0.50") if quoted and rng.random() > 0.1 else None,
                side=rng.choice(["buy", "sell", None]),
                trade_id=str(rng.randint(0, 10**9)) if rng.random() > 0.5 else None,
            )
        )
    return ticks


def window(ticks: list[MarketTick]) -> pa.Table:
    """The ticks as the lake reader hands a window over: lake rows, sorted by (ts, stream_seq)."""
    return lake_table(ticks).sort_by([("ts", "ascending"), ("stream_seq", "ascending")])


def exact(value: object) -> bytes:
    return msgspec.json.encode(value)  # a Decimal as its digits and exponent: 1.0 is not 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_row_is_the_tick_the_lake_reader_makes(seed: int) -> None:
    table = window(random_ticks(seed, 3_000))
    columns = WindowColumns.of(table)
    assert columns is not None
    read = list(ticks_of(table))
    assert [exact(columns.tick(r)) for r in range(table.num_rows)] == [exact(t) for t in read]
    assert [exact(columns.price(r)) for r in range(table.num_rows)] == [exact(t.price) for t in read]


def feed_live(builder: BarBuilder, ticks: list[MarketTick], first: int) -> None:
    for n, tick in enumerate(ticks):
        assert builder.add(tick, first + n, tick.timestamp) == "ok"


def feed_columns(builder: BarBuilder, columns: WindowColumns, i: int, j: int) -> None:
    """Rows ``i`` to ``j`` as the backtest adds them: pieces per instrument and grain, in the order of
    their first rows (row r's stream sequence is r + 1)."""
    pieces = []
    for instrument in columns.instruments:
        a, b = (int(x) for x in instrument.rows.searchsorted((i, j)))
        if a < b:
            for row, piece in bar_pieces(columns, instrument, a, b, 1, builder.grain):
                pieces.append((row, instrument.key, piece))
    for _, (venue, symbol), piece in sorted(pieces, key=lambda p: p[0]):
        assert builder.add_summed(venue, symbol, piece, int(columns.ts[j - 1]))


def shown(output: Output) -> list[bytes]:
    return [exact(bar) for bar in output.bars + output.open_bars]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_bars_summed_column_wise_are_the_live_builders_to_the_digit(seed: int) -> None:
    """Random ticks cut at random rows (a cut may fall inside a grain): the live builder takes them one by
    one, the other column-wise; after each cut both advance to its last tick and give the same bars,
    closed and in progress, every field to the digit (volume, VWAP, notional, trades included)."""
    table = window(random_ticks(seed, 5_000))
    ticks = list(ticks_of(table))
    columns = WindowColumns.of(table)
    assert columns is not None
    live = BarBuilder(["1s", "1m", "5m"], 2_000)
    summed = BarBuilder(["1s", "1m", "5m"], 2_000)
    rng = random.Random(seed)
    cuts = sorted({0, len(ticks), *(rng.randrange(1, len(ticks)) for _ in range(40))})
    closed = 0
    for i, j in itertools.pairwise(cuts):
        feed_live(live, ticks[i:j], i + 1)
        feed_columns(summed, columns, i, j)
        now = ticks[j - 1].timestamp
        expected = shown(live.advance(now))
        assert shown(summed.advance(now)) == expected
        closed += len(expected)
    end = ticks[-1].timestamp + 10 * 60_000
    assert shown(summed.advance(end)) == shown(live.advance(end))
    assert closed > 100, "few bars: little compared"


def test_bars_equal_those_of_the_feeds_own_ticks_in_value() -> None:
    """The lake drops the trailing zeros a feed wrote: the bars of its ticks are the same numbers."""
    original = random_ticks(5, 2_000)
    table = window(original)
    columns = WindowColumns.of(table)
    assert columns is not None
    live, summed = BarBuilder(["1m"], 0), BarBuilder(["1m"], 0)
    feed_live(live, sorted(original, key=lambda t: t.timestamp), 1)
    feed_columns(summed, columns, 0, table.num_rows)
    end = original[-1].timestamp + 120_000
    mine, theirs = summed.advance(end).bars, live.advance(end).bars
    assert [msgspec.structs.astuple(b) for b in mine] == [msgspec.structs.astuple(b) for b in theirs]


def test_a_window_beyond_64_bit_sums_is_not_taken_column_wise() -> None:
    big = random_ticks(6, 10)
    big[3] = msgspec.structs.replace(big[3], price=Decimal("123456789012345.5"), size=Decimal("99999"))
    assert WindowColumns.of(window(big)) is None
