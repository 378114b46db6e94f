"""exeq's desk without the bus: reports, exec ids, algos, and the rebuild after a restart.

The "stream" of a test is the list of messages the desk published, with the orders the router would
have put on ``exec.order.<venue>`` inserted where they were sent: what a restarted exeq replays.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import msgspec

from trader.bus.publish import Outgoing
from trader.execution.desk import ExecutionDesk
from trader.execution.venues import PaperVenue, PaperVenueSettings
from trader.messages import ExecutionReport, MarketTick, VenueOrder, encode

T0 = 1_732_406_400_000
SYMBOL = "BTCUSDT"


def tick(bid: str, ask: str, *, price: str | None = None, size: str = "10", ts: int = T0) -> MarketTick:
    trade = D(price) if price is not None else (D(bid) + D(ask)) / 2
    return MarketTick(
        timestamp=ts,
        exchange="mock",
        venue="mock",
        symbol=SYMBOL,
        price=trade,
        size=D(size),
        volume=D(size),
        bid=D(bid),
        ask=D(ask),
    )


def order(
    vcid: str,
    side: str = "buy",
    quantity: str = "1",
    *,
    type: str = "market",
    price: str | None = None,
    action: str = "new",
    algo: str | None = None,
    **params: str,
) -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=vcid,
        venue_client_id=vcid,
        strategy="s1",
        account="acc",
        venue="paper",
        symbol=SYMBOL,
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        type=type,  # type: ignore[arg-type]
        price=None if price is None else D(price),
        algo=algo,  # type: ignore[arg-type]
        algo_params=params,
    )


class Harness:
    """A desk with a paper venue, a hand-driven clock, and the stream it would have written."""

    def __init__(self, stream: list[Outgoing] | None = None) -> None:
        self.now = T0
        self.stream: list[Outgoing] = stream if stream is not None else []
        self.last_tick: MarketTick | None = None
        venue = PaperVenue(PaperVenueSettings(maker_fee_bps=D(1), taker_fee_bps=D(10)), name="paper")
        self.desk = ExecutionDesk({"paper": venue}, self._publish, lambda: self.now)

    async def _publish(self, items: list[Outgoing]) -> None:
        self.stream.extend(items)

    async def send(self, o: VenueOrder) -> None:
        self.stream.append(Outgoing(f"exec.order.{o.venue}", encode(o)))
        await self.desk.on_order(o)

    async def tick(self, t: MarketTick) -> None:
        self.last_tick = t
        await self.desk.on_tick(t)

    async def play(self, step: tuple[Any, ...]) -> bool:
        """One step of a property test's generated history, of the kinds the desk tests share (a tick,
        an order's new, cancel or replace, an algo's parent, the algos' clock); False for another kind,
        which the test plays itself."""
        kind = step[0]
        if kind == "tick":
            level = D(step[1])
            await self.tick(tick(str(level), str(level + 1), size=str(step[2]), ts=self.now))
        elif kind == "new":
            _, coid, type_, side, quantity, price = step
            await self.send(order(coid, side, str(quantity), type=type_, price=str(price)))
        elif kind == "cancel":
            await self.send(order(step[1], action="cancel"))
        elif kind == "replace":
            await self.send(
                order(step[1], quantity=str(step[2]), type="limit", price=str(step[3]), action="replace")
            )
        elif kind == "algo":  # a parent worked by an algo: a TWAP of 3 slices over 1 s, or an iceberg
            _, coid, algo, type_, quantity, price = step
            params = {"duration_s": "1", "slices": "3"} if algo == "twap" else {"display_quantity": "1"}
            limit = str(price) if type_ == "limit" else None
            await self.send(order(coid, "buy", str(quantity), type=type_, price=limit, algo=algo, **params))
        elif kind == "drive":  # the algos' clock
            self.now += step[1]
            await self.desk.drive_algos()
        else:
            return False
        return True

    async def restarted(self) -> Harness:
        """A new desk rebuilt from this one's stream, then shown the latest stored tick again, as exeq
        after a crash."""
        fresh = Harness(list(self.stream))
        fresh.now = self.now
        for item in self.stream:
            fresh.desk.replay(item.subject, item.payload)
        await fresh.desk.restore()
        if self.last_tick is not None:
            fresh.last_tick = self.last_tick
            await fresh.desk.on_tick(self.last_tick, seen_before=True)
        return fresh

    def reports(self, subject_prefix: str = "exec.report.") -> list[ExecutionReport]:
        return [
            msgspec.json.decode(item.payload, type=ExecutionReport)
            for item in self.stream
            if item.subject.startswith(subject_prefix)
        ]

    def fills(self) -> list[ExecutionReport]:
        return [r for r in self.reports() if r.kind == "fill"]


async def test_market_order_fills_at_the_ask_with_the_taker_fee() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", quantity="2"))
    reports = h.reports()
    assert [r.kind for r in reports] == ["accepted", "fill"]
    fill = reports[1]
    assert (fill.last_quantity, fill.last_price, fill.fee, fill.liquidity) == (
        D(2),
        D(101),
        D("0.202"),
        "taker",
    )
    assert [r.exec_id for r in reports] == ["paper:o1:1", "paper:o1:2"]
    assert all(
        item.msg_id == json_exec_id(item) for item in h.stream if item.subject.startswith("exec.report")
    )


def json_exec_id(item: Outgoing) -> str:
    return msgspec.json.decode(item.payload, type=ExecutionReport).exec_id


async def test_resting_limit_fills_as_maker_when_the_market_crosses_it() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", type="limit", price="99"))
    assert [r.kind for r in h.reports()] == ["accepted"]
    await h.desk.on_tick(tick("99.5", "100.5", ts=T0 + 1))
    assert h.fills() == []
    await h.desk.on_tick(tick("98", "99", ts=T0 + 2))
    (fill,) = h.fills()
    assert (fill.last_quantity, fill.last_price, fill.liquidity, fill.fee) == (
        D(1),
        D(99),
        "maker",
        D("0.0099"),
    )


async def test_a_repeated_order_is_worked_once() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1"))
    await h.send(order("o1"))
    assert [r.kind for r in h.reports()] == ["accepted", "fill"]


async def test_an_order_for_a_venue_not_run_is_rejected() -> None:
    h = Harness()
    await h.send(msgspec.structs.replace(order("o1"), venue="elsewhere"))
    (report,) = h.reports()
    assert (report.kind, report.venue) == ("rejected", "elsewhere")
    assert h.stream[-1].subject == "exec.report.elsewhere"


async def test_cancel_by_client_order_id_cancels_the_resting_order() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", type="limit", price="90"))
    cancel = msgspec.structs.replace(order("o1", action="cancel"), venue_client_id="unknown-to-the-oms")
    await h.send(cancel)
    assert [r.kind for r in h.reports()] == ["accepted", "canceled"]
    assert h.desk.open_orders() == 0


async def test_the_count_of_open_orders_follows_them_as_they_rest_fill_and_cancel() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", type="limit", price="90"))
    await h.send(order("o2", type="limit", price="91"))
    assert h.desk.open_orders() == 2
    await h.send(order("o3"))  # a market order: filled at once
    await h.send(order("o1", action="cancel"))
    assert h.desk.open_orders() == 1
    await h.desk.on_tick(tick("80", "81"))  # crosses o2: filled as maker
    assert h.desk.open_orders() == 0
    await h.send(order("o4", type="limit", price="70"))
    assert h.desk.open_orders() == 1


async def test_ended_orders_are_forgotten_after_the_cutoff_and_stay_repeats() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))  # at T0
    await h.send(order("o1"))  # filled at once: ended at T0
    await h.send(order("rest", type="limit", price="90"))  # working
    assert h.desk.forget_ended(ended_before_ms=T0) == 0  # ended at T0: not before it
    assert h.desk.forget_ended(ended_before_ms=T0 + 1) == 1
    assert (venue := h.desk.adapters["paper"]) is not None
    assert ("paper", "o1") not in h.desk.orders
    assert "o1" not in venue._orders  # type: ignore[attr-defined]
    assert (h.desk.forgotten_count, h.desk.open_orders()) == (1, 1)
    published = len(h.stream)
    await h.send(order("o1"))  # the same venue order again: a repeat, not a second order
    assert len(h.stream) == published + 1  # the order on the stream only: nothing published
    await h.send(order("o1", action="cancel"))
    late = h.reports()[-1]
    # What the venue says of an order it no longer knows, numbered after what was published about it.
    assert (late.kind, late.exec_id) == ("rejected", "paper:o1:3")
    assert late.reason == "cancel rejected: unknown order o1"
    assert h.desk.forget_ended(ended_before_ms=T0 + 10**9) == 0  # the working order stays
    # A restart rebuilds every venue order from the stream, and forgets the same one again.
    fresh = await h.restarted()
    assert fresh.desk.forget_ended(ended_before_ms=T0 + 1) == 1
    assert (fresh.desk.open_orders(), ("paper", "o1") in fresh.desk.orders) == (1, False)
    published = len(fresh.stream)
    await fresh.send(order("o1"))
    assert len(fresh.stream) == published + 1


async def test_the_keys_of_forgotten_orders_are_dropped_a_retention_later() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))  # at T0
    await h.send(order("o1"))  # filled at once: ended at T0
    h.now = T0 + 5
    await h.desk.on_tick(tick("100", "101", ts=T0 + 5))
    await h.send(order("o2"))  # ended at T0 + 5
    assert h.desk.forget_ended(ended_before_ms=T0 + 10) == 2
    assert h.desk.drop_forgotten(ended_before_ms=T0) == 0  # ended at T0: not before it
    assert h.desk.drop_forgotten(ended_before_ms=T0 + 1) == 1
    assert (h.desk.forgotten_count, ("paper", "o1") in h.desk.numbers) == (1, False)
    assert h.desk.numbers[("paper", "o2")] == 2  # still numbered on: a late report follows what was
    assert h.desk.drop_forgotten(ended_before_ms=T0 + 10) == 1
    assert (h.desk.forgotten_count, h.desk.numbers) == (0, {})


async def test_a_child_is_kept_while_its_algo_works_then_forgotten_with_it() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("p1", quantity="1", algo="twap", duration_s="1", slices="4"))
    h.now = T0 + 250
    await h.desk.drive_algos()  # the first two children released and filled
    assert h.desk.forget_ended(ended_before_ms=T0 + 10**9) == 0  # p1 works: its children stay
    for step in range(2, 6):
        h.now = T0 + step * 250
        await h.desk.drive_algos()
    assert h.desk.algos == {}
    # p1 and its four children, at a later cutoff (those kept back are looked at again after a while)
    assert h.desk.forget_ended(ended_before_ms=T0 + 10**9 + 1) == 5
    assert h.desk.orders == {}


async def test_twap_children_fill_the_parent_and_only_the_parent_is_seen_on_exec_report() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("p1", quantity="1", algo="twap", duration_s="1", slices="4"))
    for step in range(1, 6):
        h.now = T0 + step * 250
        await h.desk.drive_algos()
    children = [
        msgspec.json.decode(i.payload, type=VenueOrder) for i in h.stream if "algo.order" in i.subject
    ]
    assert [c.venue_client_id for c in children] == ["p1.1", "p1.2", "p1.3", "p1.4"]
    assert [c.timestamp for c in children] == [T0, T0 + 250, T0 + 500, T0 + 750]
    reports = h.reports()
    assert [r.kind for r in reports] == ["accepted", "fill", "fill", "fill", "fill"]
    assert reports[0].venue_client_id == "p1"
    assert {r.client_order_id for r in reports} == {"p1"}
    assert sum(r.last_quantity for r in h.fills()) == D(1)
    # The children's own acknowledgements stay off the oms's subjects.
    assert [r.kind for r in h.reports("exec.algo.report.")] == ["accepted"] * 4
    assert h.desk.algos == {}


async def test_twap_canceled_midway_ends_the_parent_canceled() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("p1", quantity="1", type="limit", price="50", algo="twap", duration_s="1", slices="2"))
    await h.send(order("p1", action="cancel"))
    kinds = [(r.venue_client_id, r.kind) for r in h.reports()]
    assert kinds == [("p1", "accepted"), ("p1", "canceled")]
    assert [r.kind for r in h.reports("exec.algo.report.")] == ["accepted", "canceled"]
    await h.send(order("p1", action="cancel"))
    assert h.reports()[-1].kind == "rejected"  # nothing left to cancel


async def test_iceberg_releases_the_next_slice_when_one_fills() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101", size="100"))
    await h.send(order("p1", quantity="2.5", algo="iceberg", display_quantity="1"))
    assert [r.last_quantity for r in h.fills()] == [D(1), D(1), D("0.5")]
    assert h.desk.algos == {}


# Restart ----------------------------------------------------------------------------------------


async def test_restart_keeps_the_resting_rest_and_numbers_on_without_repeating() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", quantity="3", type="limit", price="99"))
    await h.desk.on_tick(tick("98", "99", size="1", ts=T0 + 1))  # fills 1 of 3
    before = len(h.stream)
    r = await h.restarted()
    assert len(r.stream) == before, "a restore publishes nothing when nothing was left undone"
    assert r.desk.open_orders() == 1
    await r.desk.on_tick(tick("97", "98", size="5", ts=T0 + 2))
    fills = r.fills()
    assert [(f.exec_id, f.last_quantity, f.last_price) for f in fills] == [
        ("paper:o1:2", D(1), D(99)),
        ("paper:o1:3", D(2), D(99)),
    ]
    assert len({f.venue_order_id for f in fills}) == 1, "the venue order id survives the restart"
    await r.desk.on_tick(tick("96", "97", ts=T0 + 3))
    assert len(r.fills()) == 2, "the order is filled: it does not fill again"


async def test_restart_gives_the_same_fills_as_no_restart() -> None:
    """A crash after any step changes no fill: not its exec id, quantity, price or fee. Each action meets
    a tick of its own, as in a live market: a tick shown again after a restart lends its quote but not
    its size (see the module docstring of exeq)."""

    async def scenario(crash_after: int | None) -> list[tuple[str, D, D | None, D]]:
        h = Harness()
        steps = [
            lambda: h.tick(tick("100", "101", size="0.3")),
            lambda: h.send(order("m1", quantity="1")),  # takes 0.3, the rest works on
            lambda: h.send(order("l1", "sell", "2", type="limit", price="103")),
            lambda: h.send(order("p1", quantity="1", algo="twap", duration_s="1", slices="4")),
            lambda: h.tick(tick("100", "101", size="2", ts=T0 + 1)),
            lambda: h.tick(tick("103", "104", size="1", ts=T0 + 2)),
            lambda: h.tick(tick("103", "104", size="1", ts=T0 + 3)),
            lambda: h.tick(tick("102", "104", price="103", size="1", ts=T0 + 4)),
            lambda: h.desk.drive_algos(),
            lambda: h.tick(tick("102", "103", price="103.5", size="5", ts=T0 + 5)),
            lambda: h.desk.drive_algos(),
            lambda: h.send(order("l2", "buy", "1", type="limit", price="90")),
            lambda: h.tick(tick("95", "96", size="5", ts=T0 + 6)),
            lambda: h.desk.drive_algos(),
            lambda: h.send(order("l2", action="cancel")),
            lambda: h.tick(tick("89", "90", size="5", ts=T0 + 7)),
        ]
        for index, step in enumerate(steps):
            h.now = T0 + index * 200
            await step()
            if index == crash_after:
                h = await h.restarted()
        assert h.desk.open_orders() == 0
        return [(f.exec_id, f.last_quantity, f.last_price, f.fee) for f in h.fills()]

    expected = await scenario(None)
    assert sum(q for _, q, _, _ in expected) == D(1) + D(2) + D(1)
    for crash_after in range(16):
        got = await scenario(crash_after)
        assert got == expected, f"crash after step {crash_after}"
        assert len({exec_id for exec_id, *_ in got}) == len(got)


async def test_restart_carries_out_a_cancel_left_undone() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", type="limit", price="90"))
    # The cancel reached the stream, but exeq died before working it.
    h.stream.append(Outgoing("exec.order.paper", encode(order("o1", action="cancel"))))
    r = await h.restarted()
    assert [x.kind for x in r.reports()] == ["accepted", "canceled"]
    assert r.desk.open_orders() == 0


async def test_restart_restores_a_market_rest_at_the_first_tick() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101", size="0.4"))
    await h.send(order("m1", quantity="1"))
    r = await h.restarted()
    assert len(r.fills()) == 1
    await r.desk.on_tick(tick("100", "102", size="5", ts=T0 + 1))
    assert [(f.exec_id, f.last_quantity, f.last_price) for f in r.fills()] == [
        ("paper:m1:2", D("0.4"), D(101)),
        ("paper:m1:3", D("0.6"), D(102)),
    ]
    assert [x.kind for x in r.reports()].count("accepted") == 1


async def test_a_tick_seen_before_the_restart_does_not_fill_again() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", quantity="2", type="limit", price="99"))
    crossing = tick("98", "99", size="1", ts=T0 + 1)
    await h.desk.on_tick(crossing)
    r = await h.restarted()
    await r.desk.on_tick(crossing, seen_before=True)
    assert len(r.fills()) == 1
    # Its quote is the book again: a market order now waits for liquidity instead of being refused.
    await r.send(order("m1", "sell", "1"))
    assert [x.kind for x in r.reports()][-1] == "accepted"
    await r.desk.on_tick(tick("98", "99", size="2", ts=T0 + 2), seen_before=True)  # newer: it is used
    assert [(f.venue_client_id, f.last_quantity) for f in r.fills()] == [("o1", 1), ("o1", 1), ("m1", 1)]


async def test_restart_rebuilds_an_iceberg_with_its_working_slice() -> None:
    h = Harness()
    await h.tick(tick("100", "101"))
    await h.send(order("p1", quantity="2.5", type="limit", price="99", algo="iceberg", display_quantity="1"))
    await h.tick(tick("98", "99", size="0.5", ts=T0 + 1))  # half of the first slice
    r = await h.restarted()
    algo = r.desk.algos[("paper", "p1")]
    assert (list(algo.children), algo.filled_quantity) == (["p1.1"], D("0.5"))
    await r.tick(tick("98", "99", size="2", ts=T0 + 2))
    fills = [(f.venue_client_id, f.last_quantity) for f in r.fills()]
    assert fills == [("p1.1", D("0.5")), ("p1.1", D("0.5")), ("p1.2", D(1)), ("p1.3", D("0.5"))]
    assert r.desk.algos == {}
    assert r.reports()[-1].kind == "fill", "a parent filled by its children needs no report of its own"


async def test_restart_finishes_a_cancel_of_an_algo_left_halfway() -> None:
    h = Harness()
    await h.tick(tick("100", "101"))
    await h.send(order("p1", quantity="1", type="limit", price="90", algo="twap", duration_s="1", slices="2"))
    # The parent's cancel reached the stream; exeq died before canceling the working child.
    h.stream.append(Outgoing("exec.order.paper", encode(order("p1", action="cancel"))))
    r = await h.restarted()
    assert [(x.venue_client_id, x.kind) for x in r.reports()] == [("p1", "accepted"), ("p1", "canceled")]
    assert [x.kind for x in r.reports("exec.algo.report.")] == ["accepted", "canceled"]
    assert r.desk.algos == {}
    assert r.desk.open_orders() == 0


# Cancel-replace ---------------------------------------------------------------------------------


async def test_replace_moves_a_resting_order_and_an_algo_parent_cannot_be_replaced() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", quantity="2", type="limit", price="90"))
    await h.send(order("o1", quantity="3", type="limit", price="95", action="replace"))
    replaced = h.reports()[-1]
    assert (replaced.kind, replaced.exec_id, replaced.last_quantity, replaced.last_price) == (
        "replaced",
        "paper:o1:2",
        D(3),
        D(95),
    )
    await h.desk.on_tick(tick("94", "94.5", ts=T0 + 1))
    assert [(f.last_quantity, f.last_price) for f in h.fills()] == [(D(3), D(95))]

    await h.send(order("p1", quantity="1", type="limit", price="50", algo="twap", duration_s="1", slices="2"))
    await h.send(order("p1", type="limit", price="60", action="replace", algo="twap"))
    refused = h.reports()[-1]
    assert (refused.kind, refused.venue_client_id) == ("rejected", "p1")
    assert refused.reason == "replace rejected: order p1 is an twap parent; algo orders cannot be replaced"


async def test_restart_restores_the_replaced_terms_and_counts_from_the_first_fill() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", quantity="3", type="limit", price="99"))
    await h.desk.on_tick(tick("98", "99", size="1", ts=T0 + 1))  # fills 1 of 3
    await h.send(order("o1", quantity="4", type="limit", price="97", action="replace"))
    r = await h.restarted()
    # At the replaced price: a trade at 98 would have filled the old 99, not the new 97.
    await r.desk.on_tick(tick("98", "98.5", ts=T0 + 2))
    assert len(r.fills()) == 1
    # The quantity after a restart is still the order's total: 4, 1 filled.
    await r.send(order("o1", quantity="5", type="limit", price="97", action="replace"))
    replaced = r.reports()[-1]
    assert (replaced.kind, replaced.last_quantity, replaced.last_price) == ("replaced", D(5), D(97))
    await r.send(order("o1", quantity="1", type="limit", price="97", action="replace"))
    assert r.reports()[-1].reason == "replace rejected: quantity 1 is not above filled 1"
    await r.desk.on_tick(tick("96", "96.5", ts=T0 + 3))
    assert [(f.last_quantity, f.last_price) for f in r.fills()] == [(D(1), D(99)), (D(4), D(97))]
    assert r.desk.open_orders() == 0


async def test_restart_carries_out_a_replace_left_undone() -> None:
    h = Harness()
    await h.desk.on_tick(tick("100", "101"))
    await h.send(order("o1", type="limit", price="90"))
    # The replace reached the stream, but exeq died before working it.
    h.stream.append(
        Outgoing("exec.order.paper", encode(order("o1", type="limit", price="92", action="replace")))
    )
    r = await h.restarted()
    assert [(x.kind, x.last_price) for x in r.reports()] == [("accepted", None), ("replaced", D(92))]
    await r.desk.on_tick(tick("91", "91.5", ts=T0 + 1))
    assert [(f.last_quantity, f.last_price) for f in r.fills()] == [(D(1), D(92))]
