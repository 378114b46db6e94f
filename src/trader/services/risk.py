"""risk: the pre-trade check of every order request, the post-trade watch on equity.

Consumes:
- ``OrderRequest`` on ``order.submit.>`` and ``CancelRequest`` on ``order.cancel.>`` (stream ORDERS,
  intake input ``risk`` in mode WORK, in stream order, checkpointed once the decisions are stored: a
  crash hands the requests in hand over again, decided again under the same msg id). A cancel-replace is
  judged as the order it would become; a plain cancel is the oms's alone, and passed over;
- last trade prices: input ``risk-ticks`` (mode LATEST) on ``market.tick.>``: the latest tick per
  subject (``market.tick.<venue>.<SYMBOL>``) in MARKET_TICKS, then every tick, each kept raw and only
  the latest per subject decoded when a decision needs it (only the latest price matters, and a busy
  feed then costs a dictionary write per tick). An order is checked at the last trade of its venue's quote
  venue (``trader.risk.prices``), never at another feed's price of the symbol;
- positions: input ``risk-positions`` (mode LATEST) on ``position.>``: the accounts'
  net positions (``position.<account>.<venue>.<symbol>``) for every account-wide check, and each
  strategy's own (a fifth token, ``.<strategy>``) for that strategy's reduce-only orders;
- open orders: input ``risk-orders`` (mode HISTORY) on ``order.state.>``, from its snapshot (key
  ``risk-orders``: the orders open, with the ORDERS sequence it covers; terminal orders drop out), every
  state after it applied;
- ``PnlSnapshot`` on ``pnl.total``: input ``risk-pnl`` (mode HISTORY) from the post-trade watch's
  snapshot (``trader.risk.post_trade``), every PnL after it applied (a breach among them switches);
- the trading switch (``trader.bus.trading_switch``).
Produces: a ``RiskDecision`` per request on ``order.risk.<strategy>`` (msg id ``risk:<client_order_id>``),
a ``ReplaceDecision`` per cancel-replace on ``order.replace.<strategy>`` (msg id ``risk:replace:<replace
id>``; the id is the sender's, else ``<client_order_id>:<the request's ORDERS sequence>``), the reason of
a denial naming the check and the numbers; ``reduce_only`` in the trading switch when the
day's loss or the drawdown crosses its limit, or the trading history nearly fills its room in
JetStream's store (``trader.risk.history_room``; only from ``active``: an operator's switch is never
overridden).
State: the open orders from their snapshot (``snapshot.risk-orders`` in the TRADER_STATE bucket, every
``SNAPSHOT_EVERY_MESSAGES`` states or ``SNAPSHOT_EVERY_S`` seconds and at a graceful stop) and the states
after it; the post-trade peak and day start from theirs (``snapshot.risk``, every second when they
changed and at a graceful stop, with the PNL sequence they cover); positions and prices, the latest of
each, read again at every start. Its decisions are taken only once all the inputs above have caught up.
Dead letters follow the intake's one rule: a message that cannot be decoded is refused once, live (not
again at every replay of the history).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import Gauge

from trader.bus.publish import Outgoing
from trader.bus.read import decode_message, refusal, subject_token
from trader.bus.refusals import InvalidMessage
from trader.bus.streams import (
    ALL_ORDER_STATES,
    history_bytes,
    history_room,
    order_replace_subject,
    order_risk_subject,
    pnl_subject,
)
from trader.bus.trading_switch import read_state, state_bucket, write_state_if
from trader.config import Settings
from trader.marketdata.decode import decode_tick
from trader.messages import (
    CancelRequest,
    Order,
    OrderRequest,
    PnlSnapshot,
    Position,
    TradingState,
    encode,
)
from trader.orders.state import is_replace
from trader.portfolio.pnl import TOTAL_SCOPE
from trader.risk import PostTradeRisk, PreTradeRisk
from trader.risk.decider import Decider
from trader.risk.history_room import WARN_SHARE, WATCH_S, HistoryUse, reduce_only_for
from trader.risk.open_orders import OPEN_ORDERS_VERSION, OpenOrdersState
from trader.risk.post_trade import (
    CHECKPOINT_VERSION,
    PostTradeCheckpoint,
    post_trade_checkpoint,
    restore_post_trade,
)
from trader.risk.prices import VenuePrices
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Input, Intake, Mode, Received, run_until_caught_up
from trader.runtime.service import Refused, Runtime, Service
from trader.runtime.snapshots import NO_SNAPSHOT, SnapshotStore, Snapshotting
from trader.runtime.trading_switch import follow_state

MAX_BATCH = 500
# The work inputs' checkpoints at most this often (a repeat is a repeat: a crash hands over again up to
# this long of work, never loses any), not a key-value write per batch on the order path.
WORK_CHECKPOINT_EVERY_S = 0.1
LEGACY_POST_TRADE_KEY = "risk.post_trade"  # where the post-trade watch was kept before its snapshot
CHECKPOINT_INTERVAL_S = 1.0  # the post-trade watch's snapshot, when it changed
SNAPSHOT_EVERY_MESSAGES = 10_000  # the open orders' snapshot: every so many order states, or seconds
SNAPSHOT_EVERY_S = 60.0

# New orders, and cancels, of which risk judges the cancel-replaces (a plain cancel is the oms's alone);
# kept raw here, each subject decoded into its own type.
REQUESTS_INPUT = Input(
    "ORDERS",
    ("order.submit.>", "order.cancel.>"),
    bytes,
    Mode.WORK,
    name="risk",
    decode=bytes,
    max_batch=MAX_BATCH,
    checkpoint_every_s=WORK_CHECKPOINT_EVERY_S,
)
# The latest tick of every instrument at start (then the core subscription keeps them): raw.
TICKS_INPUT = Input("MARKET_TICKS", "market.tick.>", bytes, Mode.LATEST, name="risk-ticks", decode=bytes)
# Every position: the accounts' net ones, position.<account>.<venue>.<symbol>, and the strategies' own,
# with a fifth token (a strategy's reduce-only order is judged against its own position).
POSITIONS_INPUT = Input("POSITIONS", "position.>", Position, Mode.LATEST, name="risk-positions")
ORDERS_INPUT = Input("ORDERS", ALL_ORDER_STATES, Order, Mode.HISTORY, name="risk-orders")
ORDERS_SNAPSHOT_KEY = "risk-orders"
PNL_INPUT = Input("PNL", pnl_subject(TOTAL_SCOPE), PnlSnapshot, Mode.HISTORY, name="risk-pnl")

_request_decoder = msgspec.json.Decoder(OrderRequest)
_cancel_decoder = msgspec.json.Decoder(CancelRequest)


@dataclass
class RiskState:
    """The running risk service, built whole by ``start``."""

    desk: RiskDesk
    kv: KeyValue
    inputs: list[Intake[Any]]  # positions, open orders, PnL: read on, live
    reading: list[asyncio.Task[None]]
    requests: Intake[bytes]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # the switch, the store room, breaches


class Risk(Service):
    name = "risk"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state: RiskState | None = None
        self._history_gauges: tuple[Gauge, Gauge] | None = None  # once: a retried start reuses them

    async def start(self, rt: Runtime) -> None:
        kv = await state_bucket(rt.js)
        trading, _ = await read_state(kv)
        desk = RiskDesk(self.settings, trading, rt)
        await adopt_legacy_checkpoint(rt, kv)
        started: list[Intake[Any]] = []
        reading: list[asyncio.Task[None]] = []
        try:
            inputs: list[Intake[Any]] = [
                # The latest tick of each instrument the stream holds, then every tick, kept raw.
                Intake(rt, TICKS_INPUT, desk.on_tick, live=desk.on_ticks),
                Intake(rt, POSITIONS_INPUT, desk.on_position),
                Intake(rt, ORDERS_INPUT, desk.on_order, snapshots=desk.orders_snapshotting()),
                Intake(rt, PNL_INPUT, desk.on_pnl, snapshots=desk.snapshotting()),
            ]
            for intake in inputs:
                await intake.start()
                started.append(intake)
            reading = await run_until_caught_up(inputs, "risk's history")
            # Requests only once the state they are checked against is there.
            requests = Intake(rt, REQUESTS_INPUT, desk.decide)
            await requests.start()
        except BaseException:
            for task in reading:
                task.cancel()
            await asyncio.gather(*reading, return_exceptions=True)
            for intake in started:
                await intake.stop()
            raise
        state = RiskState(desk, kv, inputs, reading, requests)
        state.tasks = [
            asyncio.create_task(follow_state(rt, kv, desk.on_trading_state)),
            asyncio.create_task(self._watch_storage(rt, state)),
            asyncio.create_task(desk.switch_on_breaches(kv)),
        ]
        self.state = state
        rt.log.info(
            "risk.ready",
            symbols_priced=len(desk.raw_ticks),
            post_trade=msgspec.structs.asdict(desk.checkpoint),
            mode=trading.mode,
        )

    # The loop ------------------------------------------------------------------------------------

    async def run(self, rt: Runtime) -> None:
        state = self.state
        assert state is not None, "run follows a successful start"
        deciding = asyncio.create_task(state.requests.run())
        tasks = [*state.reading, deciding]
        try:
            while not rt.stopping.is_set():
                for task in tasks:
                    if task.done() and not rt.stopping.is_set():
                        task.result()  # its error
                        raise RuntimeError("an input of risk ended")  # the runtime restarts it
                await asyncio.wait(tasks, timeout=1.0)
            await deciding  # its last batch decided and checkpointed
        finally:
            deciding.cancel()
            await asyncio.gather(deciding, return_exceptions=True)

    # Room for the trading history ----------------------------------------------------------------

    async def _watch_storage(self, rt: Runtime, state: RiskState) -> None:
        """Every WATCH_S: how full the trading history's room is (gauges, /health), a warning past
        WARN_SHARE, reduce-only past REDUCE_ONLY_SHARE (``trader.risk.history_room``)."""
        if self._history_gauges is None:
            registry = rt.metrics.registry
            self._history_gauges = (
                Gauge("trader_trading_history_bytes", "Bytes the trading history holds", registry=registry),
                Gauge(
                    "trader_trading_history_room_bytes", "Store the trading history has", registry=registry
                ),
            )
        used, room = self._history_gauges
        while True:
            try:
                use, switched = await check_history_room(rt.js, state.kv, self.settings)
            except Exception as exc:  # NATS away: looked at again next time
                rt.log.warning("risk.storage_check_failed", error=repr(exc))
            else:
                state.desk.history_use = use
                used.set(use.used)
                room.set(use.room)
                if switched:
                    rt.log.error("risk.storage_reduce_only", detail=use.describe())
                elif use.share >= WARN_SHARE:
                    rt.log.warning("risk.storage_low", detail=use.describe())
            await asyncio.sleep(WATCH_S)

    # Lifecycle -----------------------------------------------------------------------------------

    async def stop(self, rt: Runtime) -> None:
        state = self.state
        if state is None:
            return
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await state.requests.stop()
        # They end once the runtime stops; the watch's last snapshot follows its last PnL.
        await asyncio.gather(*state.reading, return_exceptions=True)
        for intake in state.inputs:
            await intake.stop()

    def ready_checks(self) -> dict[str, bool]:
        return {"caught_up": self.state is not None}

    def health_details(self) -> dict[str, object]:
        state = self.state
        if state is None:
            return {}
        use = state.desk.history_use
        return {
            "trading_mode": state.desk.trading.mode,
            "symbols_priced": len(state.desk.raw_ticks),
            "trading_history": None if use is None else {"bytes": use.used, "room": use.room},
        }


async def adopt_legacy_checkpoint(rt: Runtime, kv: KeyValue) -> None:
    """A stack upgraded from the post-trade checkpoint of before (the key ``risk.post_trade``) takes its
    first snapshot from it: the PnL before it is not applied again (nor its breaches switched again)."""
    store = SnapshotStore(rt.js, "risk")
    if await store.load(PostTradeCheckpoint, CHECKPOINT_VERSION) is not None or store.problem != NO_SNAPSHOT:
        return
    try:
        entry = await kv.get(LEGACY_POST_TRADE_KEY)
    except NotFoundError:
        return
    checkpoint = msgspec.json.decode(entry.value or b"{}", type=PostTradeCheckpoint)
    if checkpoint.seq:
        await store.save(checkpoint, {PNL_INPUT.stream: checkpoint.seq}, CHECKPOINT_VERSION)
        rt.log.info("risk.adopted_legacy_checkpoint", seq=checkpoint.seq)


async def check_history_room(
    js: JetStreamContext, kv: KeyValue, settings: Settings
) -> tuple[HistoryUse, bool]:
    """Measure the trading history's room; switch an active trading state to reduce-only when it is
    nearly full (the rule: ``trader.risk.history_room``). Returns the use and whether this call
    switched."""
    use = HistoryUse(await history_bytes(js), history_room(settings))
    state = reduce_only_for(use, now_ms())
    switched = state is not None and await write_state_if(kv, state, only_from="active")
    return use, switched


class RiskDesk:
    """Risk's state and what each input does to it: the decider, the latest prices, the positions and
    open orders it checks against, the post-trade watch. Its handlers are the intake's."""

    def __init__(self, settings: Settings, trading: TradingState, rt: Runtime) -> None:
        limits = settings.risk
        self.rt, self.trading = rt, trading
        self.pre = PreTradeRisk(limits, trading)
        self.post = PostTradeRisk(limits, trading)
        self.checkpoint = PostTradeCheckpoint()
        self.prices = VenuePrices(settings)
        self.decider = Decider(self.pre, self.prices)
        self.raw_ticks: dict[str, bytes] = {}
        self.dirty_ticks: set[str] = set()
        self.breaches: asyncio.Queue[TradingState] = asyncio.Queue()
        self.history_use: HistoryUse | None = None

    # Prices --------------------------------------------------------------------------------------

    def on_tick(self, received: Received[bytes]) -> list[Outgoing]:
        """A tick of the market, raw: only the latest per instrument is decoded, at the next decision."""
        self.raw_ticks[received.subject] = received.value
        self.dirty_ticks.add(received.subject)
        return []

    async def on_ticks(self, batch: list[Received[bytes]]) -> list[Outgoing]:
        raw, dirty = self.raw_ticks, self.dirty_ticks
        for received in batch:  # in stream order: a later tick of an instrument replaces an earlier one
            raw[received.subject] = received.value
            dirty.add(received.subject)
        return []

    def _refresh_prices(self) -> None:
        """Decode the latest tick of each instrument that traded since the last decision."""
        for subject in self.dirty_ticks:
            try:
                tick = decode_tick(self.raw_ticks[subject])
            except InvalidMessage:
                continue  # the normalizer dead-letters it; the previous price stands
            if self.prices.update(tick.venue, tick.symbol, tick.price):
                # Positions are valued at it too (gross exposure) until an order sets its own venue's.
                self.pre.update_price(tick.symbol, tick.price)
        self.dirty_ticks.clear()

    # Positions, open orders, PnL -----------------------------------------------------------------

    def on_position(self, received: Received[Position]) -> list[Outgoing]:
        self.pre.update_position(received.value)
        return []

    def on_order(self, received: Received[Order]) -> list[Outgoing]:
        self.pre.update_order(received.value)
        return []

    def on_pnl(self, received: Received[PnlSnapshot]) -> list[Outgoing]:
        breach = self.post.on_pnl(received.value)
        self.checkpoint = post_trade_checkpoint(self.post, received.seq, received.value)
        if breach is not None:
            self.breaches.put_nowait(breach)
        return []

    def snapshotting(self) -> Snapshotting[PostTradeCheckpoint]:
        """The post-trade watch's snapshot, every second it changed (``trader.risk.post_trade``)."""
        return Snapshotting(
            key="risk",
            state_type=PostTradeCheckpoint,
            version=CHECKPOINT_VERSION,
            take=lambda: self.checkpoint,
            restore=self._restore,
            every_messages=10_000,
            every_s=CHECKPOINT_INTERVAL_S,
        )

    def orders_snapshotting(self) -> Snapshotting[OpenOrdersState]:
        """The open orders' snapshot (``trader.risk.open_orders``): its size follows what is open."""
        return Snapshotting(
            key=ORDERS_SNAPSHOT_KEY,
            state_type=OpenOrdersState,
            version=OPEN_ORDERS_VERSION,
            take=self.pre.open_orders_state,
            restore=self.pre.restore_open_orders,
            every_messages=SNAPSHOT_EVERY_MESSAGES,
            every_s=SNAPSHOT_EVERY_S,
        )

    def _restore(self, checkpoint: PostTradeCheckpoint) -> None:
        self.checkpoint = checkpoint
        restore_post_trade(self.post, checkpoint)

    async def switch_on_breaches(self, kv: KeyValue) -> None:
        """Each breach the watch found: the switch to reduce-only (only from ``active``)."""
        while True:
            breach = await self.breaches.get()
            switched = await write_state_if(kv, breach, only_from="active")
            self.rt.log.warning("risk.post_trade_breach", reason=breach.reason, switched=switched)

    async def on_trading_state(self, state: TradingState) -> None:
        if state != self.trading:
            self.rt.log.info("trading_state.changed", mode=state.mode, reason=state.reason)
        self.trading = state
        self.pre.set_state(state)
        self.post.set_state(state)

    # Decisions -----------------------------------------------------------------------------------

    def decide(self, received: Received[bytes]) -> list[Outgoing]:
        """The requests input's handler: the verdict to publish, or the refusal (``InvalidMessage``)."""
        self._refresh_prices()
        decided = self._decide(self.rt, received)
        if isinstance(decided, Refused):
            raise InvalidMessage(decided.field, decided.reason.removeprefix(f"{decided.field}: "))
        return [] if decided is None else [decided]

    def _decide(self, rt: Runtime, msg: Received[bytes]) -> Outgoing | Refused | None:
        """The verdict to publish on a request, or its refusal as a dead letter; None for what on
        ``order.cancel.`` is not a well-formed replace (the oms's alone, and its to dead-letter)."""
        if msg.subject.startswith("order.cancel."):
            with contextlib.suppress(InvalidMessage):
                cancel = decode_message(_cancel_decoder, msg.data)
                if is_replace(cancel) and cancel.strategy == subject_token(msg.subject):
                    return self._decide_replace(rt, msg, cancel)
            return None
        request = decode_message(_request_decoder, msg.data)
        if request.strategy != subject_token(msg.subject):
            return refusal(msg.stored, "strategy", f"{request.strategy!r} on {msg.subject}")
        decision = self.decider.decide(request, msg.arrival_ms, now_ms())
        if not decision.approved:  # risk doing its job, not a fault: info (the reason is the order's too)
            rt.log.info(
                "risk.denied",
                client_order_id=request.client_order_id,
                strategy=request.strategy,
                reason=decision.reason,
            )
        return Outgoing(
            order_risk_subject(request.strategy), encode(decision), msg_id=f"risk:{request.client_order_id}"
        )

    def _decide_replace(self, rt: Runtime, msg: Received[bytes], request: CancelRequest) -> Outgoing:
        """A replace's id is its sender's, else its place in the ORDERS stream: a redelivery has the
        same, so it gets the same verdict under the same msg id."""
        if request.replace_id is None:
            replace_id = f"{request.client_order_id}:{msg.seq}"
            request = msgspec.structs.replace(request, replace_id=replace_id)
        decision = self.decider.decide_replace(request, msg.arrival_ms, now_ms())
        if not decision.approved:
            rt.log.info(
                "risk.replace_denied",
                client_order_id=request.client_order_id,
                strategy=request.strategy,
                replace_id=request.replace_id,
                reason=decision.reason,
            )
        return Outgoing(
            order_replace_subject(request.strategy),
            encode(decision),
            msg_id=f"risk:replace:{request.replace_id}",
        )


SERVICE = Risk
