"""Every message on the bus, as msgspec types: the single source of truth for the wire format.

Money and quantities are ``Decimal`` end to end and go on the wire as exact JSON numbers
(``decimal_format="number"``), so ``0.1`` stays ``0.1`` and no binary float ever touches a price.
Timestamps are integer epoch milliseconds, UTC, the event time given by the venue.

Messages are values: frozen, made of scalars, strings and other messages, never part of a reference
cycle. So they are invisible to the cyclic garbage collector (``gc=False``): the services keep many
of them for as long as they run (books of orders, decisions, venue orders), and a collection that
walked them all would pause the service longer as its history grows (docs/benchmarks.md).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

Side = Literal["buy", "sell"]


class Message(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What every message type is (the settings above, inherited). Each one still says ``frozen=True``:
    msgspec inherits it, but a type checker only sees what a class declares."""


class MarketTick(Message, frozen=True):
    """A trade (with the top of book when known) on ``market.tick.<venue>.<SYMBOL>``. An instrument is a
    symbol on a venue: ``venue`` is the feed's (``mock`` for the mock gateway, ``binance``, ...), a
    subject token, and no consumer takes one venue's tick for another's."""

    timestamp: int
    exchange: str
    venue: str
    symbol: str
    price: Decimal
    size: Decimal
    volume: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    side: Side | None = None
    trade_id: str | None = None
    source_seq: int | None = None
    venue_symbol: str | None = None  # the venue's own name for the instrument: BTC-USD, XBT/USD, ...


class AltDatum(Message, frozen=True):
    """One observation of alternative data on ``alt.norm.<kind>``: funding, open interest, sentiment.

    From a venue (``trader.marketdata.feeds.alt``): ``source`` is the venue, ``symbol`` the unified
    instrument (``BTCUSDT-PERP`` for a perpetual), ``timestamp`` the venue's event time, and by kind:
    ``funding`` (value: the rate of the current period; ``predicted``: the next one's where the venue
    tells it; ``next_time``: when it is charged), ``mark_price``, ``index_price``, ``open_interest``
    (value in base units), ``liquidation`` (value: the quantity; ``price``; ``side``: the side of the
    liquidation order, ``sell`` when a long was liquidated)."""

    timestamp: int
    kind: str
    source: str
    value: Decimal
    symbol: str | None = None
    unit: str | None = None
    venue_symbol: str | None = None
    predicted: Decimal | None = None
    next_time: int | None = None
    price: Decimal | None = None
    side: Side | None = None


class Bar(Message, frozen=True):
    """An OHLCV bar of one venue's ticks on ``market.bar.<timeframe>.<venue>.<SYMBOL>``; ``start`` is the
    UTC bucket start."""

    venue: str
    symbol: str
    timeframe: str
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal
    trades: int
    closed: bool = True
    # The exact sum of price * size of the bar's trades (None from publishers before it existed).
    # ohlcv-agg needs it: the VWAP of a higher bar from rounded VWAPs of its minutes would not be exact.
    notional: Decimal | None = None


_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(message: msgspec.Struct) -> bytes:
    """The canonical JSON bytes of a bus message."""
    return _encoder.encode(message)


_bar_decoder = msgspec.json.Decoder(Bar)
_alt_decoder = msgspec.json.Decoder(AltDatum)


def decode_bar(data: bytes) -> Bar:
    return _bar_decoder.decode(data)


def decode_alt(data: bytes) -> AltDatum:
    return _alt_decoder.decode(data)


# Trading -----------------------------------------------------------------------------------------
#
# The order flow, each step a message on a stream (subjects in ``trader.bus.streams``):
#   strategy --OrderRequest--> risk --RiskDecision--> oms --Order (state)--> ...
#   strategy --CancelRequest--> oms (a cancel); --> risk --ReplaceDecision--> oms (a cancel-replace)
#   oms --RouteRequest--> execution-router --VenueOrder--> exeq (algos, venue adapters)
#   venue --ExecutionReport--> oms, ptrc --Position--> pnl --PnlSnapshot-->
# Every quantity, price, fee and PnL is Decimal. Every message carries the ids that make it idempotent.

OrderType = Literal["market", "limit", "stop_market", "stop_limit"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
OrderStatus = Literal[
    "NEW",
    "ACCEPTED",
    "REJECTED",
    "PARTIALLY_FILLED",
    "FILLED",
    "PENDING_CANCEL",
    "CANCELED",
    "EXPIRED",
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"REJECTED", "FILLED", "CANCELED", "EXPIRED"})
Algo = Literal["twap", "iceberg"]
Liquidity = Literal["maker", "taker"]
ReportKind = Literal["accepted", "rejected", "fill", "canceled", "expired", "replaced"]
TradingMode = Literal["active", "reduce_only", "halted"]


class OrderRequest(Message, frozen=True):
    """A new order, as a strategy (or the CLI) asks for it, on ``order.submit.<strategy>``.

    ``client_order_id`` is the idempotency key: the same id submitted twice makes one order."""

    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    type: OrderType = "market"
    price: Decimal | None = None  # limit price: limit and stop_limit
    stop_price: Decimal | None = None  # trigger: stop_market and stop_limit
    tif: TimeInForce = "GTC"
    post_only: bool = False
    reduce_only: bool = False
    account: str = "paper"
    venue: str | None = None  # a fixed venue; None lets the router choose
    algo: Algo | None = None  # a parent order sliced by exeq
    algo_params: dict[str, str] = msgspec.field(default_factory=dict)  # e.g. {"duration_s": "60"}
    timestamp: int = 0


class CancelRequest(Message, frozen=True):
    """Cancel an order, or cancel-replace it when ``quantity`` or ``price`` is given
    (``order.cancel.<strategy>``). A cancel goes to the oms; a replace is checked by risk first."""

    client_order_id: str
    strategy: str
    quantity: Decimal | None = None  # new quantity (replace)
    price: Decimal | None = None  # new limit price (replace)
    reason: str = "requested"
    timestamp: int = 0
    # A replace's own id: one verdict of risk and one change of the order per id. Risk gives one
    # (``<client_order_id>:<ORDERS stream sequence of the request>``) when the sender did not.
    replace_id: str | None = None


class RiskDecision(Message, frozen=True):
    """The pre-trade verdict on a request, from risk to the oms (``order.risk.<strategy>``)."""

    request: OrderRequest
    approved: bool
    reason: str | None = None  # why it was denied: the check and the numbers
    timestamp: int = 0


class ReplaceDecision(Message, frozen=True):
    """The pre-trade verdict on a cancel-replace, from risk to the oms (``order.replace.<strategy>``):
    the order as it would become is checked like a new one. ``request.replace_id`` is always set."""

    request: CancelRequest
    approved: bool
    reason: str | None = None  # why it was denied: the check and the numbers
    timestamp: int = 0


class Order(Message, frozen=True):
    """An order's state, as the oms keeps it; every change is published whole on
    ``order.state.<strategy>`` with ``version`` one higher, so the latest per id is the state."""

    client_order_id: str
    strategy: str
    account: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    status: OrderStatus
    price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = "GTC"
    post_only: bool = False
    reduce_only: bool = False
    venue: str | None = None
    algo: Algo | None = None
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fees: Decimal = Decimal(0)
    venue_order_id: str | None = None
    reason: str | None = None  # why it was rejected, canceled or expired
    version: int = 0
    created: int = 0
    updated: int = 0
    # Cancel-replace terms sent to the venue, kept until it confirms ("replaced") or refuses ("rejected"),
    # so that a restarted oms still knows what a pending replace asked for.
    replace_quantity: Decimal | None = None
    replace_price: Decimal | None = None
    # The id of the last replace asked (kept once it is answered): a verdict on it seen again is a repeat.
    replace_id: str | None = None

    @property
    def leaves_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class VenueOrder(Message, frozen=True):
    """An order (or an algo's child order) sent to one venue (``exec.order.<venue>``); ``action`` new,
    cancel or replace. Child orders of an algo have their own ``venue_client_id`` and the parent's id.

    A replace (cancel-replace of a working order) carries the order's new terms: ``quantity`` is the new
    total order quantity, filled part included, as in ``CancelRequest`` (the current one when only the
    price changes), and ``price`` the new limit price (the current one when only the quantity changes)."""

    action: Literal["new", "cancel", "replace"]
    client_order_id: str  # the oms order this belongs to
    venue_client_id: str  # unique per venue order: the parent's id, or the parent's id and a slice number
    strategy: str
    account: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    type: OrderType = "market"
    price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = "GTC"
    post_only: bool = False
    algo: Algo | None = None
    algo_params: dict[str, str] = msgspec.field(default_factory=dict)
    timestamp: int = 0


class ExecutionReport(Message, frozen=True):
    """What a venue said about an order (``exec.report.<venue>``). A fill carries the last quantity,
    price and fee; ``exec_id`` is unique per venue event, so a report seen twice is applied once."""

    exec_id: str
    kind: ReportKind
    client_order_id: str
    strategy: str
    account: str
    venue: str
    symbol: str
    side: Side
    venue_order_id: str | None = None
    last_quantity: Decimal = Decimal(0)
    last_price: Decimal | None = None
    fee: Decimal = Decimal(0)  # in the quote currency; a rebate is negative
    liquidity: Liquidity | None = None
    reason: str | None = None
    timestamp: int = 0
    # The venue order this is about: tells an algo's child orders apart (they share client_order_id).
    venue_client_id: str | None = None
    # What a live venue charged, as it charged it (BTC on a Binance buy, BNB, ...), where ``fee`` is that
    # in the quote currency (0 for an asset with no price here): balances reconcile with this.
    commission: Decimal | None = None
    commission_asset: str | None = None


class Position(Message, frozen=True):
    """Net position per (account, venue, symbol) on ``position.<account>.<venue>.<symbol>``.
    ``quantity`` is signed: positive long, negative short."""

    account: str
    venue: str
    symbol: str
    quantity: Decimal
    average_price: Decimal | None
    realized_pnl: Decimal
    fees: Decimal
    strategy: str | None = None
    last_exec_id: str | None = None
    timestamp: int = 0


class PnlSnapshot(Message, frozen=True):
    """Marked-to-market PnL for one strategy, or ``scope="total"`` (``pnl.<scope>``)."""

    scope: str
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    total: Decimal  # realized + unrealized - fees
    gross_exposure: Decimal = Decimal(0)
    timestamp: int = 0


class TradingState(Message, frozen=True):
    """The shared trading switch (JetStream key-value ``TRADER_STATE``, key ``trading.state``)."""

    mode: TradingMode = "active"
    reason: str | None = None
    since: int = 0


# Operator actions -------------------------------------------------------------------------------

OperatorOutcome = Literal["accepted", "refused", "failed"]


class OperatorAction(Message, frozen=True):
    """What an operator did through the api, on ``operator.action.<action>`` (stream OPERATOR): who (the
    name of the token used, never the token), what (``action`` and its ``params``), when, and the
    outcome. ``action_id`` is unique per action and is its ``Nats-Msg-Id``."""

    action_id: str
    actor: str
    role: str
    action: str  # submit_order, cancel_order, cancel_all, halt, reduce_only, resume, replay_dlq
    params: dict[str, str] = msgspec.field(default_factory=dict)
    outcome: OperatorOutcome = "accepted"
    detail: str | None = None
    timestamp: int = 0


# Cross-venue spreads (spread-analyzer) --------------------------------------------------------------
#
# One instrument (a unified symbol, BTCUSDT) quoted on several venues. Fees are taker fees in basis
# points; ``gross_bps`` and ``net_bps`` are relative to the buy price: buying one unit at the buy
# venue's ask and selling it at the sell venue's bid earns
#   net_per_unit = sell_price * (1 - sell_fee) - buy_price * (1 + buy_fee)      (fees as fractions)
#   net_bps = net_per_unit / buy_price * 10,000;  gross_bps the same without fees.
# Basis points are rounded half-even to 4 places; prices and net_per_unit are exact.


class VenueQuote(Message, frozen=True):
    """A venue's latest top of book for the instrument, with the taker fee it charges."""

    venue: str
    bid: Decimal
    ask: Decimal
    timestamp: int  # event time of the tick that carried it
    taker_fee_bps: Decimal


class PairSpread(Message, frozen=True):
    """Buy at ``buy_venue``'s ask, sell at ``sell_venue``'s bid: the cross-venue trade and its edge."""

    buy_venue: str
    sell_venue: str
    buy_price: Decimal  # buy_venue's ask
    sell_price: Decimal  # sell_venue's bid
    gross_bps: Decimal
    net_bps: Decimal  # after both venues' taker fees
    net_per_unit: Decimal  # in the quote currency, after fees


class SpreadSnapshot(Message, frozen=True):
    """The cross-venue view of one instrument on ``market.spread.<SYMBOL>`` (stream SPREADS), as of
    ``timestamp`` (event time: the newest quote's). Venues whose latest quote is older than the
    staleness are left out of the NBBO and the pairs and listed in ``stale``."""

    symbol: str
    timestamp: int
    best_bid: Decimal  # NBBO: the highest bid of a fresh venue...
    best_bid_venue: str
    best_ask: Decimal  # ...and the lowest ask (ties: the venue first by name)
    best_ask_venue: str
    quotes: list[VenueQuote]  # the fresh venues, by name
    stale: list[VenueQuote]  # the venues left out, by name
    pairs: list[PairSpread]  # every ordered pair of fresh venues
    best: PairSpread | None  # the pair with the highest net_bps (None: fewer than two fresh venues)
    source_seq: int = 0  # MARKET_TICKS sequence of the last tick it includes


SpreadOpportunityKind = Literal["open", "close"]


class SpreadOpportunity(Message, frozen=True):
    """A cross-venue opportunity crossing its threshold, on ``market.spread.<SYMBOL>.opportunity``:
    ``open`` when the pair's ``net_bps`` rises above ``threshold_bps``, ``close`` when it falls back to
    it or below, or a venue of the pair goes stale (``reason``). The prices and edges are those at the
    crossing (at a close for staleness: the last ones known). Its identity and ``Nats-Msg-Id``:
    ``<symbol>:<buy_venue>:<sell_venue>:<kind>:<source_seq>``."""

    symbol: str
    kind: SpreadOpportunityKind
    buy_venue: str
    sell_venue: str
    timestamp: int  # event time of the tick that made it cross
    opened: int  # when the opportunity opened (an open: timestamp)
    buy_price: Decimal
    sell_price: Decimal
    buy_fee_bps: Decimal
    sell_fee_bps: Decimal
    gross_bps: Decimal
    net_bps: Decimal
    net_per_unit: Decimal
    threshold_bps: Decimal
    source_seq: int  # MARKET_TICKS sequence of the tick that made it cross
    reason: str | None = None  # a close: "below threshold", "stale: <venue>"


# Feed events ------------------------------------------------------------------------------------

FeedEventKind = Literal["gap", "gap_filled", "reconnect", "stale"]


class FeedEvent(Message, frozen=True):
    """Something that happened to a live feed, on ``market.event.<venue>.<SYMBOL>``: a gap in the
    venue's trade ids (``from_id``..``to_id``, inclusive), its filling from the venue's REST API, a
    reconnect, a stream gone quiet."""

    venue: str
    symbol: str
    kind: FeedEventKind
    timestamp: int
    from_id: str | None = None
    to_id: str | None = None
    detail: str | None = None
    venue_symbol: str | None = None
    count: int | None = None  # gap: ids missing; gap_filled: trades recovered


# Streaming features (feature-eng) ----------------------------------------------------------------


class Features(Message, frozen=True):
    """The features of one closed bar on ``market.feature.<timeframe>.<venue>.<SYMBOL>`` (stream
    FEATURES): computed from that bar and those before it only (point in time: as of the bar's close).
    ``values`` by column name (``sma_20``, ``rsi_14``, ...; ``trader.analytics.features``), None while a
    feature warms up or is undefined. Features are analytics, not money: binary floats, as TA-Lib gives
    them. ``bars``: how many bars of the series went in. Identity and ``Nats-Msg-Id``:
    ``<venue>:<symbol>:<timeframe>:<start>``."""

    venue: str
    symbol: str
    timeframe: str
    start: int  # the bar's UTC bucket start, epoch ms
    values: dict[str, float | None]
    bars: int
