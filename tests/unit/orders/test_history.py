"""The orders view's fold (``OrderHistory.apply``): the latest version of each order, whatever the order
the states come in, the reports they were made from, and ended orders kept by id only past a cutoff."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trader.messages import Order
from trader.orders.history import OrderHistory


def state(coid: str, version: int, status: str = "ACCEPTED", updated: int = 1_000, **changes: Any) -> Order:
    fields: dict[str, Any] = {
        "client_order_id": coid,
        "strategy": "s",
        "account": "main",
        "symbol": "BTCUSDT",
        "side": "buy",
        "type": "limit",
        "quantity": Decimal("1"),
        "price": Decimal("100"),
        "status": status,
        "version": version,
        "updated": updated,
    }
    return Order(**(fields | changes))


def test_the_latest_version_wins_in_any_order_and_every_exec_id_is_kept() -> None:
    history = OrderHistory()
    history.apply(state("a", 2, "PARTIALLY_FILLED"), "x-2")
    history.apply(state("a", 1, "ACCEPTED"), "x-1")
    history.apply(state("b", 1), None)
    assert {coid: o.version for coid, o in history.latest.items()} == {"a": 2, "b": 1}
    assert history.latest["a"].status == "PARTIALLY_FILLED"
    assert history.exec_ids == {"x-1", "x-2"}
    assert history.forgotten == set()


def test_an_order_ended_before_the_cutoff_is_kept_by_id_only_and_later_states_change_nothing() -> None:
    history = OrderHistory()
    history.apply(state("a", 1, updated=100), None, forget_ended_before_ms=500)
    history.apply(state("a", 2, "FILLED", updated=200), "x-a", forget_ended_before_ms=500)
    history.apply(state("a", 3, "FILLED", updated=900), "x-late", forget_ended_before_ms=500)
    history.apply(state("b", 1, "CANCELED", updated=600), None, forget_ended_before_ms=500)  # ended after
    history.apply(state("c", 1, "ACCEPTED", updated=100), None, forget_ended_before_ms=500)  # not ended
    assert history.forgotten == {"a"}
    assert set(history.latest) == {"b", "c"}
    assert history.exec_ids == {"x-a", "x-late"}  # the reports stay known as applied


def test_without_a_cutoff_nothing_is_forgotten() -> None:
    history = OrderHistory()
    history.apply(state("a", 1, "FILLED", updated=1), None)
    assert set(history.latest) == {"a"}
    assert history.forgotten == set()
