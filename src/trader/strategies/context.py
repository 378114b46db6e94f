"""The context the strategy service gives each strategy: its orders, its position, its outbox.

Pure: it turns what the strategy asks for into ``OrderRequest``/``CancelRequest`` messages (with their
dedup ids) in an outbox the service drains and publishes, and it is fed the strategy's order states
and fills, from which it keeps the open orders and the position. It checks cancels and replaces
against the order state machine (``trader.orders.state``) before sending them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import structlog

from trader.config import MOCK_VENUE, StrategyConfig
from trader.messages import (
    Algo,
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Side,
    TimeInForce,
    TradingMode,
    TradingState,
)
from trader.orders.retention import IDS_WINDOW_MS, Ended
from trader.orders.state import IllegalTransition, MismatchedEvent, apply_cancel, new_order, reject_by_risk
from trader.portfolio.positions import PositionTracker
from trader.strategies.base import StrategyContext

ZERO = Decimal(0)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def data_venue_of(config: StrategyConfig) -> str:
    """The venue whose ticks and bars the strategy hears of. The service resolves an unset one from the
    settings (``Settings.data_venue_of``); a configuration used alone stands for the paper setup."""
    return config.data_venue or MOCK_VENUE


@dataclass(frozen=True, slots=True)
class Instruction:
    """A message to publish for a strategy, with the ``Nats-Msg-Id`` that makes a retry harmless."""

    message: OrderRequest | CancelRequest
    msg_id: str


class ContextState(msgspec.Struct, frozen=True):
    """What a context learned from the streams, as a snapshot keeps it (``OrderContext.snapshot``): the
    orders not settled (latest state per id; version 0: its request seen, no state yet), the ids of
    those settled, the fills seen per order, the positions and the exec ids applied, and the highest
    session among the ids seen (new ids are numbered above it). What the strategy asked and the oms has
    not answered (a cancel pending) is not in it: a restart's replay does not know it either."""

    orders: list[Order]
    done: list[str]
    fills_seen: dict[str, Decimal]
    positions: list[Position]
    exec_ids: list[str]
    session_seen: int = -1
    last_rejection: Order | None = None
    done_times: list[int] = []  # when each of ``done`` last changed
    exec_times: list[int] = []  # the time of the fill of each of ``exec_ids``


class OrderContext(StrategyContext):
    """One strategy's view of its orders and position, and the outbox of what it asked for.

    Client order ids are ``<strategy>-<session>-<n>``: ``session`` is the epoch ms the context started,
    raised above every session seen in the rebuilt history, so a restarted strategy never reuses one.
    """

    def __init__(self, config: StrategyConfig, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.strategy = config.name
        self.log = structlog.get_logger("strategy").bind(strategy=config.name)
        self._clock = clock
        self._session = clock()
        self._counter = 0
        self._session_seen = -1  # the highest session of the ids seen in the streams
        self._orders: dict[str, Order] = {}  # latest state per id; version 0: sent, no state yet
        self._pending_cancel: dict[str, Order] = {}  # what a cancel/replace asked, shown until answered
        self._done: set[str] = set()  # final orders whose fills are all in: states of them are ignored
        # ... by when they last changed: kept for IDS_WINDOW_MS before the latest (states of one are
        # repeats only within it: see trader.orders.retention)
        self._done_at: Ended[str] = Ended()
        self._done_latest_ms = 0
        self._fills_seen: dict[str, Decimal] = {}  # quantity reported filled per order id
        self._positions = PositionTracker(exec_id_window_ms=IDS_WINDOW_MS)
        self._outbox: list[Instruction] = []
        self._notices: list[Order] = []  # local state changes the strategy has not heard of yet
        self._suppressed: list[Order] = []  # submits not sent because trading is halted
        self.trading_state = TradingState()
        self.submitted = 0
        self.suppressed = 0
        self.warmup_dropped = 0  # submits, cancels and replaces asked for during the warm-up
        self._warming_up = False
        self.last_rejection: Order | None = None

    # What the strategy calls --------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self._clock()

    @property
    def trading_mode(self) -> TradingMode:
        return self.trading_state.mode

    @property
    def warming_up(self) -> bool:
        return self._warming_up

    def submit(
        self,
        side: Side,
        symbol: str,
        quantity: Decimal,
        *,
        type: OrderType = "market",
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        tif: TimeInForce = "GTC",
        post_only: bool = False,
        reduce_only: bool = False,
        venue: str | None = None,
        algo: Algo | None = None,
        algo_params: dict[str, str] | None = None,
    ) -> str:
        """Ask for an order; it goes to ``venue``, else the strategy's own (``StrategyConfig.venue``)."""
        _check_terms(side, quantity, type, price, stop_price)
        if self._warming_up:
            client_order_id = self._next_id()  # never sent, so never known to ``order``
            self._drop_in_warmup("submit", client_order_id, symbol=symbol, side=side)
            return client_order_id
        now = self.now_ms
        request = OrderRequest(
            client_order_id=self._next_id(),
            strategy=self.strategy,
            symbol=symbol,
            side=side,
            quantity=quantity,
            type=type,
            price=price,
            stop_price=stop_price,
            tif=tif,
            post_only=post_only,
            reduce_only=reduce_only,
            account=self.config.account,
            venue=venue or self.config.venue,
            algo=algo,
            algo_params=dict(algo_params or {}),
            timestamp=now,
        )
        # Version 0: any state the oms publishes for it (version 1 and up) takes its place.
        placeholder = msgspec.structs.replace(new_order(request, now), version=0)
        if self.trading_state.mode == "halted":
            return self._suppress(placeholder, now)
        self._orders[request.client_order_id] = placeholder
        self._session_seen = max(self._session_seen, self._session)  # its id is in ORDERS once sent
        self._outbox.append(Instruction(request, request.client_order_id))
        self.submitted += 1
        return request.client_order_id

    def cancel(self, client_order_id: str, reason: str = "requested") -> bool:
        if self._warming_up:
            self._drop_in_warmup("cancel", client_order_id)
            return False
        return self._ask_cancel(client_order_id, None, None, reason)

    def replace(
        self, client_order_id: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> bool:
        if quantity is None and price is None:
            raise ValueError("a replace needs a new quantity or a new price")
        if self._warming_up:
            self._drop_in_warmup("replace", client_order_id)
            return False
        if self.trading_state.mode == "halted":
            self.log.info("strategy.replace_suppressed", client_order_id=client_order_id, mode="halted")
            self.suppressed += 1
            return False
        return self._ask_cancel(client_order_id, quantity, price, "replace")

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        views = (self._view(order) for order in self._orders.values())
        return [o for o in views if not o.is_terminal and (symbol is None or o.symbol == symbol)]

    def order(self, client_order_id: str) -> Order | None:
        order = self._orders.get(client_order_id)
        return None if order is None else self._view(order)

    def position(self, symbol: str) -> Decimal:
        from_fills = sum(
            (p.quantity for p in self._positions.strategy_positions(self.strategy) if p.symbol == symbol),
            ZERO,
        )
        return from_fills + self._fills_in_transit(symbol)

    # What the service feeds in -------------------------------------------------------------------

    def apply_order(self, order: Order) -> Order | None:
        """A published state of one of the strategy's orders; returns it when it is news."""
        coid = order.client_order_id
        known = self._orders.get(coid)
        if coid in self._done or (known is not None and order.version <= known.version):
            return None
        self._note_id(coid)
        self._orders[coid] = order
        self._pending_cancel.pop(coid, None)  # the oms has moved on from what the strategy last saw
        if order.status == "REJECTED":
            self.last_rejection = order
        self._forget_if_settled(coid)
        return order

    def apply_fill(self, report: ExecutionReport) -> bool:
        """A venue report for the strategy; ``True`` for a fill not seen before."""
        if self._positions.apply(report) is None:
            return False
        coid = report.client_order_id
        if coid not in self._done:
            self._fills_seen[coid] = self._fills_seen.get(coid, ZERO) + report.last_quantity
            self._forget_if_settled(coid)
        return True

    def note_request(self, request: OrderRequest) -> None:
        """A request found in the history at start: open (NEW) until its state says otherwise."""
        coid = request.client_order_id
        self._note_id(coid)
        if coid not in self._orders and coid not in self._done:
            placeholder = new_order(request, request.timestamp)
            self._orders[coid] = msgspec.structs.replace(placeholder, version=0)

    def snapshot(self) -> ContextState:
        """What the streams told it (``ContextState``). Taken while something it asked is still on its
        way to the stream, it is ahead of them: what follows it in the streams is applied again at a
        restart, and changes nothing (versions, exec ids, ids seen)."""
        positions = self._positions
        done = self._done_at.items()
        return ContextState(
            orders=list(self._orders.values()),
            done=[coid for coid, _ in done],
            fills_seen=dict(self._fills_seen),
            positions=[*positions.positions(), *positions.strategy_positions()],
            exec_ids=positions.applied_exec_ids(),
            session_seen=self._session_seen,
            last_rejection=self.last_rejection,
            done_times=[at for _, at in done],
            exec_times=positions.applied_exec_times(),
        )

    def restore(self, state: ContextState) -> None:
        """Start from a snapshot (``snapshot``), before the streams after it are applied."""
        self._orders = {order.client_order_id: order for order in state.orders}
        self._pending_cancel = {}
        self._done = set(state.done)
        self._done_at = Ended(zip(state.done, state.done_times, strict=True))
        self._done_latest_ms = max(state.done_times, default=0)
        self._fills_seen = dict(state.fills_seen)
        self._positions = PositionTracker(exec_id_window_ms=IDS_WINDOW_MS)
        self._positions.rebuild(state.positions, state.exec_ids, state.exec_times)
        self._session_seen = state.session_seen
        if state.session_seen >= self._session:
            self._session, self._counter = state.session_seen + 1, 0
        self.last_rejection = state.last_rejection

    def set_trading_state(self, state: TradingState) -> None:
        self.trading_state = state

    def set_warming_up(self, warming_up: bool) -> None:
        """While true, history is being fed: what the strategy asks for is dropped, never sent."""
        self._warming_up = warming_up

    def take_instructions(self) -> list[Instruction]:
        out, self._outbox = self._outbox, []
        return out

    def take_notices(self) -> list[Order]:
        out, self._notices = self._notices, []
        return out

    def take_suppressed(self) -> list[Order]:
        out, self._suppressed = self._suppressed, []
        return out

    def positions(self) -> dict[str, Decimal]:
        """Signed quantity per symbol traded, for the health details."""
        symbols = {p.symbol for p in self._positions.strategy_positions(self.strategy)}
        symbols |= {o.symbol for o in self._orders.values()}
        return {symbol: self.position(symbol) for symbol in sorted(symbols)}

    # Internals ----------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self.strategy}-{self._session}-{self._counter}"

    def _note_id(self, client_order_id: str) -> None:
        """Keep new ids above every session an earlier run of this strategy used."""
        prefix = f"{self.strategy}-"
        if not client_order_id.startswith(prefix):
            return
        session, _, counter = client_order_id[len(prefix) :].partition("-")
        if not (session.isdigit() and counter.isdigit()):
            return
        self._session_seen = max(self._session_seen, int(session))
        if int(session) >= self._session:
            self._session, self._counter = int(session) + 1, 0

    def _drop_in_warmup(self, what: str, client_order_id: str, **terms: str) -> None:
        """Strategies act on live data only: a request made on history is counted and dropped."""
        self.warmup_dropped += 1
        self.log.debug("strategy.warmup_dropped", what=what, client_order_id=client_order_id, **terms)

    def _suppress(self, placeholder: Order, now: int) -> str:
        reason = f"trading halted: {self.trading_state.reason or 'no reason given'}; not sent"
        rejected = reject_by_risk(placeholder, reason, now)
        self._settled(rejected)
        self._notices.append(rejected)
        self._suppressed.append(rejected)
        self.suppressed += 1
        self.last_rejection = rejected
        return rejected.client_order_id

    def _ask_cancel(
        self, client_order_id: str, quantity: Decimal | None, price: Decimal | None, reason: str
    ) -> bool:
        order = self.order(client_order_id)
        if order is None or order.version == 0:
            # Unknown, or not yet known to the oms: there is nothing it could cancel yet.
            self.log.info("strategy.cancel_refused", client_order_id=client_order_id, why="no oms state yet")
            return False
        request = CancelRequest(
            client_order_id=client_order_id,
            strategy=self.strategy,
            quantity=quantity,
            price=price,
            reason=reason,
            timestamp=self.now_ms,
        )
        try:
            asked = apply_cancel(order, request)
        except (IllegalTransition, MismatchedEvent) as exc:
            self.log.info("strategy.cancel_refused", client_order_id=client_order_id, why=str(exc))
            return False
        self._pending_cancel[client_order_id] = asked
        self._outbox.append(Instruction(request, f"cancel:{self._next_id()}"))
        return True

    def _view(self, order: Order) -> Order:
        return self._pending_cancel.get(order.client_order_id, order)

    def _fills_in_transit(self, symbol: str) -> Decimal:
        """Fills the oms has confirmed (``filled_quantity``) whose reports have not arrived yet."""
        total = ZERO
        for coid, order in self._orders.items():
            if order.symbol != symbol:
                continue
            missing = order.filled_quantity - self._fills_seen.get(coid, ZERO)
            if missing > 0:
                total += missing if order.side == "buy" else -missing
        return total

    def _forget_if_settled(self, client_order_id: str) -> None:
        """A final order whose fills are all in changes nothing any more: drop it, remember its id."""
        order = self._orders.get(client_order_id)
        if order is None or not order.is_terminal:
            return
        if self._fills_seen.get(client_order_id, ZERO) >= order.filled_quantity:
            del self._orders[client_order_id]
            self._fills_seen.pop(client_order_id, None)
            self._pending_cancel.pop(client_order_id, None)
            self._settled(order)

    def _settled(self, order: Order) -> None:
        """Its id kept, so that its states are ignored, for ``IDS_WINDOW_MS`` of the orders' time."""
        self._done.add(order.client_order_id)
        self._done_at.add(order.client_order_id, order.updated)
        self._done_latest_ms = max(self._done_latest_ms, order.updated)
        self._done.difference_update(self._done_at.take(self._done_latest_ms - IDS_WINDOW_MS))


def _check_terms(
    side: str, quantity: Decimal, type: str, price: Decimal | None, stop_price: Decimal | None
) -> None:
    """Programming errors in a strategy, refused before anything is sent."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side {side!r} is not buy or sell")
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
        raise ValueError(f"quantity {quantity!r} is not a positive Decimal")
    if type in ("limit", "stop_limit") and price is None:
        raise ValueError(f"a {type} order needs a price")
    if type in ("stop_market", "stop_limit") and stop_price is None:
        raise ValueError(f"a {type} order needs a stop_price")
