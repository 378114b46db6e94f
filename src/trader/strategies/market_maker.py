"""A simple two-sided quoter: one post-only limit bid and one ask around the mid.

Parameters (strings): ``spread_bps`` (required; the distance from bid to ask, in basis points of the
mid), ``quantity`` (required; the size of each quote), ``max_position`` (required), ``refresh_s``
(default 5) and ``tick_size`` (optional: bids are rounded down to it, asks up).

On every tick of a symbol (the mid is the middle of bid and ask when the tick has both, else the
trade price), per side:
- no quote working: place one at ``mid -/+ mid * spread_bps / 20000``;
- a quote working: cancel-replace it to the new price when the mid has moved more than half the
  spread since it was placed, or when it is ``refresh_s`` old (if the price changed);
- a quote still in flight (NEW, or a cancel/replace pending): wait for the oms.
Sizes keep the position within ``max_position``: the bid is at most ``max_position - position`` and the
ask at most ``max_position + position``, so at the limit that side is not quoted at all (its quote is
canceled). After a rejection the side waits ``refresh_s`` before quoting again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from trader.config import StrategyConfig
from trader.messages import MarketTick, Order, Side
from trader.strategies.base import Strategy, StrategyConfigError, StrategyContext

ZERO = Decimal(0)
BPS_PER_HALF = Decimal(20_000)  # half a spread in bps, as a fraction: spread_bps / 20000
SIDES: tuple[Side, Side] = ("buy", "sell")


@dataclass
class _Quote:
    """When and around which mid a quote was last placed or refreshed."""

    mid: Decimal
    at_ms: int


class MarketMaker(Strategy):
    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.spread_bps = self.param_decimal("spread_bps", positive=True)
        self.quantity = self.param_decimal("quantity", positive=True)
        self.max_position = self.param_decimal("max_position", positive=True)
        self.refresh_ms = int(self.param_decimal("refresh_s", "5", positive=True) * 1000)
        self.tick_size = (
            self.param_decimal("tick_size", positive=True) if "tick_size" in config.params else None
        )
        if self.spread_bps >= BPS_PER_HALF:
            raise StrategyConfigError(f"strategy {self.name}: spread_bps={self.spread_bps} leaves no bid")
        self.mids: dict[str, Decimal] = {}
        self._quotes: dict[str, _Quote] = {}  # by client_order_id
        self._paused_until: dict[tuple[str, Side], int] = {}  # a side rejected: when it may quote again

    def on_tick(self, tick: MarketTick) -> None:
        mid = (tick.bid + tick.ask) / 2 if tick.bid is not None and tick.ask is not None else tick.price
        self.mids[tick.symbol] = mid
        for side in SIDES:
            self._quote_side(tick.symbol, side, mid)

    def on_order(self, order: Order) -> None:
        if not order.is_terminal:
            return
        self._quotes.pop(order.client_order_id, None)
        if order.status == "REJECTED":
            self._paused_until[(order.symbol, order.side)] = self.ctx.now_ms + self.refresh_ms
            self.log.warning(
                "market_maker.rejected", client_order_id=order.client_order_id, reason=order.reason
            )

    def on_stop(self) -> None:
        for order in self.ctx.open_orders():
            self.ctx.cancel(order.client_order_id, "strategy stopped")

    def describe(self) -> dict[str, Any]:
        return {
            symbol: {
                "mid": str(mid),
                "bid": _price_of(self.ctx.open_orders(symbol), "buy"),
                "ask": _price_of(self.ctx.open_orders(symbol), "sell"),
            }
            for symbol, mid in self.mids.items()
        }

    # Quoting --------------------------------------------------------------------------------------

    def quote_price(self, mid: Decimal, side: Side) -> Decimal:
        half = mid * self.spread_bps / BPS_PER_HALF
        if side == "buy":
            return _round(mid - half, self.tick_size, ROUND_FLOOR)
        return _round(mid + half, self.tick_size, ROUND_CEILING)

    def quote_size(self, symbol: str, side: Side) -> Decimal:
        position = self.ctx.position(symbol)
        room = self.max_position - position if side == "buy" else self.max_position + position
        return max(ZERO, min(self.quantity, room))

    def _quote_side(self, symbol: str, side: Side, mid: Decimal) -> None:
        working = [o for o in self.ctx.open_orders(symbol) if o.side == side]
        for extra in working[1:]:  # one quote a side: anything more is a leftover
            self.ctx.cancel(extra.client_order_id, "duplicate quote")
        size = self.quote_size(symbol, side)
        price = self.quote_price(mid, side)
        if not working:
            if size > 0 and self.ctx.now_ms >= self._paused_until.get((symbol, side), 0):
                coid = self.ctx.submit(side, symbol, size, type="limit", price=price, post_only=True)
                self._quotes[coid] = _Quote(mid, self.ctx.now_ms)
            return
        order = working[0]
        if order.status not in ("ACCEPTED", "PARTIALLY_FILLED"):
            return  # not yet at the venue, or a cancel/replace pending: wait for the oms
        if size == 0:
            self.ctx.cancel(order.client_order_id, "max position")
            return
        self._refresh(order, mid, price, size)

    def _refresh(self, order: Order, mid: Decimal, price: Decimal, size: Decimal) -> None:
        quote = self._quotes.get(order.client_order_id)  # None: placed by an earlier run, refresh it
        now = self.ctx.now_ms
        half = mid * self.spread_bps / BPS_PER_HALF
        stale = quote is None or abs(mid - quote.mid) > half or now - quote.at_ms >= self.refresh_ms
        resize = order.leaves_quantity != size
        if not (stale or resize):
            return
        new_price = price if price != order.price else None
        new_quantity = order.filled_quantity + size if resize else None
        if new_price is None and new_quantity is None:
            self._quotes[order.client_order_id] = _Quote(mid, now)  # still right where it is
            return
        if self.ctx.replace(order.client_order_id, quantity=new_quantity, price=new_price):
            self._quotes[order.client_order_id] = _Quote(mid, now)


def _round(price: Decimal, tick: Decimal | None, rounding: str) -> Decimal:
    if tick is None:
        return price
    return (price / tick).to_integral_value(rounding=rounding) * tick


def _price_of(orders: list[Order], side: Side) -> str | None:
    prices = [str(o.price) for o in orders if o.side == side]
    return prices[0] if prices else None
