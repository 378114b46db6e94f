"""A live venue through ccxt's async REST API: one adapter class for any ccxt exchange id.

- Money stays ``Decimal`` at our boundary: ccxt's numbers come in through ``Decimal(str(x))``; amounts
  and prices go out as strings from ccxt's ``amount_to_precision`` / ``price_to_precision``.
- ``clientOrderId`` is the VenueOrder's ``venue_client_id`` as the venue accepts it (``map_client_id``:
  unchanged when valid there, else its valid characters and a hash; OKX wants up to 32 alphanumerics,
  Binance up to 36 of ``.:/_-`` and alphanumerics). The mapping is deterministic, so after a restart the
  ids of the orders exeq believes open are recomputed, not stored. A submit retried after a network error
  that had reached the venue is refused as a duplicate, and the adapter then adopts the order it finds
  there.
- Replace is cancel + new (not ``edit_order``, which few venues have and whose semantics differ): the new
  order keeps the ``venue_client_id`` (Binance wants it unique among *open* orders only) and is sized
  for what is left to fill. If the cancel works and the new order is refused, the order is reported
  ``canceled`` with the venue's reason: it is gone.
- Reports: ``accepted`` or ``rejected`` on submit, with the fills the venue returned at once; later fills
  (``fetch_order_trades`` per working order, polled every ``poll_interval_s``, paged by the venue's cursor:
  OKX's ``after`` bill id, Binance's ``fromId``), and ``canceled`` /
  ``expired`` seen in the order's status, go to the ``report_listener``. Each fill's exec id is
  ``<venue>:<trade id>``; its fee is in the quote currency (a fee paid in the base asset is converted at
  the fill price; one paid in a third asset, e.g. BNB, cannot be and is reported as 0 with a warning).
- Network errors (timeouts, 5xx, dropped connections) are retried with exponential backoff.
- ccxt runs in a decimal context of its own (``_apart``): its ``decimal_to_precision`` (behind
  ``amount_to_precision``, ``price_to_precision`` and many an exchange's ``create_order``) sets
  ROUND_HALF_UP and an Underflow trap on the context it runs in, which is otherwise the whole process's
  (every task shares the one ``Context`` object), and exeq would then round its fees and slices unlike
  every other service.
- ``start()`` loads markets and fetches the open orders and balances. ``reconcile()`` looks up every
  order exeq believes open (in the open orders, else by its client id) and returns the reports of what
  happened there while exeq was away: the fills exeq has not published (told apart by quantity: exeq's
  fills are the first trades of the venue order, in time order) and ``canceled`` / ``expired`` if it
  ended short. What it cannot explain is a mismatch (logged at warning), and nothing is changed or
  invented because of one. An order open at the venue that exeq restores is adopted, not sent again;
  one exeq believes open that the venue does not have open is not sent again either. One exeq never
  answered (it came while exeq was down or starting) that the venue has never seen is rejected.
- Balances: ``balances()`` is ccxt's ``total`` per asset; ``assets(symbol)`` gives the base and quote codes
  they use, so exeq can reconcile them with the fills (``trader.execution.balances``; the adapter's
  ``balance_tolerance``, default 1e-8, is the largest difference not reported).

Credentials come from the environment (``TRADER_<NAME>_API_KEY`` / ``_API_SECRET`` / ``_API_PASSPHRASE``
(OKX's), NAME the venue name upper-cased, or the variables the settings name) or from a JSON secret file
(``{"api_key": ..., "api_secret": ..., "api_passphrase": ...}``). They are held as ``SecretStr`` and never
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Collection, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import structlog
from pydantic import SecretStr

from trader.config import CcxtVenueSettings
from trader.execution.venues.base import (
    Mismatch,
    MismatchKind,
    Reconciliation,
    ReportListener,
    VenueAdapter,
    report_about,
)
from trader.messages import ExecutionReport, ReportKind, VenueOrder

log = structlog.get_logger("venue.ccxt")
T = TypeVar("T")

_TERMINAL = frozenset({"closed", "canceled", "expired", "rejected"})
NEVER_PLACED = "never reached the venue: it came while exeq was down or starting (not sent late)"
# How venues say a client order id is taken (Binance -2010, OKX 51016): the submit reached them before.
_DUPLICATE = ("Duplicate order", "Duplicated client order ID")
# Trades per page of an order's trades (ccxt does not page): OKX's fills-history gives at most 100,
# Binance's myTrades at most 1000.
_OKX_PAGE, _BINANCE_PAGE = 100, 1000
_ID_HASH_LEN = 16  # hex digits of sha256 (64 bits) in a mapped client id: no two of ours map to one
# Largest difference per asset, venue balance against what the fills explain, not reported: one unit of
# the 8th decimal, where spot venues count; finer than any fee, so a missed fee still shows.


@dataclass(frozen=True)
class ClientIdRule:
    """The client order ids a venue accepts: ``chars`` (a regex character class) and a length."""

    chars: str
    max_len: int

    def accepts(self, client_id: str) -> bool:
        fits = 0 < len(client_id) <= self.max_len
        return fits and re.fullmatch(f"[{self.chars}]+", client_id) is not None


# OKX v5 ``clOrdId``: case-sensitive alphanumerics, up to 32 characters. Binance spot
# ``newClientOrderId``: ``^[\.A-Z\:/a-z0-9_-]{1,36}$``. By ccxt family, so myokx, binanceus... too.
CLIENT_ID_RULES: dict[str, ClientIdRule] = {
    "okx": ClientIdRule("A-Za-z0-9", 32),
    "binance": ClientIdRule(r"\.A-Z\:/a-z0-9_-", 36),
}


def map_client_id(ours: str, rule: ClientIdRule | None) -> str:
    """Our ``venue_client_id`` as a venue with ``rule`` accepts it: itself when valid, else its valid
    characters (cut short) and a hash of all of it. Deterministic, so a restarted adapter recomputes it from
    the orders exeq believes open and finds them again; no state to keep."""
    if rule is None or rule.accepts(ours):
        return ours
    digest = hashlib.sha256(ours.encode()).hexdigest()[:_ID_HASH_LEN]
    prefix = re.sub(f"[^{rule.chars}]", "", ours)[: rule.max_len - _ID_HASH_LEN]
    return prefix + digest


def _family(exchange: ccxt.Exchange) -> str | None:
    """``okx`` or ``binance`` for them and their ccxt subclasses: what decides id rules and paging."""
    for family in ("okx", "binance"):
        if isinstance(exchange, getattr(ccxt, family)):
            return family
    return None


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr
    api_secret: SecretStr
    passphrase: SecretStr | None = None  # ccxt's "password": OKX's API passphrase

    def __repr__(self) -> str:
        return "Credentials(api_key=**********, api_secret=**********, passphrase=**********)"


def load_credentials(name: str, settings: CcxtVenueSettings) -> Credentials | None:
    """The secret file if set, else the environment; None when neither has key and secret."""
    if settings.secret_file is not None:
        data = json.loads(settings.secret_file.read_text())
        key, secret, passphrase = data["api_key"], data["api_secret"], data.get("api_passphrase")
    else:
        prefix = "TRADER_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
        key = os.environ.get(settings.api_key_env or f"{prefix}_API_KEY")
        secret = os.environ.get(settings.api_secret_env or f"{prefix}_API_SECRET")
        passphrase = os.environ.get(settings.api_passphrase_env or f"{prefix}_API_PASSPHRASE")
    if not key or not secret:
        return None
    return Credentials(
        SecretStr(str(key)), SecretStr(str(secret)), SecretStr(str(passphrase)) if passphrase else None
    )


@dataclass
class _Live:
    """An order this adapter works: quantities count from when it was given the order."""

    order: VenueOrder
    venue_order_id: str | None  # None: submitted, no answer yet
    quantity: Decimal
    filled: Decimal = Decimal(0)
    seen_trades: set[str] = field(default_factory=set)
    ended: bool = False


def D(x: Any) -> Decimal:
    return Decimal(str(x))


def _apart() -> AbstractContextManager[Context]:
    """A copy of the caller's decimal context for ccxt to change as it does (see the module's notes)."""
    return localcontext()


def _with_base_url(urls: Any, base: str) -> Any:
    """Every URL under ccxt's ``urls['api']`` with its scheme and host replaced by ``base``."""
    if isinstance(urls, dict):
        return {k: _with_base_url(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        parts = urlsplit(urls)
        return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return urls


class CcxtVenue(VenueAdapter):
    kind = "ccxt"
    reconciles_balances = True

    def __init__(
        self,
        settings: CcxtVenueSettings | None = None,
        name: str | None = None,
        *,
        report_listener: ReportListener | None = None,
        credentials: Credentials | None = None,
        balance_tolerance: Decimal | None = None,
    ) -> None:
        super().__init__(name, report_listener=report_listener)
        self.settings = settings or CcxtVenueSettings()
        self.exchange_id = self.settings.exchange or self.name
        self.balance_tolerance = (
            self.settings.balance_tolerance if balance_tolerance is None else balance_tolerance
        )
        self._credentials = credentials or load_credentials(self.name, self.settings)
        self.exchange: ccxt.Exchange = self._make_exchange()
        self._family = _family(self.exchange)
        self._id_rule = CLIENT_ID_RULES.get(self._family or "")
        self._ours_by_wire: dict[str, str] = {}  # a mapped client id -> ours, for those seen so far
        self._orders: dict[str, _Live] = {}  # by venue_client_id
        # The venue's open orders (at start, at reconcile), by *its* client id (see wire_client_id).
        self._venue_open: dict[str, dict[str, Any]] = {}
        self._missing: set[str] = set()  # believed open by exeq, not open at the venue
        self._accounted: dict[str, set[str]] = {}  # by client id: trades reconcile reported or exeq had
        self._symbols: dict[str, str] = {}  # BTCUSDT -> BTC/USDT, for venues whose ids differ (BTC-USDT)
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"CcxtVenue(name={self.name!r}, exchange={self.exchange_id!r}, testnet={self.settings.testnet}, "
            f"credentials={'set' if self._credentials else 'none'})"
        )

    def _make_exchange(self) -> ccxt.Exchange:
        config: dict[str, Any] = {
            "enableRateLimit": self.settings.rate_limit,
            "timeout": self.settings.timeout_ms,
            # Only what we trade: spot. Binance would otherwise load futures markets and currencies too.
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            },
        }
        if self._credentials is not None:
            config["apiKey"] = self._credentials.api_key.get_secret_value()
            config["secret"] = self._credentials.api_secret.get_secret_value()
            if self._credentials.passphrase is not None:
                config["password"] = self._credentials.passphrase.get_secret_value()
        exchange: ccxt.Exchange = getattr(ccxt, self.exchange_id)(config)
        if self.settings.testnet:
            exchange.set_sandbox_mode(True)
        if self.settings.base_url:
            exchange.urls["api"] = _with_base_url(exchange.urls["api"], self.settings.base_url)
        return exchange

    # Lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._call(self.exchange.load_markets)
        self._symbols = {
            f"{m['base']}{m['quote']}": symbol for symbol, m in self.exchange.markets.items() if m.get("spot")
        }
        opened = await self._call(self.exchange.fetch_open_orders)
        self._venue_open = _by_client_id(opened)
        balances = await self.balances()
        log.info("venue.started", venue=self.name, open_orders=len(opened), assets=len(balances))
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.exchange.close()

    async def reconcile(
        self, expected: Iterable[tuple[VenueOrder, Decimal]], unanswered: Collection[str] = frozenset()
    ) -> Reconciliation:
        """Compare the venue (fetched now) with ``expected``: the orders exeq believes open here, each with
        what it knows filled. Returns the reports of what they did meanwhile and (logged) every difference
        left; changes nothing at the venue. An order of ``unanswered`` (no report published) that the
        venue does not know by its client id never got there: it is rejected, as polling rejects a submit
        the venue does not have, rather than sent late or left without an answer."""
        opened = await self._call(self.exchange.fetch_open_orders)
        self._venue_open = _by_client_id(opened)
        ours = {order.venue_client_id: (order, filled) for order, filled in expected}
        wires = {self.wire_client_id(vcid) for vcid in ours}  # recomputed: the mapping is deterministic
        mismatches = [
            self._mismatch("unknown_at_venue", self._our_id(wire), str(o["symbol"]), _unknown_detail(o))
            for wire, o in self._venue_open.items()
            if wire not in wires
        ]
        reports: list[ExecutionReport] = []
        self._missing, self._accounted = set(), {}
        for vcid, (order, filled) in ours.items():
            wire = self.wire_client_id(vcid)
            at_venue = self._venue_open.get(wire) or await self._find(order)
            if wire not in self._venue_open:
                self._missing.add(vcid)  # ended there, or never there: not sent again on restore
            if at_venue is None and vcid in unanswered:
                reports.append(self._report(order, "rejected", reason=NEVER_PLACED))
                continue
            if at_venue is None:
                detail = "we believe it open; the venue has no such order (not sent again)"
                mismatches.append(self._mismatch("missing_at_venue", vcid, order.symbol, detail))
                continue
            caught, mismatch = await self._catch_up(order, filled, at_venue)
            reports += caught
            mismatches += [mismatch] if mismatch is not None else []
        for m in mismatches:
            log.warning("venue.reconcile_mismatch", **m.__dict__)
        if reports:
            log.info("venue.caught_up", venue=self.name, reports=len(reports))
        return Reconciliation(mismatches, reports)

    async def _find(self, order: VenueOrder) -> dict[str, Any] | None:
        """The venue's order with this client id, whatever its state; None if it has none."""
        try:
            return await self._call(
                self.exchange.fetch_order,
                None,
                self._market_symbol(order.symbol),
                {"clientOrderId": self.wire_client_id(order.venue_client_id)},
            )
        except ccxt.OrderNotFound:
            return None

    async def _catch_up(
        self, order: VenueOrder, filled: Decimal, at_venue: dict[str, Any]
    ) -> tuple[list[ExecutionReport], Mismatch | None]:
        """The reports exeq missed about ``order`` (it knows ``filled``), or why they cannot be told."""
        vid, vcid = str(at_venue["id"]), order.venue_client_id
        trades = sorted(await self._order_trades(vid, self._market_symbol(order.symbol)), key=_trade_key)
        self._accounted[vcid] = {str(t["id"]) for t in trades}
        # A replace placed a new venue order for what was left: what filled before is not in its trades.
        known = filled - (order.quantity - D(at_venue["amount"]))
        seen, upto = _first_trades(trades, known)
        if upto != known:
            detail = (
                f"our fills ({known} of venue order {vid}) are not its first trades ({upto}): none reported"
            )
            return [], self._mismatch("quantity", vcid, order.symbol, detail)
        live = _Live(order, vid, order.quantity, filled=filled, seen_trades=seen)
        caught = self._fills_from(live, trades) + self._status_end(live, at_venue)
        by_trades, venue_filled = known + live.filled - filled, D(at_venue.get("filled") or 0)
        mismatch = None
        if venue_filled != by_trades:  # e.g. a trade not listed yet: its fill comes by polling, if ever
            detail = f"the venue says {venue_filled} filled, its trades {by_trades}"
            mismatch = self._mismatch("quantity", vcid, order.symbol, detail)
        if not caught:
            return [], mismatch
        # exeq drops this when it had it; a submit that never got an answer needs it before the fills.
        accepted = self._report(order, "accepted", live=live, timestamp=at_venue.get("timestamp"))
        return [accepted, *caught], mismatch

    def _mismatch(self, kind: MismatchKind, vcid: str, symbol: str, detail: str) -> Mismatch:
        return Mismatch(kind, self.name, vcid, symbol, detail)

    # The interface -------------------------------------------------------------------------------

    async def submit(self, order: VenueOrder) -> list[ExecutionReport]:
        if order.action == "cancel":
            return await self.cancel(order)
        if order.action == "replace":
            return await self.replace(order)
        async with self._lock:
            vcid, wire = order.venue_client_id, self.wire_client_id(order.venue_client_id)
            if wire in self._venue_open:  # restored by exeq and still open here: adopt it
                return [await self._adopt(order, self._venue_open.pop(wire))]
            if vcid in self._missing:
                log.warning("venue.restore_skipped", venue=self.name, venue_client_id=vcid)
                return []
            return await self._create(order, order.quantity)

    async def cancel(self, order: VenueOrder) -> list[ExecutionReport]:
        async with self._lock:
            live = self._orders.get(order.venue_client_id)
            target = live.order if live is not None else order
            try:
                await self._cancel_at_venue(target, live)
            except ccxt.BaseError as exc:
                return [self._report(target, "rejected", reason=f"cancel rejected: {_reason(exc)}")]
            reports = await self._new_fills(live) if live is not None else []
            if live is not None:
                live.ended = True
            return [*reports, self._report(target, "canceled", reason="canceled on request", live=live)]

    async def replace(self, order: VenueOrder) -> list[ExecutionReport]:
        async with self._lock:
            live = self._orders.get(order.venue_client_id)
            if live is None or live.ended:
                return [self._report(order, "rejected", reason="replace rejected: unknown or ended order")]
            if order.quantity <= live.filled:
                reason = f"replace rejected: quantity {order.quantity} is not above filled {live.filled}"
                return [self._report(live.order, "rejected", reason=reason, live=live)]
            try:
                await self._cancel_at_venue(live.order, live)
            except ccxt.BaseError as exc:
                return [
                    self._report(
                        live.order, "rejected", reason=f"replace rejected: {_reason(exc)}", live=live
                    )
                ]
            fills = await self._new_fills(live)
            new_order = VenueOrder(
                **{**_fields(live.order), "quantity": order.quantity, "price": order.price}
            )
            left = new_order.quantity - live.filled
            if left <= 0:  # it filled up to the new quantity before the cancel
                live.ended = True
                return fills
            created = await self._create(new_order, left, keep_filled=live)
            if created and created[0].kind == "rejected":
                live.ended = True
                reason = f"replace failed after the cancel: {created[0].reason}"
                return [*fills, self._report(live.order, "canceled", reason=reason, live=live)]
            replaced = self._report(
                new_order,
                "replaced",
                live=self._orders[new_order.venue_client_id],
                last_quantity=new_order.quantity,
                last_price=new_order.price,
            )
            return [*fills, replaced, *created[1:]]

    async def open_orders(self) -> list[VenueOrder]:
        return [live.order for live in self._orders.values() if not live.ended]

    def forget(self, venue_client_id: str) -> None:
        live = self._orders.get(venue_client_id)
        if live is None or not live.ended:  # never one the venue may still work
            return
        del self._orders[venue_client_id]
        self._accounted.pop(venue_client_id, None)
        self._ours_by_wire.pop(map_client_id(venue_client_id, self._id_rule), None)

    async def balances(self) -> dict[str, Decimal]:
        raw = await self._call(self.exchange.fetch_balance)
        return {asset: D(amount) for asset, amount in (raw.get("total") or {}).items() if amount is not None}

    def assets(self, symbol: str) -> tuple[str, str] | None:
        """ccxt's unified base and quote codes: those ``balances`` uses."""
        try:
            market = self.exchange.market(self._market_symbol(symbol))
        except ccxt.BaseError:  # not a market of this venue (or markets not loaded)
            return None
        return str(market["base"]), str(market["quote"])

    # Orders ------------------------------------------------------------------------------------

    async def _create(
        self, order: VenueOrder, quantity: Decimal, keep_filled: _Live | None = None
    ) -> list[ExecutionReport]:
        if order.type not in ("market", "limit"):
            return [
                self._report(
                    order, "rejected", reason=f"order type {order.type} not supported by {self.kind}"
                )
            ]
        symbol = self._market_symbol(order.symbol)
        params: dict[str, Any] = {"clientOrderId": self.wire_client_id(order.venue_client_id)}
        price: str | None = None
        if order.type == "limit":
            if order.price is None:
                return [self._report(order, "rejected", reason="limit order without a price")]
            with _apart():
                price = self.exchange.price_to_precision(symbol, str(order.price))
            if order.post_only:
                params["postOnly"] = True
            else:
                params["timeInForce"] = order.tif
        with _apart():
            amount = self.exchange.amount_to_precision(symbol, str(quantity))
        try:
            placed = await self._call(
                self.exchange.create_order, symbol, order.type, order.side, amount, price, params
            )
        except ccxt.NetworkError as exc:
            # Retried and still no answer: the venue may or may not have it. Polling finds out (by the
            # client id) and reports accepted, or rejected if the venue never had it.
            log.error(
                "venue.submit_unconfirmed",
                venue=self.name,
                venue_client_id=order.venue_client_id,
                at_venue=params["clientOrderId"],
                error=type(exc).__name__,
            )
            self._orders[order.venue_client_id] = _Live(order, None, quantity)
            return []
        except ccxt.BaseError as exc:
            if not (isinstance(exc, ccxt.DuplicateOrderId) or any(m in str(exc) for m in _DUPLICATE)):
                return [self._report(order, "rejected", reason=_reason(exc))]
            # A retry of a submit that reached the venue: the order is there; take it as it is.
            placed = await self._call(
                self.exchange.fetch_order, None, symbol, {"clientOrderId": params["clientOrderId"]}
            )
        live = _Live(order, str(placed["id"]), quantity)
        if keep_filled is not None:  # a replace: the same order, with its new terms
            live.filled, live.seen_trades = keep_filled.filled, keep_filled.seen_trades
            live.quantity = order.quantity
        self._orders[order.venue_client_id] = live
        reports = [self._report(order, "accepted", live=live, timestamp=placed.get("timestamp"))]
        reports += self._fills_from(live, placed.get("trades") or [], placed.get("timestamp"))
        reports += self._status_end(live, placed)
        return reports

    async def _adopt(self, order: VenueOrder, at_venue: dict[str, Any]) -> ExecutionReport:
        live = _Live(order, str(at_venue["id"]), order.quantity)
        seen = self._accounted.pop(order.venue_client_id, None)
        if seen is None:  # not reconciled: take its trades so far as reported
            trades = await self._order_trades(str(at_venue["id"]), str(at_venue["symbol"]))
            seen = {str(t["id"]) for t in trades}
        live.seen_trades = seen  # exeq had them, or reconcile reported them; later ones are new
        self._orders[order.venue_client_id] = live
        log.info("venue.order_adopted", venue=self.name, venue_client_id=order.venue_client_id)
        return self._report(order, "accepted", live=live)

    async def _cancel_at_venue(self, order: VenueOrder, live: _Live | None) -> None:
        symbol = self._market_symbol(order.symbol)
        if live is not None and live.venue_order_id:
            await self._call(self.exchange.cancel_order, live.venue_order_id, symbol)
        else:
            wire = self.wire_client_id(order.venue_client_id)
            await self._call(self.exchange.cancel_order, None, symbol, {"clientOrderId": wire})

    # Polling ---------------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll()
            except Exception as exc:  # one failed round must not stop the polling
                log.warning("venue.poll_failed", venue=self.name, error=repr(exc))

    async def poll(self) -> None:
        """One round: new fills and ends of every working order, to the report listener."""
        async with self._lock:
            for live in [lv for lv in self._orders.values() if not lv.ended]:
                if live.venue_order_id is None:
                    for report in await self._confirm(live):
                        self.emit(report)
                    if live.ended:
                        continue
                for report in await self._new_fills(live):
                    self.emit(report)
                status = await self._call(
                    self.exchange.fetch_order, live.venue_order_id, self._market_symbol(live.order.symbol)
                )
                for report in self._status_end(live, status):
                    self.emit(report)

    async def _confirm(self, live: _Live) -> list[ExecutionReport]:
        """A submit that got no answer: did the venue take it?"""
        symbol = self._market_symbol(live.order.symbol)
        try:
            wire = self.wire_client_id(live.order.venue_client_id)
            found = await self._call(self.exchange.fetch_order, None, symbol, {"clientOrderId": wire})
        except ccxt.OrderNotFound:
            live.ended = True
            reason = "the submit got no answer and the venue has no such order"
            return [self._report(live.order, "rejected", reason=reason)]
        live.venue_order_id = str(found["id"])
        return [self._report(live.order, "accepted", live=live, timestamp=found.get("timestamp"))]

    async def _new_fills(self, live: _Live) -> list[ExecutionReport]:
        if live.venue_order_id is None:
            return []
        symbol = self._market_symbol(live.order.symbol)
        trades = await self._order_trades(live.venue_order_id, symbol, known=live.seen_trades)
        return self._fills_from(live, trades)

    def _fills_from(
        self, live: _Live, trades: list[dict[str, Any]], when: int | None = None
    ) -> list[ExecutionReport]:
        """Fills of trades not reported before; ``when`` for trades without a time (in a new order's
        answer)."""
        reports = []
        for trade in sorted(trades, key=_trade_key):
            trade_id = str(trade.get("id"))
            if trade.get("id") is None or trade_id in live.seen_trades:
                continue
            live.seen_trades.add(trade_id)
            qty, price = D(trade["amount"]), D(trade["price"])
            live.filled += qty
            reports.append(
                report_about(
                    live.order,
                    venue=self.name,
                    kind="fill",
                    exec_id=f"{self.name}:{trade_id}",
                    venue_order_id=live.venue_order_id,
                    last_quantity=qty,
                    last_price=price,
                    fee=self._fee_in_quote(trade, qty, price),
                    **_commission(trade),
                    liquidity=("maker" if trade.get("takerOrMaker") == "maker" else "taker"),
                    timestamp=int(trade.get("timestamp") or when or live.order.timestamp),
                )
            )
        if live.filled >= live.quantity:
            live.ended = True
        return reports

    def _fee_in_quote(self, trade: dict[str, Any], qty: Decimal, price: Decimal) -> Decimal:
        fee = trade.get("fee") or {}
        if fee.get("cost") is None:
            return Decimal(0)
        cost = D(fee["cost"])
        market = self.exchange.market(trade["symbol"])
        if fee.get("currency") == market["quote"]:
            return cost
        if fee.get("currency") == market["base"]:
            return cost * price
        log.warning(
            "venue.fee_not_converted", venue=self.name, trade_id=trade.get("id"), currency=fee.get("currency")
        )
        return Decimal(0)

    def _status_end(self, live: _Live, status: dict[str, Any]) -> list[ExecutionReport]:
        """``canceled`` or ``expired`` when the venue ended the order short (not at our request)."""
        state = status.get("status")
        if live.ended or state not in _TERMINAL or state == "closed":
            return []
        live.ended = True
        kind: ReportKind = "expired" if state in ("expired", "rejected") else "canceled"
        reason = f"{state} at the venue: {live.quantity - live.filled} unfilled"
        when = status.get("lastUpdateTimestamp") or status.get("timestamp")  # when it ended, if told
        return [self._report(live.order, kind, reason=reason, live=live, timestamp=when)]

    # Trades, page by page ----------------------------------------------------------------------------

    async def _order_trades(self, vid: str, symbol: str, known: Collection[str] = ()) -> list[dict[str, Any]]:
        """Every trade of venue order ``vid``, by the venue's cursor (ccxt reads one page): a long-lived
        order has more than a page. With ``known`` (its first trades, seen already), only the pages that
        may hold newer ones."""
        if self._family == "okx":
            return await self._trades_newest_first(vid, symbol, known)
        if self._family == "binance":
            return await self._trades_by_id(vid, symbol, known)
        return await self._call(self.exchange.fetch_order_trades, vid, symbol)

    async def _trades_newest_first(
        self, vid: str, symbol: str, known: Collection[str]
    ) -> list[dict[str, Any]]:
        """OKX: newest first; ``after`` a bill id gives the older ones. A page with a known trade is the
        last one needed: the ones before it are known too."""
        trades: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        while True:
            page = await self._call(self.exchange.fetch_order_trades, vid, symbol, None, _OKX_PAGE, params)
            trades += page
            if len(page) < _OKX_PAGE or any(str(t["id"]) in known for t in page):
                return trades
            params = {"after": min((str(t["info"]["billId"]) for t in page), key=int)}

    async def _trades_by_id(self, vid: str, symbol: str, known: Collection[str]) -> list[dict[str, Any]]:
        """Binance: ascending from ``fromId`` (a trade id; they grow per symbol), so from just after the
        newest known trade."""
        trades: list[dict[str, Any]] = []
        start = max((int(t) for t in known if t.isdigit()), default=-1) + 1
        while True:
            params = {"fromId": start}
            page = await self._call(
                self.exchange.fetch_order_trades, vid, symbol, None, _BINANCE_PAGE, params
            )
            trades += page
            if len(page) < _BINANCE_PAGE:
                return trades
            start = max(int(t["id"]) for t in page) + 1

    # Helpers ---------------------------------------------------------------------------------------

    def wire_client_id(self, vcid: str) -> str:
        """Our venue_client_id as sent to this venue (``map_client_id``); a mapped one is remembered, to
        read it back."""
        wire = map_client_id(vcid, self._id_rule)
        if wire != vcid:
            self._ours_by_wire[wire] = vcid
        return wire

    def _our_id(self, wire: str) -> str:
        """The venue's client id back to ours, when one of ours maps to it; else the venue's."""
        return self._ours_by_wire.get(wire, wire)

    def _market_symbol(self, symbol: str) -> str:
        """Ours (BTCUSDT), the venue's (BTC-USDT) or ccxt's (BTC/USDT) to ccxt's unified symbol."""
        if symbol in self.exchange.markets:
            return symbol
        by_id = self.exchange.markets_by_id.get(symbol) if self.exchange.markets_by_id else None
        if by_id:
            return by_id[0]["symbol"]
        return self._symbols.get(re.sub(r"[^A-Z0-9]", "", symbol.upper()), symbol)

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        delay = self.settings.backoff_s
        for attempt in range(self.settings.retries + 1):
            try:
                with _apart():
                    return await fn(*args)
            except ccxt.NetworkError as exc:
                if attempt == self.settings.retries:
                    raise
                log.warning(
                    "venue.retry",
                    venue=self.name,
                    call=fn.__name__,
                    attempt=attempt + 1,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _report(
        self,
        order: VenueOrder,
        kind: ReportKind,
        *,
        reason: str | None = None,
        live: _Live | None = None,
        timestamp: int | None = None,
        last_quantity: Decimal = Decimal(0),
        last_price: Decimal | None = None,
    ) -> ExecutionReport:
        vid = live.venue_order_id if live is not None else None
        return report_about(
            order,
            venue=self.name,
            kind=kind,
            exec_id=f"{self.name}:{order.venue_client_id}:{kind}:{vid or order.timestamp}",
            venue_order_id=vid,
            last_quantity=last_quantity,
            last_price=last_price,
            reason=reason,
            timestamp=int(timestamp or order.timestamp),
        )


def _fields(order: VenueOrder) -> dict[str, Any]:
    return {f: getattr(order, f) for f in order.__struct_fields__}


def _reason(exc: BaseException) -> str:
    """The venue's own message when it sent one (ccxt puts its JSON body after the exchange id): Binance's
    ``msg``, or OKX's per-order ``sMsg``."""
    text = str(exc)
    match = re.search(r"\{.*\}", text)
    if match:
        with contextlib.suppress(ValueError):
            body = json.loads(match.group(0))
            items = body.get("data") if isinstance(body, dict) else None
            if isinstance(items, list) and items and isinstance(items[0], dict) and items[0].get("sMsg"):
                return f"{type(exc).__name__}: {items[0]['sMsg']}"
            if isinstance(body, dict) and body.get("msg"):
                return f"{type(exc).__name__}: {body['msg']}"
    return f"{type(exc).__name__}: {text}"


def _trade_key(trade: dict[str, Any]) -> tuple[int, int, str]:
    """Trades in the venue's order: by time, then by id (numeric ids compare by length first)."""
    trade_id = str(trade.get("id"))
    return (int(trade.get("timestamp") or 0), len(trade_id), trade_id)


def _first_trades(trades: list[dict[str, Any]], quantity: Decimal) -> tuple[set[str], Decimal]:
    """The ids of the first ``trades`` (in order) that add up to ``quantity`` or just past it, and their
    sum: the trades exeq has published when it knows ``quantity`` filled."""
    seen: set[str] = set()
    total = Decimal(0)
    for trade in trades:
        if total >= quantity:
            break
        seen.add(str(trade["id"]))
        total += D(trade["amount"])
    return seen, total


def _by_client_id(orders: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(o["clientOrderId"]): o for o in orders if o.get("clientOrderId")}


def _unknown_detail(order: dict[str, Any]) -> str:
    return f"open at the venue, unknown to us: {order['side']} {order['amount']} @ {order.get('price')}"


def _commission(trade: dict[str, Any]) -> dict[str, Any]:
    """The venue's charge for a trade as it made it (asset and amount), for the balance reconciliation."""
    fee = trade.get("fee") or {}
    if fee.get("cost") is None or not fee.get("currency"):
        return {}
    return {"commission": D(fee["cost"]), "commission_asset": str(fee["currency"])}
