"""The api's view: what it serves, kept from the bus; repeats change nothing."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trader.api.view import ApiView
from trader.messages import ExecutionReport, OperatorAction, Order, PnlSnapshot, Position


def _order(coid: str, version: int, status: str = "ACCEPTED", **kw: object) -> Order:
    base = {
        "client_order_id": coid,
        "strategy": "s1",
        "account": "paper",
        "symbol": "BTCUSDT",
        "side": "buy",
        "type": "market",
        "quantity": Decimal("1"),
        "status": status,
        "version": version,
        "created": 1,
        "updated": version,
    }
    return Order(**{**base, **kw})


def _fill(exec_id: str, coid: str, symbol: str = "BTCUSDT") -> ExecutionReport:
    return ExecutionReport(
        exec_id=exec_id,
        kind="fill",
        client_order_id=coid,
        strategy="s1",
        account="paper",
        venue="paper",
        symbol=symbol,
        side="buy",
        last_quantity=Decimal("0.5"),
        last_price=Decimal("100"),
    )


def test_the_latest_version_is_the_order_and_every_state_is_kept_once_in_order() -> None:
    view = ApiView()
    assert view.apply_order(_order("a", 2))
    assert view.apply_order(_order("a", 1, "NEW"))
    assert not view.apply_order(_order("a", 2))  # read again
    assert view.apply_order(_order("a", 3, "FILLED"))
    detail = view.order_detail("a")
    assert detail is not None
    assert detail["order"].status == "FILLED"
    assert [s.version for s in detail["states"]] == [1, 2, 3]
    assert view.order_detail("b") is None


@given(st.permutations(list(range(1, 8))))
def test_any_arrival_order_gives_the_same_view(versions: list[int]) -> None:
    view = ApiView()
    for v in versions + versions:
        view.apply_order(_order("a", v, "FILLED" if v == 7 else "ACCEPTED"))
    assert view.orders["a"].version == 7
    assert [s.version for s in view.states["a"]] == list(range(1, 8))


def test_orders_filtered_by_status_strategy_symbol_newest_first() -> None:
    view = ApiView()
    view.apply_order(_order("a", 1))
    view.apply_order(_order("b", 5, "FILLED"))
    view.apply_order(_order("c", 3, symbol="ETHUSDT", strategy="s2"))
    view.apply_order(_order("d", 4, "CANCELED"))
    ids = lambda orders: [o.client_order_id for o in orders]  # noqa: E731
    assert ids(view.query_orders()) == ["b", "d", "c", "a"]
    assert ids(view.query_orders(status="open")) == ["c", "a"]
    assert ids(view.query_orders(status="ended")) == ["b", "d"]
    assert ids(view.query_orders(status="filled")) == ["b"]
    assert ids(view.query_orders(strategy="s2")) == ["c"]
    assert ids(view.query_orders(symbol="BTCUSDT", status="open")) == ["a"]
    assert ids(view.query_orders(limit=2)) == ["b", "d"]
    assert ids(view.open_orders(symbol="ETHUSDT")) == ["c"]


def test_reports_once_per_exec_id_and_fills_newest_first() -> None:
    view = ApiView()
    assert view.apply_report(_fill("e1", "a"))
    assert not view.apply_report(_fill("e1", "a"))
    view.apply_report(_fill("e2", "b", "ETHUSDT"))
    view.apply_report(
        ExecutionReport(
            exec_id="e3",
            kind="accepted",
            client_order_id="a",
            strategy="s1",
            account="paper",
            venue="paper",
            symbol="BTCUSDT",
            side="buy",
        )
    )
    assert [f.exec_id for f in view.query_fills()] == ["e2", "e1"]
    assert [f.exec_id for f in view.query_fills(symbol="BTCUSDT")] == ["e1"]
    assert [r.exec_id for r in view.reports["a"]] == ["e1", "e3"]
    assert [f.exec_id for f in view.query_fills(limit=1)] == ["e2"]


def test_positions_pnl_and_actions() -> None:
    view = ApiView()
    net = Position(
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        quantity=Decimal(1),
        average_price=None,
        realized_pnl=Decimal(0),
        fees=Decimal(0),
    )
    mine = Position(
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        quantity=Decimal(1),
        average_price=None,
        realized_pnl=Decimal(0),
        fees=Decimal(0),
        strategy="s1",
    )
    view.apply_position("position.paper.paper.BTCUSDT", net)
    view.apply_position("position.paper.paper.BTCUSDT.s1", mine)
    assert view.query_positions() == [net, mine]
    assert view.query_positions(strategy="s1") == [mine]
    zero = dict(realized=Decimal(0), unrealized=Decimal(0), fees=Decimal(0), total=Decimal(0))
    view.apply_pnl(PnlSnapshot(scope="total", **zero))
    view.apply_pnl(PnlSnapshot(scope="s1", **zero))
    assert [s.scope for s in view.query_pnl()] == ["s1", "total"]
    first = OperatorAction(action_id="x1", actor="op", role="trade", action="halt")
    assert view.apply_action(first)
    assert not view.apply_action(first)
    view.apply_action(OperatorAction(action_id="x2", actor="op", role="trade", action="resume"))
    assert [a.action_id for a in view.query_actions()] == ["x2", "x1"]
