"""Risk's decisions, one per request: the pre-trade checks (``trader.risk.checks``) at the last price of
the order's own quote venue (``trader.risk.prices``), remembered so that a repeated request (a
redelivery) gets the same answer and is not counted twice against the rate, and a denial for a request
that waited too long. Pure: the risk service feeds it and publishes what it answers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from trader.messages import CancelRequest, Order, OrderRequest, ReplaceDecision, RiskDecision
from trader.risk.checks import PreTradeRisk
from trader.risk.prices import VenuePrices

# A request that waited longer than this (risk down, a backlog) is denied: the market it was made
# for is gone. Not yet a setting.
STALE_REQUEST_MS = 30_000
# Decisions remembered, so a repeated request gets the same answer, not a new one.
DECIDED_MEMORY = 100_000

D = TypeVar("D", RiskDecision, ReplaceDecision)


class Decider:
    """Pre-trade decisions: one per client order id, and one per replace id for cancel-replaces."""

    def __init__(self, pre: PreTradeRisk, prices: VenuePrices | None = None) -> None:
        self.pre = pre
        self.prices = prices  # None: the prices set on ``pre`` itself
        # By client order id, and a replace's by ``replace:<replace_id>``.
        self.decided: OrderedDict[str, RiskDecision | ReplaceDecision] = OrderedDict()

    def decide(self, request: OrderRequest, arrived_ms: int, now: int) -> RiskDecision:
        return self._once(request.client_order_id, RiskDecision, request, arrived_ms, now, self._check)

    def decide_replace(self, request: CancelRequest, arrived_ms: int, now: int) -> ReplaceDecision:
        """The verdict on a cancel-replace (``request.replace_id`` set): the same checks as a new
        order's, on the order it would become."""
        key = f"replace:{request.replace_id}"
        return self._once(key, ReplaceDecision, request, arrived_ms, now, self._check_replace)

    def _once(
        self,
        key: str,
        kind: type[D],
        request: Any,
        arrived_ms: int,
        now: int,
        check: Callable[[Any, int], D],
    ) -> D:
        known = self.decided.get(key)
        if isinstance(known, kind):
            return known
        waited = now - arrived_ms
        if waited > STALE_REQUEST_MS:
            reason = f"stale: the request waited {waited} ms for a decision (max {STALE_REQUEST_MS} ms)"
            decision = kind(request=request, approved=False, reason=reason, timestamp=now)
        else:
            decision = check(request, now)
        self.decided[key] = decision
        if len(self.decided) > DECIDED_MEMORY:
            self.decided.popitem(last=False)
        return decision

    def _check(self, request: OrderRequest, now: int) -> RiskDecision:
        reason = self._no_reference_price(request)
        if reason is not None:
            return RiskDecision(request=request, approved=False, reason=reason, timestamp=now)
        return self.pre.check(request, now)

    def _check_replace(self, request: CancelRequest, now: int) -> ReplaceDecision:
        order = self.pre.open_order(request.client_order_id)
        reason = self._no_reference_price(order) if order is not None else None
        if reason is not None:
            return ReplaceDecision(request=request, approved=False, reason=reason, timestamp=now)
        return self.pre.check_replace(request, now)

    def _no_reference_price(self, order: OrderRequest | Order) -> str | None:
        """Why there is no price to check ``order`` at, or None once the checks have its quote venue's
        last trade."""
        if self.prices is None:
            return None
        venue, last = self.prices.price_of(order)
        if last is None:
            return f"no reference price: no last trade for {order.symbol} on {venue or 'no venue'}"
        self.pre.update_price(order.symbol, last)
        return None
