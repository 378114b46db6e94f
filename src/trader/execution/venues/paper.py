"""The paper venue: fills against the live quotes, deterministically.

The latest ``MarketTick`` per symbol is the book: its bid and ask are the touch and its ``size`` is the
quantity available at the touch until the next tick (shared by every order that takes on that tick).

- Latency: an order reaches the book at the first tick at or after submit time + ``latency_ms`` and meets
  that tick's quote; with no latency it meets the current quote at once. Cancels act at once.
- Taking (market orders, marketable limits): buy at the ask, sell at the bid, moved ``slippage_bps``
  against the taker and never past the limit price; taker fee.
- Resting limits fill as maker at their limit price when a later tick's opposite quote reaches the limit
  or a trade prints through it.
- Stops trigger when the last trade price reaches the stop, then work as a market or limit order.
- IOC expires what it cannot fill at once, FOK fills all at once or expires, GTC keeps the rest working;
  post-only that would take is rejected (expired if it was already accepted: a triggered stop-limit).
- Cancel-replace changes a live order's total quantity and/or limit price and keeps what filled. A new
  price or a larger quantity loses the order's time priority. New terms that make a working limit
  marketable take at once as a taker; a post-only order's replace that would take is rejected and the
  order works on unchanged, as it does after any rejected replace (a quantity not above what filled, an
  order unknown or finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import msgspec
from pydantic import BaseModel, Field

from trader.execution.venues.base import ReportListener, VenueAdapter, report_about
from trader.messages import ExecutionReport, Liquidity, MarketTick, ReportKind, Side, VenueOrder

BPS = Decimal(10_000)
POST_ONLY_REASON = "post-only order would take liquidity"
_TAKING_TYPES = frozenset({"market", "stop_market"})
_LIMIT_TYPES = frozenset({"limit", "stop_limit"})
_STOP_TYPES = frozenset({"stop_market", "stop_limit"})

OrderState = Literal["pending", "working", "filled", "canceled", "expired", "rejected"]
_LIVE_STATES = frozenset({"pending", "working"})


class PaperVenueSettings(BaseModel):
    """The paper venue's simulation."""

    maker_fee_bps: Decimal = Field(default=Decimal(2), description="negative is a rebate")
    taker_fee_bps: Decimal = Decimal(5)
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, description="against the taker")
    latency_ms: int = Field(default=0, ge=0, description="from submit until the order meets the book")
    quote_venue: str | None = Field(
        default=None,
        description="fill only on ticks of this market-data venue; None: exeq takes the mock feed's "
        "(gateway.venue), a PaperVenue alone any venue's",
    )
    initial_balances: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal(100_000)})
    # Symbols without a separator are split on these suffixes: BTCUSDT is BTC against USDT.
    quote_assets: list[str] = Field(default_factory=lambda: ["USDT", "USDC", "FDUSD", "USD", "EUR", "BTC"])


@dataclass
class _Book:
    tick: MarketTick
    bid: Decimal | None = None  # the latest known, kept when a tick carries no quote
    ask: Decimal | None = None
    # What is left at the touch of the latest tick, by the side of the order that takes it.
    available: dict[Side, Decimal] = field(default_factory=dict)

    def update(self, tick: MarketTick) -> None:
        self.tick = tick
        self.bid = tick.bid if tick.bid is not None else self.bid
        self.ask = tick.ask if tick.ask is not None else self.ask
        self.available = {"buy": tick.size, "sell": tick.size}

    def touch(self, side: Side) -> Decimal | None:
        return self.ask if side == "buy" else self.bid


class _PaperOrder(msgspec.Struct, gc=False):  # one per order ever seen: out of the collector's sight
    order: VenueOrder
    venue_order_id: str
    arrives_at: int
    remaining: Decimal
    triggered: bool  # a stop waits for its trigger; every other order starts triggered
    state: OrderState = "pending"
    accepted: bool = False
    resting: bool = False  # a limit order in the book: it fills as maker


class PaperVenue(VenueAdapter):
    kind = "paper"

    def __init__(
        self,
        settings: PaperVenueSettings | None = None,
        name: str | None = None,
        *,
        report_listener: ReportListener | None = None,
    ) -> None:
        super().__init__(name, report_listener=report_listener)
        self.settings = settings or PaperVenueSettings()
        self._books: dict[str, _Book] = {}
        self._orders: dict[str, _PaperOrder] = {}  # every order seen, by venue_client_id
        self._live: dict[str, _PaperOrder] = {}  # pending or working, in time priority
        self._report_counts: dict[str, int] = {}
        self._order_count = 0
        self._balances: dict[str, Decimal] = dict(self.settings.initial_balances)

    # The interface -------------------------------------------------------------------------------

    async def submit(self, order: VenueOrder) -> list[ExecutionReport]:
        if order.action == "cancel":
            return await self.cancel(order)
        if order.action == "replace":
            return await self.replace(order)
        now = self._now(order)
        problem = self._refusal(order)
        if problem is not None:
            return [self._report(order, self._next_venue_order_id(), "rejected", now, reason=problem)]
        paper = _PaperOrder(
            order=order,
            venue_order_id=self._next_venue_order_id(),
            arrives_at=now + self.settings.latency_ms,
            remaining=order.quantity,
            triggered=order.type not in _STOP_TYPES,
        )
        self._orders[order.venue_client_id] = paper
        self._live[order.venue_client_id] = paper
        if self.settings.latency_ms == 0:
            return self._arrive(paper, now)
        return []

    def forget(self, venue_client_id: str) -> None:
        paper = self._orders.get(venue_client_id)
        if paper is not None and paper.state not in _LIVE_STATES:  # never one still working
            del self._orders[venue_client_id]
            self._report_counts.pop(venue_client_id, None)

    async def cancel(self, order: VenueOrder) -> list[ExecutionReport]:
        now = self._now(order)
        paper = self._orders.get(order.venue_client_id)
        if paper is None:
            reason = f"cancel rejected: unknown order {order.venue_client_id}"
            return [self._report(order, None, "rejected", now, reason=reason)]
        if paper.state not in _LIVE_STATES:
            reason = f"cancel rejected: order {order.venue_client_id} is already {paper.state}"
            return [self._report(paper.order, paper.venue_order_id, "rejected", now, reason=reason)]
        return [self._finish(paper, "canceled", now, "canceled on request")]

    async def replace(self, order: VenueOrder) -> list[ExecutionReport]:
        now = self._now(order)
        vcid = order.venue_client_id
        paper = self._orders.get(vcid)
        if paper is None:
            return [
                self._report(order, None, "rejected", now, reason=f"replace rejected: unknown order {vcid}")
            ]
        if paper.state not in _LIVE_STATES:
            reason = f"replace rejected: order {vcid} is already {paper.state}"
            return [self._report(paper.order, paper.venue_order_id, "rejected", now, reason=reason)]
        old = paper.order
        filled = old.quantity - paper.remaining
        price = order.price if order.price is not None else old.price
        problem: str | None = None
        if order.quantity <= filled:
            problem = f"quantity {order.quantity} is not above filled {filled}"
        elif price != old.price and old.type not in _LIMIT_TYPES:
            problem = f"a {old.type} order has no limit price to replace"
        elif price is not None and price <= 0:
            problem = f"price must be positive, got {price}"
        new = msgspec.structs.replace(old, quantity=order.quantity, price=price)
        book = self._books.get(old.symbol)
        takes = (
            paper.state == "working"
            and paper.triggered
            and old.type in _LIMIT_TYPES
            and _marketable(new, book)
        )
        if problem is None and takes and old.post_only:
            problem = POST_ONLY_REASON
        if problem is not None:
            return [
                self._report(
                    old, paper.venue_order_id, "rejected", now, reason=f"replace rejected: {problem}"
                )
            ]
        paper.order = new
        paper.remaining = new.quantity - filled
        if price != old.price or new.quantity > old.quantity:  # to the back of the queue
            self._live.pop(vcid, None)
            self._live[vcid] = paper
        replaced = self._report(
            new, paper.venue_order_id, "replaced", now, last_quantity=new.quantity, last_price=new.price
        )
        if takes and book is not None:
            return [replaced, *self._take(paper, book, now, limit=new.price)]
        return [replaced]

    def quotes_from(self, tick: MarketTick) -> bool:
        return self.settings.quote_venue is None or tick.venue == self.settings.quote_venue

    def on_tick(self, tick: MarketTick) -> list[ExecutionReport]:
        if not self.quotes_from(tick):
            return []
        book = self._books.setdefault(tick.symbol, _Book(tick))
        book.update(tick)
        reports: list[ExecutionReport] = []
        for paper in list(self._live.values()):
            if paper.order.symbol != tick.symbol:
                continue
            if paper.state == "pending":
                if tick.timestamp >= paper.arrives_at:
                    reports += self._arrive(paper, tick.timestamp)
            else:
                reports += self._work(paper, book, tick.timestamp, fresh=False)
        return reports

    async def open_orders(self) -> list[VenueOrder]:
        return [paper.order for paper in self._live.values()]

    async def balances(self) -> dict[str, Decimal]:
        return dict(self._balances)

    # Matching ------------------------------------------------------------------------------------

    def _arrive(self, paper: _PaperOrder, now: int) -> list[ExecutionReport]:
        """The order reaches the book: acknowledged, then it takes what it may."""
        paper.state = "working"
        book = self._books.get(paper.order.symbol)
        if self._would_take_post_only(paper, book):
            return [self._refuse(paper, POST_ONLY_REASON, now)]
        return [self._accept(paper, now), *self._work(paper, book, now, fresh=True)]

    def _work(
        self, paper: _PaperOrder, book: _Book | None, now: int, *, fresh: bool
    ) -> list[ExecutionReport]:
        """``fresh``: the order meets the book for the first time (on arrival or when its stop fires).
        ``book`` is None when no tick came yet: a limit rests and a stop waits."""
        if not paper.triggered:
            if book is None or not _stop_reached(paper.order, book.tick.price):
                return []
            paper.triggered = fresh = True
        if paper.order.type in _TAKING_TYPES:
            return self._take(paper, book, now, limit=None)
        if not fresh:
            return self._fill_resting(paper, book, now) if paper.resting and book is not None else []
        if _marketable(paper.order, book):
            if paper.order.post_only:
                return [self._refuse(paper, POST_ONLY_REASON, now)]
            return self._take(paper, book, now, limit=paper.order.price)
        if paper.order.tif != "GTC":
            return [self._finish(paper, "expired", now, f"{paper.order.tif}: limit price not marketable")]
        paper.resting = True
        return []

    def _take(
        self, paper: _PaperOrder, book: _Book | None, now: int, *, limit: Decimal | None
    ) -> list[ExecutionReport]:
        order = paper.order
        if book is None or (touch := book.touch(order.side)) is None:
            return [self._finish(paper, "expired", now, f"no quote for {order.symbol}")]
        available = book.available[order.side]
        if order.tif == "FOK" and available < paper.remaining:
            reason = f"FOK: {available} available at the touch, {paper.remaining} needed"
            return [self._finish(paper, "expired", now, reason)]
        reports: list[ExecutionReport] = []
        quantity = min(paper.remaining, available)
        if quantity > 0:
            price = self._taker_price(order.side, touch, limit)
            reports.append(self._fill(paper, book, quantity, price, "taker", now))
        if paper.remaining > 0:
            if order.tif != "GTC":
                reports.append(self._finish(paper, "expired", now, f"{order.tif}: unfilled quantity expired"))
            elif limit is not None:
                paper.resting = True  # the rest of a marketable limit joins the book at its price
        return reports

    def _fill_resting(self, paper: _PaperOrder, book: _Book, now: int) -> list[ExecutionReport]:
        order = paper.order
        assert order.price is not None  # a resting order is a limit order
        if not _crosses(order.side, order.price, book.tick):
            return []
        quantity = min(paper.remaining, book.available[order.side])
        if quantity <= 0:
            return []
        return [self._fill(paper, book, quantity, order.price, "maker", now)]

    def _taker_price(self, side: Side, touch: Decimal, limit: Decimal | None) -> Decimal:
        slip = self.settings.slippage_bps / BPS
        if side == "buy":
            price = touch * (1 + slip)
            return price if limit is None else min(price, limit)
        price = touch * (1 - slip)
        return price if limit is None else max(price, limit)

    def _would_take_post_only(self, paper: _PaperOrder, book: _Book | None) -> bool:
        order = paper.order
        return order.post_only and paper.triggered and order.type in _LIMIT_TYPES and _marketable(order, book)

    # State changes and reports -------------------------------------------------------------------

    def _fill(
        self,
        paper: _PaperOrder,
        book: _Book,
        quantity: Decimal,
        price: Decimal,
        liquidity: Liquidity,
        now: int,
    ) -> ExecutionReport:
        bps = self.settings.maker_fee_bps if liquidity == "maker" else self.settings.taker_fee_bps
        fee = quantity * price * bps / BPS
        paper.remaining -= quantity
        book.available[paper.order.side] -= quantity
        self._settle(paper.order, quantity, price, fee)
        if paper.remaining == 0:
            self._end(paper, "filled")
        return self._report(
            paper.order,
            paper.venue_order_id,
            "fill",
            now,
            last_quantity=quantity,
            last_price=price,
            fee=fee,
            liquidity=liquidity,
        )

    def _accept(self, paper: _PaperOrder, now: int) -> ExecutionReport:
        paper.accepted = True
        return self._report(paper.order, paper.venue_order_id, "accepted", now)

    def _refuse(self, paper: _PaperOrder, reason: str, now: int) -> ExecutionReport:
        # An acknowledged order cannot be rejected any more: it ends as expired.
        return self._finish(paper, "expired" if paper.accepted else "rejected", now, reason)

    def _finish(
        self, paper: _PaperOrder, kind: Literal["canceled", "expired", "rejected"], now: int, reason: str
    ) -> ExecutionReport:
        self._end(paper, kind)
        return self._report(paper.order, paper.venue_order_id, kind, now, reason=reason)

    def _end(self, paper: _PaperOrder, state: OrderState) -> None:
        paper.state = state
        self._live.pop(paper.order.venue_client_id, None)

    def _settle(self, order: VenueOrder, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        base, quote = self._assets(order.symbol)
        sign = 1 if order.side == "buy" else -1
        self._balances[base] = self._balances.get(base, Decimal(0)) + sign * quantity
        self._balances[quote] = self._balances.get(quote, Decimal(0)) - sign * quantity * price - fee

    def _assets(self, symbol: str) -> tuple[str, str]:
        for separator in ("-", "/", "_"):
            if separator in symbol:
                base, _, quote = symbol.partition(separator)
                return base, quote
        for quote in sorted(self.settings.quote_assets, key=len, reverse=True):
            if symbol.endswith(quote) and symbol != quote:
                return symbol.removesuffix(quote), quote
        return symbol, f"{symbol}:quote"  # an unknown quote asset still balances, under its own name

    def _report(
        self,
        order: VenueOrder,
        venue_order_id: str | None,
        kind: ReportKind,
        now: int,
        *,
        last_quantity: Decimal = Decimal(0),
        last_price: Decimal | None = None,
        fee: Decimal = Decimal(0),
        liquidity: Liquidity | None = None,
        reason: str | None = None,
    ) -> ExecutionReport:
        count = self._report_counts.get(order.venue_client_id, 0) + 1
        self._report_counts[order.venue_client_id] = count
        return report_about(
            order,
            venue=self.name,
            kind=kind,
            exec_id=f"{self.name}:{order.venue_client_id}:{count}",
            venue_order_id=venue_order_id,
            last_quantity=last_quantity,
            last_price=last_price,
            fee=fee,
            liquidity=liquidity,
            reason=reason,
            timestamp=now,
        )

    # Checks --------------------------------------------------------------------------------------

    def _refusal(self, order: VenueOrder) -> str | None:
        """Why a new order is rejected on submit, or None."""
        if order.venue_client_id in self._orders:
            return f"duplicate venue_client_id {order.venue_client_id}"
        if order.quantity <= 0:
            return f"quantity must be positive, got {order.quantity}"
        if order.type in _LIMIT_TYPES and (order.price is None or order.price <= 0):
            return f"a {order.type} order needs a positive price"
        if order.type in _STOP_TYPES and (order.stop_price is None or order.stop_price <= 0):
            return f"a {order.type} order needs a positive stop_price"
        book = self._books.get(order.symbol)
        if order.type == "market" and (book is None or book.touch(order.side) is None):
            return f"no quote for {order.symbol}"
        return None

    def _now(self, order: VenueOrder) -> int:
        # The order's own time when the caller set it, else the venue's: its latest tick for the symbol.
        book = self._books.get(order.symbol)
        return order.timestamp or (book.tick.timestamp if book else 0)

    def _next_venue_order_id(self) -> str:
        self._order_count += 1
        return f"{self.name}-{self._order_count}"


def _stop_reached(order: VenueOrder, last_price: Decimal) -> bool:
    assert order.stop_price is not None
    return last_price >= order.stop_price if order.side == "buy" else last_price <= order.stop_price


def _marketable(order: VenueOrder, book: _Book | None) -> bool:
    touch = book.touch(order.side) if book is not None else None
    if touch is None or order.price is None:
        return False
    return touch <= order.price if order.side == "buy" else touch >= order.price


def _crosses(side: Side, limit: Decimal, tick: MarketTick) -> bool:
    """Whether a resting order at ``limit`` trades on ``tick``: the opposite quote reaches it, or a trade
    prints through it (a trade at the limit may have filled the queue ahead of us)."""
    if side == "buy":
        return (tick.ask is not None and tick.ask <= limit) or tick.price < limit
    return (tick.bid is not None and tick.bid >= limit) or tick.price > limit
