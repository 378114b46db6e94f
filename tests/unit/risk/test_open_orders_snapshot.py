"""Risk's open orders from a snapshot plus the states after it are those of a full replay of the states:
the same orders, the same sums, the same decisions (``trader.risk.open_orders.OpenOrdersState``)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trader.messages import Order, OrderRequest
from trader.risk import PreTradeRisk, RiskLimits
from trader.risk.open_orders import OPEN_ORDERS_VERSION, OpenOrdersState
from trader.runtime.snapshots import decode_record, encode_record

ACCOUNTS = ("a1", "a2")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
STRATEGIES = ("s", "t")
STATUSES = ("NEW", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL", "FILLED", "CANCELED", "REJECTED")

decimals = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3)
states = st.builds(
    lambda cid, strategy, account, symbol, side, qty, filled_part, price, status: Order(
        client_order_id=f"c{cid}",
        strategy=strategy,
        account=account,
        symbol=symbol,
        side=side,
        type="limit" if price is not None else "market",
        quantity=qty,
        filled_quantity=(qty * filled_part).quantize(Decimal("0.001")),
        status=status,
        price=price,
    ),
    st.integers(0, 6),
    st.sampled_from(STRATEGIES),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(SYMBOLS),
    st.sampled_from(("buy", "sell")),
    decimals,
    st.sampled_from((Decimal(0), Decimal("0.5"))),
    st.none() | decimals,
    st.sampled_from(STATUSES),
)
LIMITS = RiskLimits(
    max_order_notional=Decimal(100_000),
    max_position_per_symbol=Decimal(150),
    max_gross_exposure=Decimal(20_000),
    max_orders_per_second=1_000_000,
)


def _versioned(history: list[Order]) -> list[Order]:
    """Each id's states in rising versions, as the oms publishes them."""
    versions: dict[str, int] = {}
    out = []
    for state in history:
        versions[state.client_order_id] = versions.get(state.client_order_id, 0) + 1
        out.append(Order(**{**_fields(state), "version": versions[state.client_order_id]}))
    return out


def _fields(order: Order) -> dict[str, object]:
    return {name: getattr(order, name) for name in order.__struct_fields__}


def _risk() -> PreTradeRisk:
    risk = PreTradeRisk(LIMITS)
    risk.update_price("BTCUSDT", Decimal("60.5"))
    risk.update_price("ETHUSDT", Decimal("3.25"))
    return risk


def _decisions(risk: PreTradeRisk) -> list[tuple[bool, str | None]]:
    """What the risk decides on a fixed set of requests (each touching the open orders' sums)."""
    out = []
    cases = itertools.product(ACCOUNTS, SYMBOLS, ("buy", "sell"), STRATEGIES)
    for i, (account, symbol, side, strategy) in enumerate(cases):
        request = OrderRequest(
            client_order_id=f"r{i}",
            strategy=strategy,
            account=account,
            symbol=symbol,
            side=side,
            quantity=Decimal(40),
            type="limit",
            price=Decimal(60) if symbol == "BTCUSDT" else Decimal("3.2"),
            reduce_only=i % 3 == 0,
        )
        decision = risk.check(request, 1_000 + i)
        out.append((decision.approved, decision.reason))
    return out


def _open(risk: PreTradeRisk) -> dict[str, Order]:
    return {order.client_order_id: order for order in risk.open_orders_state().orders}


@given(history=st.lists(states, max_size=40), data=st.data())
def test_a_snapshot_of_the_open_orders_plus_the_tail_is_a_full_replay(
    history: list[Order], data: st.DataObject
) -> None:
    history = _versioned(history)
    cut = data.draw(st.integers(0, len(history)), label="snapshot after")
    full = _risk()
    for state in history:
        full.update_order(state)

    before = _risk()
    for state in history[:cut]:
        before.update_order(state)
    stored = encode_record(before.open_orders_state(), {"ORDERS": cut}, OPEN_ORDERS_VERSION, 0)
    loaded = decode_record(stored, OpenOrdersState, OPEN_ORDERS_VERSION)
    restored = _risk()
    restored.restore_open_orders(loaded.state)
    for state in history[cut:]:
        restored.update_order(state)

    assert _open(restored) == _open(full)
    assert all(not state.is_terminal for state in _open(full).values())
    assert _decisions(restored) == _decisions(full)


def test_the_decisions_compared_above_depend_on_the_open_orders() -> None:
    """The comparison above can fail: open orders change what the same requests get."""
    empty, busy = _risk(), _risk()
    busy.update_order(
        Order(
            client_order_id="big",
            strategy="s",
            account="a1",
            symbol="BTCUSDT",
            side="buy",
            type="limit",
            quantity=Decimal(300),
            status="ACCEPTED",
            price=Decimal(60),
            version=1,
        )
    )
    assert _decisions(empty) != _decisions(busy)


def test_a_restore_replaces_what_was_known() -> None:
    risk = _risk()
    risk.update_order(
        Order(
            client_order_id="old",
            strategy="s",
            account="a1",
            symbol="BTCUSDT",
            side="buy",
            type="market",
            quantity=Decimal(1),
            status="NEW",
            version=1,
        )
    )
    risk.restore_open_orders(OpenOrdersState([]))
    assert _open(risk) == {}
    assert _decisions(risk) == _decisions(_risk())
