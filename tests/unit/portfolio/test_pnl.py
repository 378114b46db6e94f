"""PnL marked to market, per strategy and in total, checked against the cash of the fills."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import ExecutionReport, Position, Side
from trader.portfolio.pnl import TOTAL_SCOPE, PnlBook, pnl_snapshot, unrealized_pnl
from trader.portfolio.positions import PositionTracker

D = Decimal
TOLERANCE = D("1e-15")
_exec_ids = itertools.count()


def position(quantity: str, average: str | None, **changes: Any) -> Position:
    terms: dict[str, Any] = {
        "account": "paper",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "quantity": D(quantity),
        "average_price": None if average is None else D(average),
        "realized_pnl": D(0),
        "fees": D(0),
    }
    return Position(**{**terms, **changes})


def fill(strategy: str, symbol: str, side: Side, quantity: Decimal, price: Decimal, fee: Decimal):
    return ExecutionReport(
        exec_id=f"x-{next(_exec_ids)}",
        kind="fill",
        client_order_id="o-1",
        strategy=strategy,
        account="paper",
        venue="binance",
        symbol=symbol,
        side=side,
        last_quantity=quantity,
        last_price=price,
        fee=fee,
    )


def test_unrealized_long_short_and_flat() -> None:
    assert unrealized_pnl(position("2", "100"), D("103.5")) == D(7)
    assert unrealized_pnl(position("-2", "100"), D("103.5")) == D(-7)
    assert unrealized_pnl(position("0", None), D("103.5")) == D(0)


def test_snapshot_sums_and_total_is_realized_plus_unrealized_minus_fees() -> None:
    positions = [
        position("2", "100", realized_pnl=D(5), fees=D("1.5")),
        position("-1", "50", symbol="ETHUSDT", realized_pnl=D(-2), fees=D("0.5")),
        position("0", None, symbol="SOLUSDT", realized_pnl=D(3), fees=D(1)),
    ]
    marks = {"BTCUSDT": D(110), "ETHUSDT": D(40), "SOLUSDT": D(20)}
    snapshot = pnl_snapshot("s1", positions, lambda p: marks[p.symbol], 7)
    assert snapshot.scope == "s1"
    assert (snapshot.realized, snapshot.unrealized, snapshot.fees) == (D(6), D(30), D(3))
    assert snapshot.total == D(33)
    assert snapshot.gross_exposure == D(260)  # 2 x 110 + 1 x 40
    assert snapshot.timestamp == 7


def test_marks_prefer_the_positions_venue_and_default_to_the_average_price() -> None:
    book = PnlBook()
    book.update_position(position("1", "100"))
    book.update_position(position("1", "200", venue="okx"))
    book.update_position(position("1", "30", symbol="ETHUSDT"))
    book.update_mark("binance", "BTCUSDT", D(110))
    assert book.total_snapshot(0).unrealized == D(10) + D(-90) + D(0)  # okx marked at binance's price
    book.update_mark("okx", "BTCUSDT", D(190))
    total = book.total_snapshot(0)
    assert total.unrealized == D(10) + D(-10)
    assert total.gross_exposure == D(110) + D(190) + D(30)


def test_strategy_positions_and_net_positions_feed_separate_scopes() -> None:
    book = PnlBook()
    book.update_position(position("1", "100", strategy="a"))
    book.update_position(position("-1", "110", strategy="b"))
    book.update_position(position("0", None, realized_pnl=D(10)))
    book.update_mark("binance", "BTCUSDT", D(104))
    a, b, total = book.snapshots(0)
    assert (a.scope, a.realized, a.unrealized, a.total) == ("a", D(0), D(4), D(4))
    assert (b.scope, b.realized, b.unrealized, b.total) == ("b", D(0), D(6), D(6))
    assert (total.scope, total.realized, total.unrealized, total.total) == (TOTAL_SCOPE, D(10), D(0), D(10))
    assert (a.gross_exposure, b.gross_exposure, total.gross_exposure) == (D(104), D(104), D(0))


random_fills = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.sampled_from(["buy", "sell"]),
        st.integers(min_value=1, max_value=8).map(lambda n: D(n) / 4),
        st.integers(min_value=9_000, max_value=11_000).map(lambda n: D(n) / 100),
        st.integers(min_value=-3, max_value=30).map(lambda n: D(n) / 100),
    ),
    min_size=1,
    max_size=40,
)
random_marks = st.fixed_dictionaries(
    {
        symbol: st.integers(min_value=8_000, max_value=12_000).map(lambda n: D(n) / 100)
        for symbol in ("BTCUSDT", "ETHUSDT")
    }
)


def cash_and_quantities(fills: list[ExecutionReport]) -> tuple[Decimal, dict[str, Decimal], Decimal]:
    """What a mark-to-market of the raw fills gives, with no notion of average price at all."""
    cash, fees, quantities = D(0), D(0), {"BTCUSDT": D(0), "ETHUSDT": D(0)}
    for report in fills:
        assert report.last_price is not None
        signed = report.last_quantity if report.side == "buy" else -report.last_quantity
        cash -= signed * report.last_price
        fees += report.fee
        quantities[report.symbol] += signed
    return cash, quantities, fees


@settings(max_examples=150, deadline=None)
@given(random_fills, random_marks)
def test_pnl_equals_the_mark_to_market_of_the_fills(
    rows: list[tuple[Any, ...]], marks: dict[str, Decimal]
) -> None:
    tracker, book = PositionTracker(), PnlBook()
    fills = [fill(*row) for row in rows]
    for report in fills:
        change = tracker.apply(report)
        assert change is not None
        book.update_position(change.net)
        book.update_position(change.strategy)
    for symbol, price in marks.items():
        book.update_mark("binance", symbol, price)

    snapshots = {snapshot.scope: snapshot for snapshot in book.snapshots(99)}
    assert set(snapshots) == {row[0] for row in rows} | {TOTAL_SCOPE}
    for scope, snapshot in snapshots.items():
        mine = fills if scope == TOTAL_SCOPE else [f for f in fills if f.strategy == scope]
        cash, quantities, fees = cash_and_quantities(mine)
        value = sum((quantity * marks[symbol] for symbol, quantity in quantities.items()), D(0))
        assert snapshot.fees == fees
        assert abs(snapshot.total - (cash + value - fees)) < TOLERANCE
        assert snapshot.total == snapshot.realized + snapshot.unrealized - snapshot.fees
        assert snapshot.gross_exposure == sum((abs(q) * marks[s] for s, q in quantities.items()), D(0))
        assert snapshot.timestamp == 99
    strategies_total = sum((s.total for scope, s in snapshots.items() if scope != TOTAL_SCOPE), D(0))
    assert abs(strategies_total - snapshots[TOTAL_SCOPE].total) < TOLERANCE
