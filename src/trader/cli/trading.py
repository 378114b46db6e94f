"""The trading commands: `trader orders`, `positions`, `pnl`, `order`, `cancel`, `kill`, `resume`.

They read the trading streams (the latest state of each order, the latest message per subject) and
write to the bus as any service does: an ``OrderRequest`` goes to risk, a ``CancelRequest`` to the oms,
and the kill switch is the ``TradingState`` in the key-value bucket.

Exit codes of `order --wait` and `cancel --wait`, for scripts: 0 the order is working or filled (or,
for a cancel, canceled); 1 an error (NATS down, no answer in time); 2 bad input (an unknown symbol, a
number that is not one); 3 rejected (denied by risk or refused by the venue; for a cancel: the order
ended otherwise, or is still working); 4 ended without any fill (canceled or expired, e.g. an IOC that
found nothing at its price).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
import typer

from trader.cli.connect import run_on_nats
from trader.cli.format import JsonOpt, err, fail, print_rows
from trader.messages import TERMINAL_STATUSES, Order, OrderRequest, PnlSnapshot, Position, TradingMode, encode
from trader.risk.checks import MANUAL_STRATEGY

# nats-py and what uses it are imported by the commands that reach NATS, not on every `trader` start.
if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

ORDER_COLUMNS = [
    "client_order_id",
    "strategy",
    "symbol",
    "side",
    "type",
    "quantity",
    "price",
    "status",
    "filled",
    "average_price",
    "reason",
]
# After the venue acknowledged an order, `--wait` waits this long for more (a market order's fill)
# before it prints a working order's state.
SETTLE_S = 0.5

T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3
EXIT_UNFILLED = 4

_order_decoder = msgspec.json.Decoder(Order)


class Side(StrEnum):
    buy = "buy"
    sell = "sell"


class Tif(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class AlgoName(StrEnum):
    twap = "twap"
    iceberg = "iceberg"


StrategyOpt = Annotated[str, typer.Option(help="The strategy the order belongs to (a subject token).")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Wait for the order's resulting state and print it; exit 3 if it is rejected (by risk or "
        "the venue), 4 if it ends without a fill.",
    ),
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds --wait waits at most.")]


# Plumbing -----------------------------------------------------------------------------------------


async def _latest(nc: NATS, stream: str, subject: str, kind: type[T]) -> list[T]:
    """The latest message of every subject matching ``subject``, decoded (undecodable ones skipped)."""
    from nats.js.api import DeliverPolicy

    from trader.bus.read import replay_messages

    decoder = msgspec.json.Decoder(kind)
    messages = await replay_messages(
        nc.jetstream(), stream, subject, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT
    )
    out = []
    for stored in messages:
        try:
            out.append(decoder.decode(stored.data))
        except (msgspec.ValidationError, msgspec.DecodeError):
            err.print(f"[yellow]skipped an undecodable message on {stored.subject}[/]")
    return out


async def _orders(nc: NATS, strategy: str | None) -> dict[str, Order]:
    """The latest state of every order (of one strategy), from the ORDERS stream."""
    from trader.bus.streams import ALL_ORDER_STATES, order_state_subject
    from trader.control.orders import read_orders

    subject = order_state_subject(strategy) if strategy else ALL_ORDER_STATES
    history = await read_orders(nc.jetstream(), subject)
    if history.undecodable:
        err.print(f"[yellow]{history.undecodable} order state message(s) could not be decoded[/]")
    return history.latest


def _time(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def _order_row(order: Order) -> list[Any]:
    return [
        order.client_order_id,
        order.strategy,
        order.symbol,
        order.side,
        order.type,
        order.quantity,
        order.price,
        order.status,
        order.filled_quantity,
        order.average_price,
        order.reason,
    ]


def _decimal(text: str | None, what: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise fail(f"{what} {text!r} is not a number", EXIT_BAD_INPUT) from None
    if not value.is_finite():
        raise fail(f"{what} {text!r} is not a finite number", EXIT_BAD_INPUT)
    return value


# Reading ------------------------------------------------------------------------------------------


def orders(
    all_orders: Annotated[
        bool, typer.Option("--all", help="Every order ever, not only recent ones.")
    ] = False,
    strategy: Annotated[str | None, typer.Option(help="Only this strategy's orders.")] = None,
    limit: Annotated[int, typer.Option(help="Without --all: the open orders and this many recent.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The latest state of each order: open ones and the most recent (all with --all), oldest first."""
    latest = run_on_nats(lambda nc: _orders(nc, strategy))
    ordered = sorted(latest.values(), key=lambda o: (o.created, o.updated, o.client_order_id))
    if not all_orders:
        recent = {o.client_order_id for o in sorted(ordered, key=lambda o: o.updated)[-limit:]}
        ordered = [o for o in ordered if not o.is_terminal or o.client_order_id in recent]
    print_rows(ORDER_COLUMNS, [_order_row(o) for o in ordered], as_json)


def positions(as_json: JsonOpt = False) -> None:
    """The latest position of each (account, venue, symbol), from the POSITIONS stream."""
    found = run_on_nats(lambda nc: _latest(nc, "POSITIONS", "position.>", Position))
    columns = [
        "account",
        "venue",
        "symbol",
        "strategy",
        "quantity",
        "average_price",
        "realized_pnl",
        "fees",
        "updated",
    ]
    rows = [
        [
            p.account,
            p.venue,
            p.symbol,
            p.strategy,
            p.quantity,
            p.average_price,
            p.realized_pnl,
            p.fees,
            _time(p.timestamp),
        ]
        for p in found
    ]
    print_rows(columns, rows, as_json)


def pnl(as_json: JsonOpt = False) -> None:
    """The latest PnL snapshot of each strategy and the total, from the PNL stream."""
    found = run_on_nats(lambda nc: _latest(nc, "PNL", "pnl.>", PnlSnapshot))
    columns = ["scope", "realized", "unrealized", "fees", "total", "gross_exposure", "time"]
    rows = [
        [s.scope, s.realized, s.unrealized, s.fees, s.total, s.gross_exposure, _time(s.timestamp)]
        for s in sorted(found, key=lambda s: (s.scope == "total", s.scope))
    ]
    print_rows(columns, rows, as_json)


# Orders -------------------------------------------------------------------------------------------


def order(
    side: Annotated[Side, typer.Argument(help="buy or sell.")],
    symbol: Annotated[str, typer.Argument(help="e.g. BTCUSDT")],
    quantity: Annotated[str, typer.Argument(help="An exact decimal, e.g. 0.01")],
    limit: Annotated[str | None, typer.Option("--limit", help="Limit price.")] = None,
    stop: Annotated[str | None, typer.Option("--stop", help="Stop (trigger) price.")] = None,
    tif: Annotated[Tif, typer.Option("--tif", help="Time in force.")] = Tif.GTC,
    post_only: Annotated[bool, typer.Option("--post-only", help="Maker only.")] = False,
    reduce_only: Annotated[bool, typer.Option("--reduce-only", help="Only reduce a position.")] = False,
    venue: Annotated[str | None, typer.Option(help="A fixed venue; by default the router chooses.")] = None,
    algo: Annotated[AlgoName | None, typer.Option(help="Work the order with an algo.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="An algo parameter k=v (repeatable).")
    ] = None,
    strategy: StrategyOpt = MANUAL_STRATEGY,
    account: Annotated[str, typer.Option(help="The account to trade.")] = "paper",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Send an order to risk (then the oms and the venue); prints its client order id.

    The symbol must have market data (ticks in MARKET_TICKS): risk prices every order against its last
    trade: an unknown symbol is refused before anything is sent (exit 2), with the known ones listed.
    With --wait: exit 3 if the order is rejected, 4 if it ends unfilled, 0 otherwise."""
    from trader.bus.streams import order_submit_subject
    from trader.control.actions import new_client_order_id, order_type, submit_msg_id

    params = _algo_params(param or [])
    if params and algo is None:
        raise fail("--param needs --algo")
    price, stop_price = _decimal(limit, "--limit"), _decimal(stop, "--stop")
    amount = _decimal(quantity, "quantity")
    assert amount is not None
    request = OrderRequest(
        client_order_id=new_client_order_id(strategy),
        strategy=strategy,
        symbol=symbol,
        side=side.value,
        quantity=amount,
        type=order_type(price, stop_price),
        price=price,
        stop_price=stop_price,
        tif=tif.value,
        post_only=post_only,
        reduce_only=reduce_only,
        account=account,
        venue=venue,
        algo=algo.value if algo else None,
        algo_params=params,
        timestamp=time.time_ns() // 1_000_000,
    )

    async def send(nc: NATS) -> Order | None:
        await _require_known_symbol(nc, symbol)
        subject = order_submit_subject(strategy)
        payload = encode(request)
        return await _publish_and_wait(
            nc,
            request.client_order_id,
            strategy,
            subject,
            payload,
            wait,
            timeout,
            submit_msg_id(request.client_order_id),
        )

    state = run_on_nats(send)
    if not wait:
        sys.stdout.write(request.client_order_id + "\n")
        return
    shown = _print_waited(request.client_order_id, state, timeout, as_json)
    code = order_exit_code(shown)
    if code == EXIT_REJECTED:
        raise fail(f"order {shown.client_order_id} rejected: {shown.reason or 'no reason given'}", code)
    if code == EXIT_UNFILLED:
        raise fail(
            f"order {shown.client_order_id} {shown.status} unfilled: {shown.reason or ''}".strip(), code
        )


def order_exit_code(state: Order) -> int:
    """What `order --wait` exits with once it has the order's state (see the module's docstring)."""
    if state.status == "REJECTED":
        return EXIT_REJECTED
    if state.status in ("CANCELED", "EXPIRED") and not state.filled_quantity:
        return EXIT_UNFILLED
    return 0


def cancel_exit_code(state: Order) -> int:
    """What `cancel --wait` exits with: 0 only when the order was canceled."""
    return 0 if state.status == "CANCELED" else EXIT_REJECTED


async def known_symbols(nc: NATS) -> list[str]:
    """The symbols with market data (``trader.control.actions.known_symbols``)."""
    from nats.js.errors import NotFoundError

    from trader.control.actions import known_symbols as symbols_with_data

    try:
        return await symbols_with_data(nc.jetstream())
    except NotFoundError:
        raise fail("NATS has no MARKET_TICKS stream: is the stack up? run `trader up`") from None


async def _require_known_symbol(nc: NATS, symbol: str) -> None:
    known = await known_symbols(nc)
    if symbol in known:
        return
    if not known:
        raise fail(
            f"unknown symbol {symbol!r}: no symbol has market data yet (ticks in MARKET_TICKS); "
            "is the gateway running? `trader status`",
            EXIT_BAD_INPUT,
        )
    raise fail(
        f"unknown symbol {symbol!r}: no market data for it; known symbols: {', '.join(known)}",
        EXIT_BAD_INPUT,
    )


def cancel(
    client_order_id: Annotated[str, typer.Argument(help="The order's client order id.")],
    strategy: Annotated[
        str | None, typer.Option(help="The order's strategy (looked up in the ORDERS stream if not given).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the order's state.")] = "canceled by operator",
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait for the order's new state, print it; exit 3 unless canceled."),
    ] = False,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Ask the oms to cancel an order."""
    from trader.bus.streams import order_cancel_subject
    from trader.control.actions import cancel_msg_id, cancel_request

    async def send(nc: NATS) -> Order | None:
        owner = strategy
        if owner is None:
            known = (await _orders(nc, None)).get(client_order_id)
            if known is None:
                raise fail(f"no order {client_order_id!r} in the ORDERS stream")
            if known.is_terminal:
                raise fail(f"order {client_order_id} is already {known.status}")
            owner = known.strategy
        request = cancel_request(client_order_id, owner, reason)
        subject = order_cancel_subject(owner)
        return await _publish_and_wait(
            nc,
            client_order_id,
            owner,
            subject,
            encode(request),
            wait,
            timeout,
            msg_id=cancel_msg_id(client_order_id, request.timestamp),
        )

    state = run_on_nats(send)
    if not wait:
        err.print(f"cancel requested for {client_order_id}")
        return
    shown = _print_waited(client_order_id, state, timeout, as_json)
    if code := cancel_exit_code(shown):
        raise fail(f"order {client_order_id} is {shown.status}, not canceled", code)


async def _publish_and_wait(
    nc: NATS,
    client_order_id: str,
    strategy: str,
    subject: str,
    payload: bytes,
    wait: bool,
    timeout: float,
    msg_id: str,
) -> Order | None:
    """Publish (stored, acknowledged); with ``wait``, the order's state once it settles: terminal, or
    acknowledged by the venue and quiet for a moment, or the latest seen when ``timeout`` runs out."""
    from trader.bus.streams import order_state_subject

    states: asyncio.Queue[Order] = asyncio.Queue()

    async def on_state(msg: Msg) -> None:
        try:
            changed = _order_decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        if changed.client_order_id == client_order_id:
            states.put_nowait(changed)

    # Subscribed before publishing, so the first state cannot slip by.
    sub = await nc.subscribe(order_state_subject(strategy), cb=on_state) if wait else None
    await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
    if sub is None:
        return None
    try:
        return await _settled(states, timeout)
    finally:
        await sub.unsubscribe()


async def _settled(states: asyncio.Queue[Order], timeout: float) -> Order | None:
    deadline = time.monotonic() + timeout
    latest: Order | None = None
    while True:
        left = deadline - time.monotonic()
        if latest is not None and latest.status not in ("NEW", "PENDING_CANCEL"):
            left = min(left, SETTLE_S)  # working at the venue: a fill may be a moment behind
        if left <= 0:
            return latest
        try:
            changed = await asyncio.wait_for(states.get(), left)
        except TimeoutError:
            return latest
        if latest is None or changed.version > latest.version:
            latest = changed
        if latest.status in TERMINAL_STATUSES:
            return latest


def _print_waited(client_order_id: str, state: Order | None, timeout: float, as_json: bool) -> Order:
    if state is None:
        raise fail(f"no state for order {client_order_id} within {timeout:g}s: are risk and the oms running?")
    print_rows(ORDER_COLUMNS, [_order_row(state)], as_json)
    return state


def _algo_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--param {pair!r} is not k=v")
        params[key.strip()] = value.strip()
    return params


# The kill switch ----------------------------------------------------------------------------------


def kill(
    reason: Annotated[str, typer.Option(help="Why trading stops; shown with every denial.")] = "kill switch",
) -> None:
    """Halt trading: risk denies every new order and the oms cancels every open one."""
    _set_state("halted", reason)
    err.print(f"trading halted ({reason}): new orders are denied, open orders are being canceled")


def resume(
    reason: Annotated[str | None, typer.Option(help="Why trading resumes.")] = None,
) -> None:
    """Resume trading (also lifts reduce-only)."""
    _set_state("active", reason)
    err.print("trading active")


def _set_state(mode: TradingMode, reason: str | None) -> None:
    from trader.control.actions import set_trading_state, switch_state

    state = switch_state(mode, reason)

    async def write(nc: NATS) -> int:
        return await set_trading_state(nc.jetstream(), state)

    run_on_nats(write)
