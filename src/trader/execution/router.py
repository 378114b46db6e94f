"""The router's engine: routes the orders the oms leaves a choice of venue, and remembers where each went.

Quotes in (``on_tick``: each market-data venue's top of book), route messages in (``route``: the
VenueOrder with its venue on ``exec.order.<venue>``, or a ``rejected`` report), decisions kept
(client_order_id -> venue) so that a cancel or a replace goes where its order went and a repeated
``new`` is not routed twice. The decision itself is ``trader.execution.routing.Routing.choose``. No bus:
the execution-router service (``trader.services.execution_router``) feeds it and publishes what it
answers.

Decisions are kept while their order works, and for ``IDS_WINDOW_MS`` after it ended (by the reports'
own time, before the latest: a repeat of its messages can only come within that), then forgotten: the
router follows each order's life from EXEC (``follow``: the venue orders and exeq's reports, as exeq's
desk does, ``trader.execution.desk.Tracked``), so what it holds is the orders working and those of the
last window, not every order ever routed.

Everything it answers carries ``Trader-Source-Seq``, the EXEC sequence of the route message it answers,
and a ``Nats-Msg-Id`` from that message's identity: the rebuild after a restart (``remember``) learns
from the stream which route messages were answered, and a repeated answer is stored once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.streams import SOURCE_SEQ, exec_order_subject, exec_report_subject
from trader.config import Settings
from trader.execution.desk import Tracked
from trader.execution.routing import Routing, RoutingError, Touch, VenueQuote
from trader.execution.venues.base import report_about
from trader.messages import ExecutionReport, MarketTick, Side, VenueOrder, encode
from trader.orders.retention import IDS_WINDOW_MS, Ended

_venue_order = msgspec.json.Decoder(VenueOrder)
_report = msgspec.json.Decoder(ExecutionReport)

ROUTER_VENUE = "router"  # the report subject of a rejection that names no venue


@dataclass(frozen=True)
class _Routable:
    """What the routing decision reads; an empty venue on the wire means "choose one"."""

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


_NO_TOUCH = _Touch()


@dataclass
class Router:
    """The routing logic without the bus: quotes in, decisions kept, messages out."""

    settings: Settings
    decisions: dict[str, str] = field(default_factory=dict)  # client_order_id -> venue
    by_venue: dict[tuple[str, str], _Touch] = field(default_factory=dict)  # (quote venue, symbol)
    routing: Routing = field(init=False)
    orders: dict[str, Tracked] = field(default_factory=dict)  # client_order_id -> its life in EXEC
    ended: Ended[str] = field(default_factory=Ended)  # the orders followed that ended, by when
    latest_ms: int = 0  # the latest report's time followed

    def __post_init__(self) -> None:
        self.routing = Routing.of(self.settings)

    def on_tick(self, tick: MarketTick) -> None:
        self.by_venue.setdefault((tick.venue, tick.symbol), _Touch()).update(tick)

    def _touch(self, quote_venue: str, symbol: str) -> Touch:
        touch = self.by_venue.get((quote_venue, symbol), _NO_TOUCH)
        return touch.bid, touch.ask

    def quote(self, venue: str, symbol: str) -> VenueQuote:
        return self.routing.quote(venue, symbol, self._touch)

    def remember(self, order: VenueOrder) -> None:
        """An order this router published (seen again on a replay)."""
        if order.action == "new" and order.venue:
            self.decisions.setdefault(order.client_order_id, order.venue)

    def follow(self, subject: str, data: bytes) -> None:
        """A venue order or report stored in EXEC (the router's answers, the oms's orders straight to a
        venue, exeq's reports): each order followed from its ``new`` to its end, and its decision
        forgotten once it ended ``IDS_WINDOW_MS`` before the latest report (what cannot be decoded is
        passed over: it is not about an order the router follows)."""
        try:
            if subject.startswith("exec.order."):
                order = _venue_order.decode(data)
                if order.action == "new":
                    self.orders.setdefault(order.client_order_id, Tracked(order))
                elif order.action == "replace" and (known := self.orders.get(order.client_order_id)):
                    known.replace = order  # its answer, replaced or rejected, follows
            elif subject.startswith("exec.report."):
                self._follow_report(_report.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return

    def _follow_report(self, report: ExecutionReport) -> None:
        tracked = self.orders.get(report.client_order_id)
        if tracked is None:
            return
        ended = tracked.ended
        tracked.apply(report)
        self.latest_ms = max(self.latest_ms, report.timestamp)
        if tracked.ended and not ended:
            self.ended.add(report.client_order_id, report.timestamp)
        for client_order_id in self.ended.take(self.latest_ms - IDS_WINDOW_MS):
            self.orders.pop(client_order_id, None)
            self.decisions.pop(client_order_id, None)

    @staticmethod
    def source_seq(headers: dict[str, str]) -> int | None:
        """The route message a message of EXEC answers (``Trader-Source-Seq``); None for one published
        by exeq, or by the oms straight to a venue."""
        source = headers.get(SOURCE_SEQ)
        return int(source) if source is not None else None

    def route(self, order: VenueOrder, seq: int) -> Outgoing | None:
        """The message that answers route message ``seq``; None for a repeat of a routed order."""
        if order.action in ("cancel", "replace"):
            return self._route_to_order(order, seq)
        if order.client_order_id in self.decisions:
            return None
        try:
            choice = self.routing.choose(
                _Routable(order.symbol, order.side, order.venue or None), self._touch
            )
        except RoutingError as exc:
            return self._reject(order, seq, str(exc), exc.venue)
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
    return Routing.of(settings).needs_quotes
