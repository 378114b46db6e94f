from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.execution.algos import (
    ALGOS,
    AlgoParamsError,
    AlgoState,
    ExecutionAlgo,
    Iceberg,
    Twap,
    create_algo,
    restore_algo,
    twap_quantities,
)
from trader.execution.venues import PaperVenue, PaperVenueSettings
from trader.messages import ExecutionReport, MarketTick, VenueOrder

T0 = 1_732_406_400_000


def parent(
    algo: str = "twap",
    quantity: str = "1",
    *,
    type: str = "market",
    price: str | None = None,
    **params: str,
) -> VenueOrder:
    return VenueOrder(
        action="new",
        client_order_id="p1",
        venue_client_id="p1",
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        quantity=D(quantity),
        type=type,  # type: ignore[arg-type]
        price=None if price is None else D(price),
        algo=algo,  # type: ignore[arg-type]
        algo_params=params,
    )


def report(
    child: str,
    kind: str = "fill",
    quantity: str = "0",
    price: str | None = None,
    *,
    fee: str = "0",
    exec_id: str | None = None,
    reason: str | None = None,
) -> ExecutionReport:
    return ExecutionReport(
        exec_id=exec_id or f"x:{child}:{kind}:{quantity}",
        kind=kind,  # type: ignore[arg-type]
        client_order_id="p1",
        venue_client_id=child,
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        last_quantity=D(quantity),
        last_price=None if price is None else D(price),
        fee=D(fee),
        reason=reason,
    )


def ids(orders: list[VenueOrder]) -> list[str]:
    return [o.venue_client_id for o in orders]


# TWAP slicing -----------------------------------------------------------------------------------

quantities = st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), places=8)
lot_sizes = st.sampled_from([D("1"), D("0.5"), D("0.25"), D("0.1"), D("0.001"), D("0.00000001"), D("3")])


@given(total=quantities, slices=st.integers(min_value=1, max_value=60), lot=lot_sizes)
def test_twap_slices_sum_exactly_to_the_parent(total: D, slices: int, lot: D) -> None:
    parts = twap_quantities(total, slices, lot)
    assert sum(parts, D(0)) == total
    assert all(part > 0 for part in parts)
    assert 1 <= len(parts) <= slices
    *head, last = parts
    assert len(set(head)) <= 1  # equal slices ...
    assert all(part % lot == 0 for part in head)  # ... of whole lots
    assert all(last >= part for part in head)  # the remainder goes in the last
    if total >= lot * slices:
        assert len(parts) == slices
    if head:
        assert last - head[0] < lot * len(parts)  # the remainder is less than one lot per slice


@given(total=quantities, slices=st.integers(min_value=1, max_value=30), lot=lot_sizes)
def test_twap_children_sum_exactly_to_the_parent(total: D, slices: int, lot: D) -> None:
    twap = Twap(parent(quantity=str(total), duration_s="60", slices=str(slices), lot_size=str(lot)))
    children = twap.next_actions(T0) + twap.next_actions(T0 + 60_000)
    assert sum((c.quantity for c in children), D(0)) == total
    assert twap.next_due_ms() is None


def test_twap_with_a_lot_size_puts_the_remainder_in_the_last_slice() -> None:
    assert twap_quantities(D("1.003"), 4, D("0.01")) == [D("0.25"), D("0.25"), D("0.25"), D("0.253")]
    assert twap_quantities(D("10"), 3, D("1")) == [D("3"), D("3"), D("4")]
    assert twap_quantities(D("0.02"), 5, D("0.01")) == [D("0.01"), D("0.01")]  # fewer lots than slices
    assert twap_quantities(D("0.005"), 5, D("0.01")) == [D("0.005")]  # less than a lot: one slice


def test_twap_releases_slices_evenly_over_the_duration() -> None:
    twap = create_algo(parent(quantity="1", duration_s="60", slices="4"))
    assert isinstance(twap, Twap)
    first = twap.next_actions(T0)
    assert ids(first) == ["p1.1"]
    assert first[0].quantity == D("0.25")
    assert twap.next_due_ms() == T0 + 15_000
    assert twap.next_actions(T0 + 14_999) == []
    assert ids(twap.next_actions(T0 + 15_000)) == ["p1.2"]
    assert twap.next_due_ms() == T0 + 30_000
    # A late call catches up with every slice due.
    assert ids(twap.next_actions(T0 + 60_000)) == ["p1.3", "p1.4"]
    assert twap.next_actions(T0 + 120_000) == []
    assert twap.next_due_ms() is None
    assert twap.released_quantity == D("1")


def test_twap_uneven_duration_due_times_are_whole_milliseconds() -> None:
    twap = Twap(parent(quantity="3", duration_s="1", slices="3"))
    assert twap.offsets_ms == [0, 333, 666]


def test_child_orders_inherit_the_parent_but_not_its_algo() -> None:
    twap = Twap(parent(quantity="2", type="limit", price="100", duration_s="10", slices="2"))
    child = twap.next_actions(T0)[0]
    assert child.action == "new"
    assert child.client_order_id == "p1"
    assert child.venue_client_id == "p1.1"
    assert (child.type, child.price, child.side, child.symbol) == ("limit", D("100"), "buy", "BTCUSDT")
    assert child.algo is None
    assert child.algo_params == {}
    assert child.timestamp == T0
    assert child.quantity == D("1")


# The parent's aggregate -------------------------------------------------------------------------


def test_parent_fill_is_the_sum_of_child_fills() -> None:
    twap = Twap(parent(quantity="1", duration_s="10", slices="2"))
    twap.next_actions(T0)
    twap.next_actions(T0 + 5_000)
    twap.on_report(report("p1.1", "accepted"))
    twap.on_report(report("p1.1", "fill", "0.2", "100", fee="0.02"))
    twap.on_report(report("p1.1", "fill", "0.3", "101", fee="0.0303"))
    twap.on_report(report("p1.2", "fill", "0.5", "102", fee="0.051"))
    assert twap.filled_quantity == D("1")
    assert twap.leaves_quantity == D("0")
    assert twap.average_price == D("101.3")  # (20 + 30.3 + 51) / 1
    assert twap.fees == D("0.1013")
    assert twap.is_done


def test_a_report_seen_twice_counts_once_and_strangers_are_ignored() -> None:
    twap = Twap(parent(quantity="1", duration_s="10", slices="2"))
    twap.next_actions(T0)
    fill = report("p1.1", "fill", "0.25", "100")
    twap.on_report(fill)
    twap.on_report(fill)
    twap.on_report(report("p1.9", "fill", "0.25", "100"))  # not a child of this parent
    twap.on_report(report("other", "fill", "0.25", "100"))
    assert twap.filled_quantity == D("0.25")
    assert twap.children["p1.1"].filled == D("0.25")


def test_parent_fill_never_exceeds_the_parent_quantity() -> None:
    twap = Twap(parent(quantity="1", duration_s="10", slices="1"))
    twap.next_actions(T0)
    twap.on_report(report("p1.1", "fill", "0.75", "100", exec_id="e1"))
    twap.on_report(report("p1.1", "fill", "0.5", "110", exec_id="e2"))  # a venue overfilled
    assert twap.filled_quantity == D("1")
    assert twap.average_price == D("102.5")  # 0.75 at 100 and only 0.25 at 110 count
    assert twap.leaves_quantity == D("0")


def test_twap_is_not_done_while_a_child_works_and_ends_short_after_a_failed_child() -> None:
    twap = Twap(parent(quantity="1", duration_s="10", slices="2"))
    twap.next_actions(T0)
    twap.next_actions(T0 + 5_000)
    twap.on_report(report("p1.1", "fill", "0.5", "100"))
    assert not twap.is_done
    twap.on_report(report("p1.2", "expired"))
    assert twap.is_done
    assert twap.leaves_quantity == D("0.5")


def test_cancel_returns_cancels_for_working_children_and_stops_releasing() -> None:
    twap = Twap(parent(quantity="1", duration_s="10", slices="4"))
    twap.next_actions(T0)
    twap.next_actions(T0 + 2_500)
    twap.on_report(report("p1.1", "fill", "0.25", "100"))
    cancels = twap.cancel(T0 + 3_000)
    assert ids(cancels) == ["p1.2"]
    assert cancels[0].action == "cancel"
    assert cancels[0].timestamp == T0 + 3_000
    assert twap.next_actions(T0 + 10_000) == []
    assert not twap.is_done  # p1.2 may still fill until its cancel is confirmed
    twap.on_report(report("p1.2", "canceled"))
    assert twap.is_done


# Iceberg ----------------------------------------------------------------------------------------


def test_iceberg_releases_the_next_slice_when_the_visible_one_fills() -> None:
    iceberg = create_algo(parent("iceberg", "1", type="limit", price="100", display_quantity="0.3"))
    assert isinstance(iceberg, Iceberg)
    first = iceberg.next_actions(T0)
    assert [(o.venue_client_id, o.quantity) for o in first] == [("p1.1", D("0.3"))]
    assert iceberg.next_actions(T0 + 1) == []  # one visible at a time
    iceberg.on_report(report("p1.1", "fill", "0.1", "100"))
    assert iceberg.next_actions(T0 + 2) == []  # partly filled: still visible
    iceberg.on_report(report("p1.1", "fill", "0.2", "100"))
    assert [(o.venue_client_id, o.quantity) for o in iceberg.next_actions(T0 + 3)] == [("p1.2", D("0.3"))]
    iceberg.on_report(report("p1.2", "fill", "0.3", "100"))
    assert ids(iceberg.next_actions(T0 + 4)) == ["p1.3"]
    iceberg.on_report(report("p1.3", "fill", "0.3", "100"))
    last = iceberg.next_actions(T0 + 5)
    assert [(o.venue_client_id, o.quantity) for o in last] == [("p1.4", D("0.1"))]
    assert not iceberg.is_done
    iceberg.on_report(report("p1.4", "fill", "0.1", "100"))
    assert iceberg.next_actions(T0 + 6) == []
    assert iceberg.is_done
    assert iceberg.filled_quantity == D("1")
    assert iceberg.released_quantity == D("1")


def test_iceberg_stops_when_a_child_ends_unfilled() -> None:
    iceberg = Iceberg(parent("iceberg", "1", type="limit", price="100", display_quantity="0.4"))
    iceberg.next_actions(T0)
    iceberg.on_report(report("p1.1", "fill", "0.1", "100"))
    iceberg.on_report(report("p1.1", "rejected", reason="post-only"))
    assert iceberg.next_actions(T0 + 1) == []
    assert iceberg.is_done
    assert iceberg.stopped_reason == "child p1.1 rejected: post-only"
    assert iceberg.filled_quantity == D("0.1")


async def test_iceberg_against_the_paper_venue() -> None:
    venue = PaperVenue(PaperVenueSettings(maker_fee_bps=D("0"), taker_fee_bps=D("0")))
    iceberg = Iceberg(parent("iceberg", "1", type="limit", price="100", display_quantity="0.4"))
    released: list[str] = []
    venue.on_tick(_tick("100.5", "5", T0, bid="100.2", ask="100.6"))
    for step in range(1, 10):
        for child in iceberg.next_actions(T0 + step):
            released.append(child.venue_client_id)
            for r in await venue.submit(child):
                iceberg.on_report(r)
        # A trade prints through the limit with room for 0.25; the quote stays above: children rest.
        for r in venue.on_tick(_tick("99.9", "0.25", T0 + step)):
            iceberg.on_report(r)
    assert released == ["p1.1", "p1.2", "p1.3"]
    assert [c.order.quantity for c in iceberg.children.values()] == [D("0.4"), D("0.4"), D("0.2")]
    assert iceberg.is_done
    assert iceberg.filled_quantity == D("1")
    assert iceberg.average_price == D("100")


# Parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (parent("twap", slices="4"), "needs 'duration_s'"),
        (parent("twap", duration_s="ten"), "not a number"),
        (parent("twap", duration_s="-1"), "must be positive"),
        (parent("twap", duration_s="10", slices="2.5"), "whole number"),
        (parent("twap", "0", duration_s="10"), "quantity must be positive"),
        (parent("iceberg"), "needs 'display_quantity'"),
        (parent("iceberg", display_quantity="NaN"), "must be positive"),
    ],
)
def test_bad_parents_are_refused_with_a_reason(order: VenueOrder, message: str) -> None:
    with pytest.raises(AlgoParamsError, match=message):
        create_algo(order)


def test_registry_and_wrong_algo() -> None:
    assert (ALGOS["twap"], ALGOS["iceberg"], len(ALGOS)) == (Twap, Iceberg, 2)
    assert issubclass(Twap, ExecutionAlgo)
    with pytest.raises(AlgoParamsError, match="unknown algo"):
        create_algo(parent(None))  # type: ignore[arg-type]
    with pytest.raises(AlgoParamsError, match="cannot work"):
        Twap(parent("iceberg", display_quantity="1"))


def _tick(price: str, size: str, ts: int, *, bid: str | None = None, ask: str | None = None) -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange="mock",
        venue="mock",
        symbol="BTCUSDT",
        price=D(price),
        size=D(size),
        volume=D(size),
        bid=None if bid is None else D(bid),
        ask=None if ask is None else D(ask),
    )


# Snapshots ---------------------------------------------------------------------------------------


def _kept(algo: ExecutionAlgo) -> ExecutionAlgo:
    """The algo through a snapshot: its state encoded as stored, decoded, and made again."""
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(algo.state()), type=AlgoState)
    return restore_algo(state)


def test_a_twap_made_again_from_its_state_goes_on_as_the_one_it_was_taken_of() -> None:
    twap = create_algo(parent("twap", "1", duration_s="1", slices="4"))
    assert ids(twap.next_actions(T0 + 10)) == ["p1.1"]
    twap.on_report(report("p1.1", "fill", "0.25", "100", fee="0.01"))
    assert ids(twap.next_actions(T0 + 260)) == ["p1.2"]
    twap.on_report(report("p1.2", "fill", "0.1", "101"))
    again = _kept(twap)
    assert again.state() == twap.state()
    assert (again.filled_quantity, again.average_price, again.fees) == (
        twap.filled_quantity,
        twap.average_price,
        twap.fees,
    )
    again.on_report(report("p1.2", "fill", "0.1", "101"))  # a repeat: seen before the snapshot
    assert again.filled_quantity == D("0.35")
    assert again.next_due_ms() == twap.next_due_ms() == T0 + 10 + 500  # the clock from its start
    for algo in (twap, again):
        assert ids(algo.next_actions(T0 + 510)) == ["p1.3"]
    assert again.state() == twap.state()


def test_an_iceberg_made_again_keeps_why_it_stopped_and_a_canceled_algo_stays_canceled() -> None:
    iceberg = create_algo(parent("iceberg", "1", type="limit", price="100", display_quantity="0.4"))
    iceberg.next_actions(T0)
    iceberg.on_report(report("p1.1", "rejected", reason="post-only"))
    again = _kept(iceberg)
    assert isinstance(again, Iceberg)
    assert (again.stopped_reason, again.is_done) == ("child p1.1 rejected: post-only", True)
    twap = create_algo(parent("twap", "1", duration_s="1", slices="2"))
    twap.next_actions(T0)
    twap.cancel(T0 + 1)
    again = _kept(twap)
    assert again.canceled
    assert again.next_actions(T0 + 600) == []
    assert [c.order.venue_client_id for c in again.working_children] == ["p1.1"]
