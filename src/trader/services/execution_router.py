"""execution-router: picks the venue of every order that leaves a choice.

Consumes: ``exec.route.>`` (stream EXEC), VenueOrders from the oms with the venue empty (to choose) or
fixed; ``market.tick.>`` (MARKET_TICKS, ``market.tick.<venue>.<SYMBOL>``, the latest per subject then
live) for each venue's top of book.
An order whose venue leaves nothing to choose (one it names, else the fixed one, else the only one
configured, when configured and run) goes from the oms straight to ``exec.order.<venue>``: one hop less.
Produces: the VenueOrder with its venue on ``exec.order.<venue>``; for an order that cannot be routed,
an ExecutionReport ``rejected`` with the reason on ``exec.report.<venue>`` (the venue it named) or
``exec.report.router``, so that the oms rejects it. Undecodable route messages go to the dead letters.

The choice is ``trader.execution.routing.choose_venue`` over ``settings.routing.venues_for(symbol)``: the
order's own venue, else ``routing.fixed_venue``, else the only venue, else the best price net of each
venue's ``exeq.venues[name].taker_fee_bps``. A venue's quote is the latest tick of its quote venue
(``Settings.quote_venue_of``): a live venue's own ticks, a paper venue's ``exeq.paper.quote_venue`` (the
mock feed's ``gateway.venue`` when unset), never another feed's. A cancel or a replace (cancel-replace)
goes where the order was routed.

State and restart: the routing decision of every order (client_order_id -> venue). Everything published
carries ``Trader-Source-Seq``, the EXEC sequence of the route message it answers. On start the router
replays ``exec.order.>`` and ``exec.report.>`` from the stream: the decisions come back from the orders
it (or the oms) published, and it resumes consuming ``exec.route.>`` after the highest answered
sequence. Repeating a message changes nothing: a second ``new`` for a routed order is skipped, and what
is published carries a ``Nats-Msg-Id`` from the route message's identity.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.read import (
    Follower,
    Stored,
    decode_message,
    follow_latest,
    replay,
    take_batch,
    work_consumer,
    work_through,
)
from trader.bus.streams import SOURCE_SEQ, exec_order_subject, exec_report_subject
from trader.config import Settings
from trader.execution.routing import RoutingError, VenueQuote, choose_venue
from trader.execution.venues.base import report_about
from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick, Side, VenueOrder, encode
from trader.runtime.consumer import Delivery
from trader.runtime.service import Runtime, Service

ROUTER_VENUE = "router"  # the report subject of a rejection that names no venue

_venue_order = msgspec.json.Decoder(VenueOrder)


@dataclass(frozen=True)
class _Routable:
    """What ``choose_venue`` reads; an empty venue on the wire means "choose one"."""

    symbol: str
    side: Side
    venue: str | None


@dataclass
class _Touch:
    bid: Decimal | None = None
    ask: Decimal | None = None

    def update(self, tick: MarketTick) -> None:
        # A tick without a quote keeps the last one known (as the paper venue does).
        self.bid = tick.bid if tick.bid is not None else self.bid
        self.ask = tick.ask if tick.ask is not None else self.ask


@dataclass
class Router:
    """The routing logic without the bus: quotes in, decisions kept, messages out."""

    settings: Settings
    decisions: dict[str, str] = field(default_factory=dict)  # client_order_id -> venue
    by_venue: dict[tuple[str, str], _Touch] = field(default_factory=dict)  # (quote venue, symbol)

    def on_tick(self, tick: MarketTick) -> None:
        self.by_venue.setdefault((tick.venue, tick.symbol), _Touch()).update(tick)

    def quote(self, venue: str, symbol: str) -> VenueQuote:
        config = self.settings.exeq.venues.get(venue)
        fee = config.taker_fee_bps if config is not None else Decimal(0)
        touch = self.by_venue.get((self.settings.quote_venue_of(venue), symbol)) or _Touch()
        return VenueQuote(venue, touch.bid, touch.ask, fee)

    def remember(self, order: VenueOrder) -> None:
        """An order this router published (seen again on a replay)."""
        if order.action == "new" and order.venue:
            self.decisions.setdefault(order.client_order_id, order.venue)

    def route(self, order: VenueOrder, seq: int) -> Outgoing | None:
        """The message that answers route message ``seq``; None for a repeat of a routed order."""
        if order.action in ("cancel", "replace"):
            return self._route_to_order(order, seq)
        if order.client_order_id in self.decisions:
            return None
        venues = [self.quote(v, order.symbol) for v in self.settings.routing.venues_for(order.symbol)]
        routable = _Routable(order.symbol, order.side, order.venue or None)
        try:
            choice = choose_venue(routable, venues, fixed_venue=self.settings.routing.fixed_venue)
        except RoutingError as exc:
            named = order.venue or self.settings.routing.fixed_venue
            return self._reject(order, seq, str(exc), named)
        if choice.venue not in self.settings.exeq.venues:
            return self._reject(order, seq, f"venue {choice.venue!r} is not run by exeq", choice.venue)
        self.decisions[order.client_order_id] = choice.venue
        return self._forward(msgspec.structs.replace(order, venue=choice.venue), seq)

    def _route_to_order(self, order: VenueOrder, seq: int) -> Outgoing:
        """A cancel or replace: to the venue the order was routed to."""
        venue = self.decisions.get(order.client_order_id) or order.venue
        if not venue:
            why = f"{order.action} of {order.client_order_id}: the order was never routed"
            return self._reject(order, seq, why)
        return self._forward(msgspec.structs.replace(order, venue=venue), seq)

    @staticmethod
    def _forward(order: VenueOrder, seq: int) -> Outgoing:
        return Outgoing(
            exec_order_subject(order.venue),
            encode(order),
            msg_id=f"{order.venue_client_id}:{order.action}:{seq}",
            headers={SOURCE_SEQ: str(seq)},
        )

    @staticmethod
    def _reject(order: VenueOrder, seq: int, reason: str, venue: str | None = None) -> Outgoing:
        venue = venue or ROUTER_VENUE
        report = report_about(
            order,
            venue=venue,
            kind="rejected",
            exec_id=f"{ROUTER_VENUE}:{order.venue_client_id}:{seq}",
            timestamp=order.timestamp or time.time_ns() // 1_000_000,
            reason=f"routing: {reason}",
        )
        return Outgoing(
            exec_report_subject(venue), encode(report), msg_id=report.exec_id, headers={SOURCE_SEQ: str(seq)}
        )


def quotes_needed(settings: Settings) -> bool:
    """Whether any order may be routed on price: some symbol has a choice of venues and no fixed one."""
    routing = settings.routing
    return routing.fixed_venue is None and any(len(venues) > 1 for venues in routing.venues.values())


class ExecutionRouter(Service):
    name = "execution-router"

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.ticks: Follower | None = None
        await self.stop(rt)  # a start retried after a failure begins afresh
        self.router = Router(self.settings)
        answered = await self._rebuild(rt)
        if quotes_needed(self.settings):
            self.ticks = follow_latest(
                rt, stream="MARKET_TICKS", subjects="market.tick.>", decode=decode_tick, apply=self._on_tick
            )
            await self.ticks.start()
        else:  # every venue is fixed or alone: no choice on price, so no tick is worth reading
            rt.log.info("router.quotes_not_needed", venues=self.settings.routing.venues)
        self.consumer = work_consumer(rt, stream="EXEC", subject="exec.route.>", start_seq=answered + 1)
        await self.consumer.start()

    async def _rebuild(self, rt: Runtime) -> int:
        """Decisions and the last answered route message, from what this router published."""
        answered = 0

        async def take(stored: Stored) -> None:
            nonlocal answered
            source = (stored.headers or {}).get(SOURCE_SEQ)
            if source is not None:  # else published by exeq, or by the oms straight to a venue
                answered = max(answered, int(source))
            if stored.subject.startswith("exec.order."):
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    self.router.remember(_venue_order.decode(stored.data))

        await replay(rt.js, "EXEC", ["exec.order.>", "exec.report.>"], take)
        rt.log.info("router.rebuilt", decisions=len(self.router.decisions), resume_after=answered)
        return answered

    async def _on_tick(self, tick: MarketTick, stored: Stored) -> None:
        self.router.on_tick(tick)

    async def run(self, rt: Runtime) -> None:
        await work_through(rt, self.consumer, self._process)

    async def _process(self, batch: list[Delivery]) -> None:
        await take_batch(self.rt, "EXEC", batch, self._route)

    async def _route(self, stored: Stored) -> list[Outgoing]:
        order = decode_message(_venue_order, stored.data)
        message = self.router.route(order, stored.seq)
        if message is None:
            self.rt.log.info("router.repeat_skipped", client_order_id=order.client_order_id, seq=stored.seq)
            return []
        return [message]

    async def stop(self, rt: Runtime) -> None:
        if getattr(self, "ticks", None) is not None:
            await self.ticks.stop()
        self.ticks = None

    def ready_checks(self) -> dict[str, bool]:
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "router"):
            return {}
        quoted = {symbol for _venue, symbol in self.router.by_venue}
        return {"routed_orders": len(self.router.decisions), "quoted_symbols": len(quoted)}


SERVICE = ExecutionRouter
