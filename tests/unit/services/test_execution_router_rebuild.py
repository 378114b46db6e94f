"""The router's rebuild without the bus: decisions and the route messages left unanswered, from a full
replay of EXEC or from a snapshot taken at any point plus the messages after it; the same either way."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.bus.publish import Outgoing
from trader.bus.read import Stored
from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.execution.router import Router
from trader.messages import ExecutionReport, MarketTick, VenueOrder, encode
from trader.orders.retention import IDS_WINDOW_MS
from trader.runtime.intake import Received
from trader.services.execution_router import RouterIntake, RouterState

SETTINGS = Settings(
    routing=RoutingSettings(venues={"*": ["cheap", "pricey"]}),
    exeq=ExeqSettings(venues={"cheap": VenueConfig(kind="binance"), "pricey": VenueConfig(kind="okx")}),
)


class _Log:
    def info(self, event: str, **fields: Any) -> None:
        pass


def reading(replay_to: int = 0) -> RouterIntake:
    router = Router(SETTINGS)
    for venue, ask in (("cheap", "100"), ("pricey", "101")):
        router.on_tick(
            MarketTick(
                timestamp=1,
                exchange=venue,
                venue=venue,
                symbol="BTCUSDT",
                price=D(ask),
                size=D(1),
                volume=D(1),
                bid=D(ask) - 1,
                ask=D(ask),
            )
        )
    intake = RouterIntake(router, SimpleNamespace(log=_Log()))  # type: ignore[arg-type]
    intake.exec = SimpleNamespace(replay_to=replay_to)  # type: ignore[assignment]
    return intake


def route_message(action: str, cid: str) -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=cid,
        venue_client_id=cid,
        strategy="s1",
        account="acc",
        venue="",
        symbol="BTCUSDT",
        side="buy",
        quantity=D(1),
        timestamp=1_732_406_400_000,  # a rejection's time is the order's: answers compare equal
    )


@dataclass
class Stream:
    """EXEC as the live router leaves it: each route message, then what answered it."""

    messages: list[Stored] = field(default_factory=list)

    def append(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> Stored:
        stored = Stored(len(self.messages) + 1, subject, data, headers, 0)
        self.messages.append(stored)
        return stored

    def store(self, outputs: list[Outgoing]) -> None:
        for out in outputs:
            self.append(out.subject, out.payload, out.headers)


def feed(intake: RouterIntake, messages: list[Stored]) -> list[Outgoing]:
    outputs: list[Outgoing] = []
    for stored in messages:
        outputs += intake.take(Received(stored, stored.data))
    return outputs


def live_stream(actions: list[tuple[str, int]], unanswered_tail: int) -> Stream:
    """The route messages answered as they come, but the last ``unanswered_tail`` (a crash before their
    answers were stored)."""
    stream, live = Stream(), reading()
    for i, (action, order) in enumerate(actions):
        stored = stream.append("exec.route.BTCUSDT", encode(route_message(action, f"o{order}")))
        answers = live.take(Received(stored, stored.data))
        if i < len(actions) - unanswered_tail:
            stream.store(answers)
    return stream


ACTIONS = st.lists(
    st.tuples(st.sampled_from(["new", "new", "cancel", "replace"]), st.integers(0, 5)), max_size=25
)


@given(actions=ACTIONS, unanswered=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_a_replay_answers_what_the_stream_shows_unanswered_and_nothing_else(
    actions: list[tuple[str, int]], unanswered: int
) -> None:
    stream = live_stream(actions, unanswered)
    rebuilt = reading(replay_to=len(stream.messages))
    assert feed(rebuilt, stream.messages) == []  # a replay publishes nothing
    answered_now = _run(rebuilt.answer_the_rest())
    tail = actions[len(actions) - min(unanswered, len(actions)) :]
    answered_sources = {int((o.headers or {})["Trader-Source-Seq"]) for o in answered_now}
    route_seqs = [s.seq for s in stream.messages if s.subject.startswith("exec.route.")]
    # Each answer is to a route message of the crashed tail, never to one answered before.
    assert answered_sources <= set(route_seqs[len(route_seqs) - len(tail) :])
    # A new of the tail whose order was not routed before is routed now.
    routed_before = {
        msgspec.json.decode(s.data, type=VenueOrder).client_order_id
        for s in stream.messages
        if s.subject.startswith("exec.order.")
    }
    for (action, order), seq in zip(tail, route_seqs[len(route_seqs) - len(tail) :], strict=True):
        if action == "new" and f"o{order}" not in routed_before:
            assert seq in answered_sources
            routed_before.add(f"o{order}")  # a second new of it in the tail is a repeat
    assert rebuilt.unanswered == {}


@given(actions=ACTIONS, unanswered=st.integers(0, 3), cut=st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_a_snapshot_at_any_point_plus_the_tail_is_the_full_replay(
    actions: list[tuple[str, int]], unanswered: int, cut: float
) -> None:
    stream = live_stream(actions, unanswered)
    end = len(stream.messages)
    full = reading(replay_to=end)
    feed(full, stream.messages)
    point = int(cut * end)
    first = reading(replay_to=end)
    feed(first, stream.messages[:point])
    saved = msgspec.json.encode(first.state())
    restored = reading(replay_to=end)
    restored.restore(msgspec.json.decode(saved, type=RouterState))
    feed(restored, stream.messages[point:])
    assert restored.state() == full.state()
    assert _run(restored.answer_the_rest()) == _run(full.answer_the_rest())


def test_live_messages_that_are_not_route_messages_are_passed_over() -> None:
    intake = reading(replay_to=0)
    stream = Stream()
    stored = stream.append("exec.route.BTCUSDT", encode(route_message("new", "o1")))
    (answer,) = intake.take(Received(stored, stored.data))
    assert answer.subject == "exec.order.cheap"
    stream.store([answer])
    assert intake.take(Received(stream.messages[-1], stream.messages[-1].data)) == []
    assert intake.router.decisions == {"o1": "cheap"}


def _run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


def _report(cid: str, kind: str, at: int, quantity: str = "0") -> bytes:
    return encode(
        ExecutionReport(
            exec_id=f"cheap:{cid}:{kind}",
            kind=kind,  # type: ignore[arg-type]
            client_order_id=cid,
            strategy="s1",
            account="acc",
            venue="cheap",
            symbol="BTCUSDT",
            side="buy",
            last_quantity=D(quantity),
            last_price=D(100) if kind == "fill" else None,
            timestamp=at,
        )
    )


def test_a_decision_is_kept_while_its_order_works_and_a_window_after_it_ended() -> None:
    t0 = 1_732_406_400_000
    stream, live = Stream(), reading()
    for cid in ("filled", "canceled", "working"):
        stored = stream.append("exec.route.BTCUSDT", encode(route_message("new", cid)))
        stream.store(live.take(Received(stored, stored.data)))
        feed(live, stream.messages[-1:])  # its answer, read back
    events = [
        ("filled", "accepted", t0, "0"),
        ("filled", "fill", t0, "1"),  # all of it: ended at t0
        ("canceled", "canceled", t0 + 10, "0"),
        ("working", "accepted", t0 + 20, "0"),
    ]
    for cid, kind, at, quantity in events:
        stream.append("exec.report.cheap", _report(cid, kind, at, quantity))
    feed(live, stream.messages[-len(events) :])
    assert set(live.router.decisions) == {"filled", "canceled", "working"}
    # Reports of another order, past the window: the ended ones' decisions go, the working one's stays.
    stored = stream.append("exec.route.BTCUSDT", encode(route_message("new", "later")))
    stream.store(live.take(Received(stored, stored.data)))
    feed(live, stream.messages[-1:])
    stream.append("exec.report.cheap", _report("later", "accepted", t0 + IDS_WINDOW_MS + 5))
    feed(live, stream.messages[-1:])
    assert set(live.router.decisions) == {"canceled", "working", "later"}  # canceled at t0 + 10
    stream.append("exec.report.cheap", _report("later", "accepted", t0 + IDS_WINDOW_MS + 11))
    feed(live, stream.messages[-1:])
    assert set(live.router.decisions) == {"working", "later"}
    # A cancel of the working order, however old, still goes where it went.
    cancel = stream.append("exec.route.BTCUSDT", encode(route_message("cancel", "working")))
    (answer,) = live.take(Received(cancel, cancel.data))
    assert answer.subject == "exec.order.cheap"
    # And a replay of the whole stream, or a snapshot at any point plus the rest, holds the same.
    end = len(stream.messages)
    full = reading(replay_to=end)
    feed(full, stream.messages)
    assert set(full.router.decisions) == {"working", "later"}
    for point in range(end + 1):
        first = reading(replay_to=end)
        feed(first, stream.messages[:point])
        restored = reading(replay_to=end)
        restored.restore(msgspec.json.decode(msgspec.json.encode(first.state()), type=RouterState))
        feed(restored, stream.messages[point:])
        assert restored.state() == full.state(), point
