"""The strategy service's contexts from snapshots: for any history of a strategy's orders (its requests,
the oms's states of them) and fills, a snapshot of the live context taken at any point (ahead of the
streams by the requests it sent and has not read back), plus what each stream holds after what the
snapshot covers, gives the context of a replay of both streams whole."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.config import StrategyConfig
from trader.messages import ExecutionReport, Order, OrderRequest
from trader.orders.retention import IDS_WINDOW_MS
from trader.orders.state import new_order
from trader.runtime.snapshots import decode_record, encode_record
from trader.strategies import OrderContext
from trader.strategies.context import ContextState

VERSION = 1
CONFIG = StrategyConfig(name="s1", kind="ma_cross", symbols=["BTCUSDT"])
Message = tuple[str, Any]  # ("submit", OrderRequest) or ("state", Order) on ORDERS; a report on EXEC

steps = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 3)),
        st.tuples(st.just("oms"), st.integers(0, 5), st.sampled_from(["next", "cancel"])),
        st.tuples(st.just("read"), st.sampled_from(["ORDERS", "EXEC"]), st.integers(1, 4)),
        st.just(("snapshot",)),
    ),
    max_size=40,
)


def _context(clock: int = 1_000) -> OrderContext:
    return OrderContext(CONFIG, clock=lambda: clock)


def _fill(order: Order, n: int) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"{order.client_order_id}:{n}",
        kind="fill",
        client_order_id=order.client_order_id,
        strategy="s1",
        account=order.account,
        venue="paper",
        symbol=order.symbol,
        side=order.side,
        last_quantity=D(1),
        last_price=D(100),
        timestamp=1_000 + n,
    )


class Oms:
    """What the oms and the venue publish about the strategy's orders, one step at a time, each
    ``spacing`` ms after the last (the contexts keep the ids of settled orders, and the exec ids, for a
    window of that time)."""

    def __init__(self, spacing: int) -> None:
        self.orders: dict[str, Order] = {}
        self.fills: dict[str, int] = {}
        self.spacing, self.now = spacing, 1_000

    def step(
        self, request: OrderRequest, how: str, orders: list[Message], execs: list[ExecutionReport]
    ) -> None:
        coid = request.client_order_id
        order = self.orders.get(coid)
        if order is not None and order.is_terminal:
            return
        self.now += self.spacing
        if order is None:
            order = msgspec.structs.replace(new_order(request, self.now), version=1)
        elif how == "cancel":
            order = msgspec.structs.replace(order, status="CANCELED", version=order.version + 1)
        elif order.status == "NEW":
            order = msgspec.structs.replace(order, status="ACCEPTED", version=order.version + 1)
        else:  # a fill of one, its report first
            n = self.fills.get(coid, 0) + 1
            self.fills[coid] = n
            execs.append(msgspec.structs.replace(_fill(order, n), timestamp=self.now))
            filled = order.filled_quantity + 1
            status = "FILLED" if filled >= order.quantity else "PARTIALLY_FILLED"
            order = msgspec.structs.replace(
                order, status=status, filled_quantity=filled, average_price=D(100), version=order.version + 1
            )
        order = msgspec.structs.replace(order, updated=self.now)
        self.orders[coid] = order
        orders.append(("state", order))


def _apply(ctx: OrderContext, stream: str, message: Any, *, history: bool) -> None:
    if stream == "EXEC":
        ctx.apply_fill(message)
        return
    kind, value = message
    if kind == "state":
        ctx.apply_order(value)
    elif history:  # a request: the service's own when new, the history's note of an order sent
        ctx.note_request(value)


def _replay(
    ctx: OrderContext, orders: list[Message], execs: list[ExecutionReport], order_first: bool
) -> None:
    """Both streams applied as history, one after the other (the two inputs are read side by side)."""
    streams: list[tuple[str, list[Any]]] = [("ORDERS", list(orders)), ("EXEC", list(execs))]
    for stream, messages in streams if order_first else reversed(streams):
        for message in messages:
            _apply(ctx, stream, message, history=True)


def _whole(ctx: OrderContext) -> tuple[object, ...]:
    state = ctx.snapshot()
    return (
        sorted(state.orders, key=lambda o: o.client_order_id),
        sorted(zip(state.done, state.done_times, strict=True)),
        state.fills_seen,
        sorted(state.positions, key=lambda p: (p.strategy or "", p.symbol)),
        sorted(zip(state.exec_ids, state.exec_times, strict=True)),
        state.session_seen,
        ctx._next_id(),
    )


@settings(max_examples=300, deadline=None)
@given(history=steps, data=st.data())
def test_a_snapshot_plus_the_tails_is_a_full_replay(
    history: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    live = _context()
    oms = Oms(data.draw(st.sampled_from([0, IDS_WINDOW_MS // 5, IDS_WINDOW_MS])))
    requests: list[OrderRequest] = []
    orders: list[Message] = []
    execs: list[ExecutionReport] = []
    applied = {"ORDERS": 0, "EXEC": 0}
    snapshots = [(live.snapshot(), dict(applied))]
    for step in history:
        if step[0] == "submit":
            live.submit("buy", "BTCUSDT", D(step[1]), type="limit", price=D(100))
            [instruction] = live.take_instructions()
            assert isinstance(instruction.message, OrderRequest)
            requests.append(instruction.message)
            orders.append(("submit", instruction.message))  # published: the outbox is idle
        elif step[0] == "oms" and requests:
            oms.step(requests[step[1] % len(requests)], step[2], orders, execs)
        elif step[0] == "read":
            stream, count = step[1], step[2]
            held: list[Any] = orders if stream == "ORDERS" else execs
            for message in held[applied[stream] : applied[stream] + count]:
                _apply(live, stream, message, history=False)
            applied[stream] = min(len(held), applied[stream] + count)
        elif step[0] == "snapshot":
            snapshots.append((live.snapshot(), dict(applied)))
    taken, covers = data.draw(st.sampled_from(snapshots))
    stored = encode_record(taken, covers, VERSION, 0)
    loaded = decode_record(stored, ContextState, VERSION)
    assert loaded.covers == covers
    order_first = data.draw(st.booleans())
    restarted = _context(clock=2_000)  # a restart: a later session
    restarted.restore(loaded.state)
    _replay(restarted, orders[covers["ORDERS"] :], execs[covers["EXEC"] :], order_first)
    full = _context(clock=2_000)
    _replay(full, orders, execs, data.draw(st.booleans()))
    assert _whole(restarted) == _whole(full)
    # The ids it makes next stay above every one it made before.
    sessions = [int(r.client_order_id.split("-")[1]) for r in requests]
    assert all(int(restarted._next_id().split("-")[1]) > s for s in sessions)
