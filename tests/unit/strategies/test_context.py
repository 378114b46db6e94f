"""The strategy context and runner: ids, rebuilt orders and positions, cancels, halts, failing callbacks,
and the loader of built-in and user strategies."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from trader.config import StrategyConfig
from trader.messages import Bar, ExecutionReport, Order, OrderRequest, TradingState
from trader.strategies import (
    BUILTINS,
    OrderContext,
    Strategy,
    StrategyConfigError,
    build_runner,
    load_strategy_class,
)
from trader.strategies.ma_cross import MaCross
from trader.strategies.market_maker import MarketMaker
from trader.strategies.testing import T0, Desk, cancels, make_bar, submits

D = Decimal


class Scripted(Strategy):
    """A user strategy for these tests: does on each bar what ``script`` says, records what it hears."""

    def __init__(self, config: StrategyConfig, ctx: object) -> None:
        super().__init__(config, ctx)  # type: ignore[arg-type]
        self.script: list[str] = []
        self.heard: list[str] = []

    def on_start(self) -> None:
        self.heard.append("start")

    def on_bar(self, bar: Bar) -> None:
        for step in self.script:
            if step == "buy":
                self.ctx.submit("buy", bar.symbol, D("1"))
            elif step == "raise":
                raise RuntimeError("strategy bug")

    def on_order(self, order: Order) -> None:
        self.heard.append(f"{order.client_order_id}:{order.status}")

    def on_fill(self, report: ExecutionReport) -> None:
        self.heard.append(f"fill:{report.exec_id}")


class NotAStrategy:
    pass


SCRIPTED = f"{__name__}:Scripted"


def config(name: str = "s1", kind: str = SCRIPTED) -> StrategyConfig:
    return StrategyConfig(name=name, kind=kind, symbols=["BTCUSDT"], params={})


def request(client_order_id: str, quantity: str = "1", side: str = "buy") -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id,
        strategy="s1",
        symbol="BTCUSDT",
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        timestamp=T0 - 10,
    )


# Loader ----------------------------------------------------------------------------------------


def test_builtins_and_user_classes_load() -> None:
    assert load_strategy_class("ma_cross") is MaCross
    assert load_strategy_class("market_maker") is MarketMaker
    assert set(BUILTINS) == {"ma_cross", "market_maker"}
    assert load_strategy_class(SCRIPTED) is Scripted


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("momentum", "unknown strategy kind 'momentum'"),
        ("no_such_package.module:Thing", "cannot import no_such_package.module"),
        (f"{__name__}:Missing", "no Strategy subclass named Missing"),
        (f"{__name__}:NotAStrategy", "no Strategy subclass named NotAStrategy"),
    ],
)
def test_a_bad_kind_says_what_is_wrong(kind: str, message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        build_runner(config(kind=kind))


@pytest.mark.parametrize("symbols", [[], ["BTC.USDT"], ["BTC*"]])
def test_symbols_must_be_subject_tokens(symbols: list[str]) -> None:
    with pytest.raises(StrategyConfigError, match="symbol"):
        build_runner(StrategyConfig(name="s1", kind=SCRIPTED, symbols=symbols))


# Client order ids ------------------------------------------------------------------------------


def test_client_order_ids_are_unique_and_never_reused_after_a_restart() -> None:
    now = [T0]
    first = OrderContext(config(), clock=lambda: now[0])
    ids = [first.submit("buy", "BTCUSDT", D("1")) for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(i.startswith("s1-") for i in ids)
    # A restart in the same millisecond (a clock that stepped back, even) after rebuilding the history.
    restarted = OrderContext(config(), clock=lambda: now[0] - 5)
    for instruction in first.take_instructions():
        restarted.note_request(instruction.message)  # type: ignore[arg-type]
    again = [restarted.submit("buy", "BTCUSDT", D("1")) for _ in range(3)]
    assert not set(again) & set(ids)


def test_a_request_is_published_with_its_client_order_id_as_msg_id() -> None:
    ctx = OrderContext(config(), clock=lambda: T0)
    coid = ctx.submit("sell", "BTCUSDT", D("0.25"), type="limit", price=D("100.5"), post_only=True)
    [instruction] = ctx.take_instructions()
    assert instruction.msg_id == coid
    message = instruction.message
    assert isinstance(message, OrderRequest)
    assert (message.price, message.quantity, message.timestamp) == (D("100.5"), D("0.25"), T0)
    assert ctx.take_instructions() == [], "the outbox is drained"


@pytest.mark.parametrize(
    ("args", "terms", "message"),
    [
        (("buy", "BTCUSDT", D("0")), {}, "positive"),
        (("buy", "BTCUSDT", 1.5), {}, "positive Decimal"),
        (("hold", "BTCUSDT", D("1")), {}, "buy or sell"),
        (("buy", "BTCUSDT", D("1")), {"type": "limit"}, "needs a price"),
        (("buy", "BTCUSDT", D("1")), {"type": "stop_market"}, "stop_price"),
    ],
)
def test_malformed_submits_are_refused_before_anything_is_sent(
    args: tuple[object, ...], terms: dict[str, object], message: str
) -> None:
    ctx = OrderContext(config(), clock=lambda: T0)
    with pytest.raises(ValueError, match=message):
        ctx.submit(*args, **terms)  # type: ignore[arg-type]
    assert ctx.take_instructions() == []
    assert ctx.open_orders() == []


# Rebuilding and applying states ----------------------------------------------------------------


def test_rebuild_from_requests_states_and_fills_in_any_order() -> None:
    ctx = OrderContext(config(), clock=lambda: T0)
    desk = Desk(SCRIPTED, {})
    for coid in ("s1-1-1", "s1-1-2", "s1-1-3"):
        desk.requests[coid] = request(coid)
        ctx.note_request(request(coid))
    # s1-1-1: filled; s1-1-2: working; s1-1-3: no state yet (risk has not answered).
    states = [desk.book.submit(request("s1-1-1")), desk.book.submit(request("s1-1-2"))]
    states.append(desk.book.apply_report(desk.report("s1-1-2", "accepted")))
    fill = desk.report("s1-1-1", "fill", last_quantity=D("1"), last_price=D("10"))
    states.append(desk.book.apply_report(fill))
    assert ctx.apply_fill(fill)  # the report stream may be ahead of the state stream
    for state in reversed(states):  # newest first: the older versions must not win
        ctx.apply_order(state)  # type: ignore[arg-type]
    assert {o.client_order_id: o.status for o in ctx.open_orders()} == {"s1-1-2": "ACCEPTED", "s1-1-3": "NEW"}
    assert ctx.position("BTCUSDT") == D("1")
    assert not ctx.apply_fill(fill), "a redelivered fill is applied once"
    assert ctx.position("BTCUSDT") == D("1")
    # The filled order is settled and forgotten; a redelivered state of it changes nothing.
    assert ctx.order("s1-1-1") is None
    assert ctx.apply_order(states[-1]) is None  # type: ignore[arg-type]


def test_position_sums_venues_and_sides_exactly() -> None:
    ctx = OrderContext(config(), clock=lambda: T0)
    for exec_id, venue, side, quantity in [
        ("a", "paper", "buy", "0.3"),
        ("b", "binance", "buy", "0.1"),
        ("c", "paper", "sell", "0.15"),
    ]:
        ctx.apply_fill(
            ExecutionReport(
                exec_id=exec_id,
                kind="fill",
                client_order_id=f"o-{exec_id}",
                strategy="s1",
                account="paper",
                venue=venue,
                symbol="BTCUSDT",
                side=side,  # type: ignore[arg-type]
                last_quantity=D(quantity),
                last_price=D("100"),
            )
        )
    assert ctx.position("BTCUSDT") == D("0.25")
    assert ctx.position("ETHUSDT") == 0


# Cancels and replaces --------------------------------------------------------------------------


def test_cancel_is_checked_against_the_state_machine() -> None:
    desk = Desk(SCRIPTED, {})
    desk.runner.strategy.script = ["buy"]  # type: ignore[attr-defined]
    [buy] = submits(desk.bar(0, "10"))
    coid = buy.client_order_id
    assert not desk.ctx.cancel(coid), "the oms does not know the order yet"
    desk.work(coid)
    assert desk.ctx.cancel(coid, "changed my mind")
    [instruction] = desk.ctx.take_instructions()
    [cancel] = cancels([instruction])
    assert (cancel.client_order_id, cancel.reason, cancel.quantity) == (coid, "changed my mind", None)
    assert instruction.msg_id.startswith("cancel:s1-")
    assert instruction.msg_id != coid
    view = desk.ctx.order(coid)
    assert view is not None
    assert view.status == "PENDING_CANCEL", "shown pending until the oms answers"
    assert not desk.ctx.cancel(coid), "a cancel is already pending"
    desk.oms_cancel(instruction)
    assert desk.ctx.open_orders() == []
    assert not desk.ctx.cancel(coid), "a canceled order cannot be canceled"
    assert f"{coid}:CANCELED" in desk.runner.strategy.heard  # type: ignore[attr-defined]


def test_replace_needs_terms_a_working_order_and_trading_on() -> None:
    desk = Desk(SCRIPTED, {})
    desk.runner.strategy.script = ["buy"]  # type: ignore[attr-defined]
    [buy] = submits(desk.bar(0, "10"))
    coid = buy.client_order_id
    with pytest.raises(ValueError, match="new quantity or a new price"):
        desk.ctx.replace(coid)
    assert not desk.ctx.replace(coid, quantity=D("2")), "not yet working at the venue"
    desk.work(coid)
    assert not desk.ctx.replace(coid, price=D("9")), "a market order has no price"
    desk.halt()
    assert not desk.ctx.replace(coid, quantity=D("2")), "no replace while halted"
    assert desk.ctx.suppressed == 1
    desk.ctx.set_trading_state(TradingState())
    assert desk.ctx.replace(coid, quantity=D("2"))
    [instruction] = desk.ctx.take_instructions()
    desk.oms_cancel(instruction)
    working = desk.ctx.order(coid)
    assert working is not None
    assert (working.status, working.quantity) == ("ACCEPTED", D("2"))


def test_cancels_are_still_sent_while_halted() -> None:
    desk = Desk(SCRIPTED, {})
    desk.runner.strategy.script = ["buy"]  # type: ignore[attr-defined]
    [buy] = submits(desk.bar(0, "10"))
    desk.work(buy.client_order_id)
    desk.halt()
    assert desk.ctx.cancel(buy.client_order_id)
    assert len(cancels(desk.ctx.take_instructions())) == 1


# The runner ------------------------------------------------------------------------------------


def test_a_failing_callback_is_contained_and_what_it_asked_for_still_goes_out() -> None:
    desk = Desk(SCRIPTED, {})
    desk.runner.strategy.script = ["buy", "raise"]  # type: ignore[attr-defined]
    actions = desk.runner.on_bar(_bar(0))
    assert actions.error is not None
    assert "strategy bug" in actions.error
    assert len(submits(actions.instructions)) == 1, "the order is in the books: it must be sent"
    assert desk.runner.errors == 1


def test_before_start_events_only_rebuild_and_other_strategies_are_ignored() -> None:
    runner = build_runner(config(), clock=lambda: T0)
    order = msgspec.convert(
        {
            "client_order_id": "s1-1-1",
            "strategy": "s1",
            "account": "paper",
            "symbol": "BTCUSDT",
            "side": "buy",
            "type": "market",
            "quantity": "1",
            "status": "ACCEPTED",
            "version": 2,
        },
        Order,
        strict=False,
    )
    assert not runner.on_order(order), "not started: no callback, nothing to send"
    assert [o.client_order_id for o in runner.ctx.open_orders()] == ["s1-1-1"]
    assert not runner.on_bar(_bar(0)), "no market data before start"
    runner.start()
    other = msgspec.structs.replace(order, strategy="s2", client_order_id="s2-1-1", version=3)
    assert not runner.on_order(other)
    assert runner.ctx.order("s2-1-1") is None
    runner.on_order(msgspec.structs.replace(order, status="CANCELED", version=3))
    assert runner.strategy.heard == ["start", "s1-1-1:CANCELED"]  # type: ignore[attr-defined]


def test_the_halt_notice_reaches_the_strategy_once() -> None:
    desk = Desk(SCRIPTED, {})
    desk.runner.strategy.script = ["buy"]  # type: ignore[attr-defined]
    desk.ctx.set_trading_state(TradingState(mode="halted", reason="ops"))
    actions = desk.runner.on_bar(_bar(0))
    assert actions.instructions == []
    assert len(actions.suppressed) == 1
    [heard] = [h for h in desk.runner.strategy.heard if h.endswith("REJECTED")]  # type: ignore[attr-defined]
    assert heard.startswith("s1-")
    describe = desk.runner.describe()
    assert describe["suppressed"] == 1
    assert "ops" in describe["last_rejection"]["reason"]


def _bar(start: int) -> Bar:
    return make_bar(start, "10")
