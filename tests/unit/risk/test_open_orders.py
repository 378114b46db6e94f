"""The sums ``OpenOrders`` keeps equal a walk over the open orders, whatever the sequence of changes."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trader.messages import Order
from trader.risk.open_orders import OpenOrders

ACCOUNTS = ("a1", "a2")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
STRATEGIES = ("s", "t")
LAST = {"BTCUSDT": Decimal("60000.5"), "ETHUSDT": None}

decimals = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3)
orders = st.builds(
    lambda cid, strategy, account, symbol, side, qty, filled_part, price, stop: Order(
        client_order_id=f"c{cid}",
        strategy=strategy,
        account=account,
        symbol=symbol,
        side=side,
        type="limit" if price is not None else "market",
        quantity=qty,
        filled_quantity=(qty * filled_part).quantize(Decimal("0.001")),
        status="ACCEPTED",
        price=price,
        stop_price=stop,
    ),
    st.integers(0, 6),
    st.sampled_from(STRATEGIES),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(SYMBOLS),
    st.sampled_from(("buy", "sell")),
    decimals,
    st.sampled_from((Decimal(0), Decimal("0.5"), Decimal(1))),
    st.none() | decimals,
    st.none() | decimals,
)
changes = st.lists(st.tuples(st.booleans(), orders), max_size=40)


def _walk_leaves(
    open_: dict[str, Order], account: str, symbol: str, side: str, excluding: str, strategy: str | None
) -> Decimal:
    return sum(
        (
            o.leaves_quantity
            for o in open_.values()
            if (o.account, o.symbol, o.side) == (account, symbol, side)
            and strategy in (None, o.strategy)
            and o.client_order_id != excluding
        ),
        Decimal(0),
    )


def _walk_notional(open_: dict[str, Order], account: str, excluding: str) -> Decimal:
    total = Decimal(0)
    for o in open_.values():
        if o.account == account and o.client_order_id != excluding:
            price = o.price if o.price is not None else o.stop_price
            total += o.leaves_quantity * (price if price is not None else LAST[o.symbol] or Decimal(0))
    return total


@given(changes, st.integers(0, 7))
def test_the_kept_sums_equal_a_walk_over_the_open_orders(steps: list[tuple[bool, Order]], own: int) -> None:
    kept, walked = OpenOrders(), {}
    for put, order in steps:
        if put:
            kept.put(order)
            walked[order.client_order_id] = order
        else:
            kept.remove(order.client_order_id)
            walked.pop(order.client_order_id, None)
    excluding = f"c{own}"
    assert len(kept) == len(walked)
    for account in ACCOUNTS:
        assert kept.notional(account, LAST.get, excluding) == _walk_notional(walked, account, excluding)
        for symbol in SYMBOLS:
            for side in ("buy", "sell"):
                for strategy in (None, *STRATEGIES):
                    expected = _walk_leaves(walked, account, symbol, side, excluding, strategy)
                    kept_leaves = kept.same_side_leaves(account, symbol, side, excluding, strategy)
                    assert kept_leaves == expected
