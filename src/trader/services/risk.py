"""risk: the pre-trade check of every order request, the post-trade watch on equity.

Consumes:
- ``OrderRequest`` on ``order.submit.>`` and ``CancelRequest`` on ``order.cancel.>`` (stream ORDERS,
  durable consumer ``risk``, in stream order, acknowledged once the decision is stored: a crash
  redelivers the requests in hand, decided again under the same msg id). A cancel-replace is judged as
  the order it would become; a plain cancel is the oms's alone, and passed over;
- last trade prices: a core NATS subscription to ``market.tick.>`` that only keeps the latest raw tick
  per subject (``market.tick.<venue>.<SYMBOL>``), decoded when a decision needs it (only the latest
  price matters, and a busy feed then costs a dictionary write per tick); seeded at start with the
  latest tick per subject in MARKET_TICKS. An order is checked at the last trade of its venue's quote
  venue (``trader.risk.prices``), never at another feed's price of the symbol;
- positions: an ordered consumer on ``position.>`` from the latest message per subject: the accounts'
  net positions (``position.<account>.<venue>.<symbol>``) for every account-wide check, and each
  strategy's own (a fifth token, ``.<strategy>``) for that strategy's reduce-only orders;
- open orders: an ordered consumer on ``order.state.>`` from the start (terminal orders drop out);
- ``PnlSnapshot`` on ``pnl.total``: an ordered consumer from the sequence after the post-trade checkpoint;
- the trading switch (``trader.trading.state``).
Produces: a ``RiskDecision`` per request on ``order.risk.<strategy>`` (msg id ``risk:<client_order_id>``),
a ``ReplaceDecision`` per cancel-replace on ``order.replace.<strategy>`` (msg id ``risk:replace:<replace
id>``; the id is the sender's, else ``<client_order_id>:<the request's ORDERS sequence>``), the reason of
a denial naming the check and the numbers; ``reduce_only`` in the trading switch when the
day's loss or the drawdown crosses its limit, or the trading history nearly fills its room in
JetStream's store (``trader.trading.storage``; only from ``active``: an operator's switch is never
overridden).
State: rebuilt from the streams at every start; the post-trade peak and day start are kept in the
TRADER_STATE bucket under ``risk.post_trade`` with the sequence they cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Gauge

from trader.bus.publish import Outgoing
from trader.bus.read import (
    DurableConsumer,
    Follower,
    LazyAcks,
    Stored,
    ack_each,
    arrival_ms,
    batch_progress,
    catch_up,
    decode_message,
    next_batch,
    refusal,
    replay,
    subject_token,
)
from trader.bus.streams import order_replace_subject, order_risk_subject, pnl_subject
from trader.bus.wire import RawMessage, subscribe_raw, unsubscribe_raw
from trader.marketdata.decode import InvalidMessage, decode_tick
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
from trader.risk.prices import VenuePrices
from trader.runtime.consumer import now_ms
from trader.runtime.service import Refused, Runtime, Service
from trader.trading.state import follow_state, read_state, state_bucket, write_state_if
from trader.trading.storage import WARN_SHARE, WATCH_S, check_history_room

POST_TRADE_KEY = "risk.post_trade"
# New orders, and cancels, of which risk judges the cancel-replaces (a plain cancel is the oms's alone).
REQUESTS = ["order.submit.>", "order.cancel.>"]
# Every position: the accounts' net ones, position.<account>.<venue>.<symbol>, and the strategies' own,
# with a fifth token (a strategy's reduce-only order is judged against its own position).
POSITIONS = "position.>"
CHECKPOINT_INTERVAL_S = 1.0
# The history is read for as long as it takes (it grows with every order); only this long without a
# message is a failed start (retried).
CATCH_UP_STALL_S = 60.0
MAX_BATCH = 500

_request_decoder = msgspec.json.Decoder(OrderRequest)
_cancel_decoder = msgspec.json.Decoder(CancelRequest)


class PostTradeCheckpoint(msgspec.Struct, kw_only=True, frozen=True):
    """What the post-trade watch had seen up to ``seq`` of the PNL stream."""

    seq: int = 0
    timestamp: int = 0
    equity: Decimal | None = None
    peak: Decimal | None = None
    day_start: Decimal | None = None


def post_trade_checkpoint(post: PostTradeRisk, seq: int, snapshot: PnlSnapshot) -> PostTradeCheckpoint:
    """What the watch knows once it has seen ``snapshot`` (at ``seq`` of the PNL stream)."""
    return PostTradeCheckpoint(
        seq=seq,
        timestamp=snapshot.timestamp,
        equity=snapshot.total,
        peak=post.peak_equity,
        day_start=post.day_start_equity,
    )


def restore_post_trade(post: PostTradeRisk, checkpoint: PostTradeCheckpoint) -> None:
    """Bring a fresh watch to where the checkpoint was: the last equity and its day through the watch's
    own update, then the peak and the day's start."""
    if checkpoint.equity is None:
        return
    post.update(checkpoint.equity, checkpoint.timestamp)
    post.peak_equity = checkpoint.peak
    post.day_start_equity = checkpoint.day_start


class Risk(Service):
    name = "risk"

    async def start(self, rt: Runtime) -> None:
        self.ready = False
        self.log = rt.log
        limits = self.settings.risk
        self.kv = await state_bucket(rt.js)
        self.trading, _ = await read_state(self.kv)
        self.pre = PreTradeRisk(limits, self.trading)
        self.post = PostTradeRisk(limits, self.trading)
        self.checkpoint = await self._load_checkpoint()
        self.saved_checkpoint = self.checkpoint
        restore_post_trade(self.post, self.checkpoint)
        self.prices = VenuePrices(self.settings)
        self.decider = Decider(self.pre, self.prices)
        self.raw_ticks: dict[str, bytes] = {}
        self.dirty_ticks: set[str] = set()
        self.inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self.acks = LazyAcks(ack_each)
        self.followers: list[Follower] = []
        self.tick_sub: Any = None
        self.consumer: DurableConsumer | None = None
        try:
            await self._start_inputs(rt)
        except Exception:
            await self._stop_inputs()
            raise
        self.watch_task = asyncio.create_task(follow_state(rt, self.kv, self._on_trading_state))
        self.storage_task = asyncio.create_task(self._watch_storage(rt))
        self.ready = True
        rt.log.info(
            "risk.ready",
            symbols_priced=len(self.raw_ticks),
            post_trade=msgspec.structs.asdict(self.checkpoint),
            mode=self.trading.mode,
        )

    async def _start_inputs(self, rt: Runtime) -> None:
        # Live ticks first, so the seed below never overwrites a newer price with an older one.
        self.tick_sub = await subscribe_raw(rt.nc, "market.tick.>", self._on_ticks)
        await replay(
            rt.js,
            "MARKET_TICKS",
            "market.tick.>",
            self._seed_tick,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        )
        start_seq = self.checkpoint.seq + 1 if self.checkpoint.seq else None
        self.followers = [
            self._follow(
                rt, "POSITIONS", POSITIONS, Position, self._on_position, DeliverPolicy.LAST_PER_SUBJECT
            ),
            self._follow(rt, "ORDERS", "order.state.>", Order, self._on_order),
            self._follow(rt, "PNL", pnl_subject(TOTAL_SCOPE), PnlSnapshot, self._on_pnl, start_seq=start_seq),
        ]
        for follower in self.followers:
            await follower.start()
        await catch_up(self.followers, CATCH_UP_STALL_S, "risk's history")
        # Requests only once the state they are checked against is there.
        self.consumer = DurableConsumer(
            rt.js, stream="ORDERS", name="risk", subjects=REQUESTS, inbox=self.inbox
        )
        await self.consumer.start()

    # Inputs --------------------------------------------------------------------------------------

    def _on_ticks(self, ticks: list[RawMessage]) -> None:
        """Every tick of the market, raw: only the latest per symbol is decoded, at the next decision."""
        raw, dirty = self.raw_ticks, self.dirty_ticks
        for subject, _reply, _headers, data in ticks:
            name = subject.decode()
            raw[name] = data
            dirty.add(name)

    async def _seed_tick(self, stored: Stored) -> None:
        if stored.subject not in self.raw_ticks:
            self.raw_ticks[stored.subject] = stored.data
            self.dirty_ticks.add(stored.subject)

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

    def _follow(
        self,
        rt: Runtime,
        stream: str,
        subject: str,
        kind: type[msgspec.Struct],
        apply: Callable[[Stored, Any], Awaitable[None]],
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        start_seq: int | None = None,
    ) -> Follower:
        decoder = msgspec.json.Decoder(kind)

        async def handle(stored: Stored) -> None:
            try:
                value = decode_message(decoder, stored.data)
            except InvalidMessage as exc:
                rt.metrics.count_error("undecodable")
                if follower.caught_up.is_set():  # live: dead-lettered once, not at every replay
                    await rt.dead_letter(stream, [stored.refused(exc)])
                return
            await apply(stored, value)

        def on_error(stored: Stored, exc: Exception) -> None:
            rt.metrics.count_error("input")
            rt.log.error("risk.input_failed", subject=stored.subject, error=repr(exc))

        follower = Follower(
            rt.js,
            stream=stream,
            subjects=subject,
            handler=handle,
            deliver_policy=deliver_policy,
            start_seq=start_seq,
            on_error=on_error,
        )
        return follower

    async def _on_position(self, stored: Stored, position: Position) -> None:
        self.pre.update_position(position)

    async def _on_order(self, stored: Stored, order: Order) -> None:
        self.pre.update_order(order)

    async def _on_pnl(self, stored: Stored, snapshot: PnlSnapshot) -> None:
        breach = self.post.on_pnl(snapshot)
        self.checkpoint = post_trade_checkpoint(self.post, stored.seq, snapshot)
        if breach is None:
            return
        switched = await write_state_if(self.kv, breach, only_from="active")
        self.log.warning("risk.post_trade_breach", reason=breach.reason, switched=switched)

    # Decisions -----------------------------------------------------------------------------------

    async def run(self, rt: Runtime) -> None:
        last_save = time.monotonic()
        while not rt.stopping.is_set():
            batch = await next_batch(self.inbox, MAX_BATCH)
            if batch:
                await self._decide_batch(rt, batch)
            rt.note_consumer("requests", *batch_progress(batch))  # /health: far behind or stalled
            if time.monotonic() - last_save >= CHECKPOINT_INTERVAL_S:
                await self._save_checkpoint(rt)
                last_save = time.monotonic()

    async def _decide_batch(self, rt: Runtime, batch: list[Msg]) -> None:
        started = time.perf_counter()
        self._refresh_prices()
        out: list[Outgoing] = []
        refused: list[Refused] = []
        for msg in batch:
            try:
                decided = self._decide(rt, msg)
            except InvalidMessage as exc:
                refused.append(refusal(msg, exc.field, exc.reason))
                continue
            if isinstance(decided, Outgoing):
                out.append(decided)
            elif decided is not None:
                refused.append(decided)
        await rt.dead_letter("ORDERS", refused)
        if out:
            await rt.publish_reliably(out)
        for msg in batch:
            self.acks.add(msg)
        rt.metrics.count_in(len(batch))
        rt.metrics.observe_batch(time.perf_counter() - started)

    def _decide(self, rt: Runtime, msg: Msg) -> Outgoing | Refused | None:
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
            return refusal(msg, "strategy", f"{request.strategy!r} on {msg.subject}")
        decision = self.decider.decide(request, arrival_ms(msg), now_ms())
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

    def _decide_replace(self, rt: Runtime, msg: Msg, request: CancelRequest) -> Outgoing:
        """A replace's id is its sender's, else its place in the ORDERS stream: a redelivery has the
        same, so it gets the same verdict under the same msg id."""
        if request.replace_id is None:
            replace_id = f"{request.client_order_id}:{msg.metadata.sequence.stream}"
            request = msgspec.structs.replace(request, replace_id=replace_id)
        decision = self.decider.decide_replace(request, arrival_ms(msg), now_ms())
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

    # The trading switch --------------------------------------------------------------------------

    async def _on_trading_state(self, state: TradingState) -> None:
        if state != self.trading:
            self.log.info("trading_state.changed", mode=state.mode, reason=state.reason)
        self.trading = state
        self.pre.set_state(state)
        self.post.set_state(state)

    # Room for the trading history ----------------------------------------------------------------

    async def _watch_storage(self, rt: Runtime) -> None:
        """Every WATCH_S: how full the trading history's room is (gauges, /health), a warning past
        WARN_SHARE, reduce-only past REDUCE_ONLY_SHARE (``trader.trading.storage``)."""
        if not hasattr(self, "_history_gauges"):  # once: a start retried after a failure reuses them
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
                use, switched = await check_history_room(rt.js, self.kv, self.settings)
            except Exception as exc:  # NATS away: looked at again next time
                rt.log.warning("risk.storage_check_failed", error=repr(exc))
            else:
                self.history_use = use
                used.set(use.used)
                room.set(use.room)
                if switched:
                    rt.log.error("risk.storage_reduce_only", detail=use.describe())
                elif use.share >= WARN_SHARE:
                    rt.log.warning("risk.storage_low", detail=use.describe())
            await asyncio.sleep(WATCH_S)

    # The post-trade checkpoint -------------------------------------------------------------------

    async def _load_checkpoint(self) -> PostTradeCheckpoint:
        try:
            entry = await self.kv.get(POST_TRADE_KEY)
        except NotFoundError:
            return PostTradeCheckpoint()
        return msgspec.json.decode(entry.value or b"{}", type=PostTradeCheckpoint)

    async def _save_checkpoint(self, rt: Runtime) -> None:
        if self.checkpoint == self.saved_checkpoint:
            return
        checkpoint = self.checkpoint
        await rt.retry("checkpoint", lambda: self.kv.put(POST_TRADE_KEY, encode(checkpoint)))
        self.saved_checkpoint = checkpoint

    # Lifecycle -----------------------------------------------------------------------------------

    async def stop(self, rt: Runtime) -> None:
        for name in ("watch_task", "storage_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._stop_inputs()
        if hasattr(self, "checkpoint"):
            await self._save_checkpoint(rt)

    async def _stop_inputs(self) -> None:
        if hasattr(self, "acks"):
            await self.acks.close()
        if self.consumer is not None:
            await self.consumer.stop()
        for follower in self.followers:
            await follower.stop()
        if self.tick_sub is not None:
            await unsubscribe_raw(self.tick_sub)
            self.tick_sub = None

    def ready_checks(self) -> dict[str, bool]:
        return {"caught_up": getattr(self, "ready", False)}

    def health_details(self) -> dict[str, object]:
        if not getattr(self, "ready", False):
            return {}
        use = getattr(self, "history_use", None)
        return {
            "trading_mode": self.trading.mode,
            "symbols_priced": len(self.raw_ticks),
            "trading_history": None if use is None else {"bytes": use.used, "room": use.room},
        }


SERVICE = Risk
