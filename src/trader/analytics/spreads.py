"""Cross-venue spreads: the NBBO of each instrument across venues, every pairwise spread, and the
cross-venue opportunity net of taker fees. Pure: ticks in, messages out, no I/O.

An instrument is a unified symbol (BTCUSDT) quoted on several venues (``mock``, ``binance``, ...). For
each, the engine keeps every venue's latest top of book (the ``bid`` and ``ask`` of its latest tick; a
tick without both is a trade only and changes nothing). Time is event time: the instrument's clock is
the newest quote's timestamp, and a venue whose latest quote is more than ``staleness_ms`` older than
that clock is left out (listed as stale). Event time, not the wall clock, so that the same ticks in the
same order give the same outputs, on the first run and on a replay after a restart alike.

For every tick that changes a quote of an instrument quoted on two or more venues:

- opportunities: every ordered pair of fresh venues (buy at one's ask, sell at the other's bid) whose
  net edge after both taker fees is above ``threshold_bps`` is open; a ``SpreadOpportunity`` ``open`` is
  emitted when a pair becomes open and ``close`` when it stops being (below the threshold again, or a
  venue of the pair gone stale). The crossing is judged exactly, on the unrounded edge.
- a ``SpreadSnapshot`` (NBBO, fresh and stale venues, every pair's gross and net bps, the best pair) is
  published at the first tick of each ``publish_interval_ms`` of the clock, and kept as a sample (a row
  of QuestDB's ``spreads``) at the first tick of each ``sample_interval_ms``.

The arithmetic is ``Decimal`` in the default context (messages.py gives the formulas); prices and
``net_per_unit`` are exact, basis points rounded half-even to 4 places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

import msgspec
from pydantic import BaseModel, Field

from trader.messages import (
    MarketTick,
    PairSpread,
    SpreadOpportunity,
    SpreadOpportunityKind,
    SpreadSnapshot,
    VenueQuote,
)

BPS = Decimal(10_000)
BPS_PLACES = Decimal("0.0001")
BELOW_THRESHOLD = "below threshold"

# Taker fees of the live venues at their base (lowest-volume) spot tier, in bps, used when the settings
# name none (spread_analyzer.taker_fee_bps, exeq.venues): what a new account pays.
BASE_TIER_TAKER_FEE_BPS: dict[str, Decimal] = {
    "binance": Decimal(10),
    "coinbase": Decimal(60),
    "kraken": Decimal(40),
    "bybit": Decimal(10),
    "okx": Decimal(10),
}


class SpreadAnalyzerSettings(BaseModel):
    """spread-analyzer (settings section ``spread_analyzer``)."""

    symbols: list[str] = Field(default_factory=list, description="instruments to follow; empty: every one")
    staleness_ms: int = Field(
        default=3_000, gt=0, description="a venue's quote older than this (event time) is left out"
    )
    threshold_bps: Decimal = Field(
        default=Decimal(0), description="an opportunity is one above this net edge, after taker fees"
    )
    publish_interval_ms: int = Field(
        default=250, gt=0, description="a SpreadSnapshot on the bus per instrument at most this often"
    )
    sample_interval_s: float = Field(default=1.0, gt=0, description="a sample row in QuestDB this often")
    taker_fee_bps: dict[str, Decimal] = Field(
        default_factory=dict,
        description="taker fee by venue; unset: exeq.venues' taker_fee_bps, a mock venue's, the base tier",
    )
    default_taker_fee_bps: Decimal = Field(default=Decimal(10), description="a venue known nowhere else")
    flush_interval_s: float = Field(default=0.5, gt=0, description="how often rows are written to QuestDB")


@dataclass(frozen=True)
class SpreadConfig:
    """What the engine needs: the settings' numbers, with each venue's taker fee resolved."""

    staleness_ms: int = 3_000
    threshold_bps: Decimal = Decimal(0)
    publish_interval_ms: int = 250
    sample_interval_ms: int = 1_000
    fees_bps: Mapping[str, Decimal] = field(default_factory=dict)
    default_fee_bps: Decimal = Decimal(10)
    symbols: frozenset[str] = frozenset()  # empty: every symbol

    def fee_bps(self, venue: str) -> Decimal:
        return self.fees_bps.get(venue, self.default_fee_bps)


class _Quote:
    """A venue's latest quote, with what one unit costs to buy there (fee and threshold included) and
    what it fetches sold there (fee deducted): an opportunity is ``sell_take > buy_cost``."""

    __slots__ = ("ask", "bid", "buy_cost", "buy_factor", "fee_bps", "sell_factor", "sell_take", "timestamp")
    __slots__ += ("venue",)

    def __init__(self, venue: str, fee_bps: Decimal, thr: Decimal) -> None:
        self.venue, self.fee_bps = venue, fee_bps
        self.buy_factor = 1 + (fee_bps + thr) / BPS
        self.sell_factor = 1 - fee_bps / BPS
        self.bid = self.ask = self.buy_cost = self.sell_take = Decimal(0)
        self.timestamp = 0

    def update(self, bid: Decimal, ask: Decimal, timestamp: int) -> None:
        self.bid, self.ask, self.timestamp = bid, ask, timestamp
        self.buy_cost = ask * self.buy_factor
        self.sell_take = bid * self.sell_factor


class QuoteState(msgspec.Struct, frozen=True):
    venue: str
    bid: Decimal
    ask: Decimal
    timestamp: int


class OpenState(msgspec.Struct, frozen=True):
    buy_venue: str
    sell_venue: str
    opened: int


class InstrumentState(msgspec.Struct, frozen=True):
    symbol: str
    clock: int
    published: int  # the last publish bucket (clock // publish_interval_ms) a snapshot was made in
    sampled: int  # the same for samples
    quotes: list[QuoteState]
    open: list[OpenState]


class SpreadState(msgspec.Struct, frozen=True):
    """The engine's whole state, for a snapshot: restored, it continues as if never stopped."""

    instruments: list[InstrumentState]


class _Instrument:
    __slots__ = ("clock", "min_fresh", "open", "published", "quotes", "sampled", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.quotes: dict[str, _Quote] = {}
        self.clock = 0
        self.published = -1
        self.sampled = -1
        self.open: dict[tuple[str, str], int] = {}  # (buy, sell) -> when it opened
        # At most the oldest fresh quote's time: while the staleness horizon stays at or below it, no
        # fresh venue has gone stale, and only the pairs of the venue that quoted can have changed.
        self.min_fresh = 0


@dataclass
class SpreadOutput:
    """What one tick made: a snapshot to publish, a sample to store, opportunity events."""

    snapshot: SpreadSnapshot | None = None
    sample: SpreadSnapshot | None = None
    events: list[SpreadOpportunity] = field(default_factory=list)


NOTHING = SpreadOutput()


def bps(numerator: Decimal, price: Decimal) -> Decimal:
    """``numerator / price`` in basis points, rounded half-even to 4 places."""
    return (numerator * BPS / price).quantize(BPS_PLACES, rounding=ROUND_HALF_EVEN)


def pair_spread(buy: _Quote, sell: _Quote) -> PairSpread:
    """Buy one unit at ``buy``'s ask, sell it at ``sell``'s bid: the edge before and after fees."""
    net = sell.bid * (1 - sell.fee_bps / BPS) - buy.ask * (1 + buy.fee_bps / BPS)
    return PairSpread(
        buy_venue=buy.venue,
        sell_venue=sell.venue,
        buy_price=buy.ask,
        sell_price=sell.bid,
        gross_bps=bps(sell.bid - buy.ask, buy.ask),
        net_bps=bps(net, buy.ask),
        net_per_unit=net,
    )


class SpreadEngine:
    """The latest quote of every venue per instrument, and what each tick changes."""

    def __init__(self, config: SpreadConfig) -> None:
        self.config = config
        self._instruments: dict[str, _Instrument] = {}

    # Ticks -----------------------------------------------------------------------------------------

    def on_tick(self, tick: MarketTick, seq: int = 0) -> SpreadOutput:
        """Apply one tick (``seq``: its stream sequence, the identity of what it causes)."""
        bid, ask = tick.bid, tick.ask
        if bid is None or ask is None:
            return NOTHING  # a trade without the book: no quote to compare
        symbols = self.config.symbols
        if symbols and tick.symbol not in symbols:
            return NOTHING
        inst = self._instruments.get(tick.symbol)
        if inst is None:
            inst = self._instruments[tick.symbol] = _Instrument(tick.symbol)
        venue, timestamp = tick.venue, tick.timestamp
        quote = inst.quotes.get(venue)
        if quote is None:
            quote = inst.quotes[venue] = self._new_quote(venue)
            was_fresh = False
        elif timestamp < quote.timestamp:
            return NOTHING  # older than what the venue already said
        else:
            was_fresh = quote.timestamp >= inst.clock - self.config.staleness_ms
        quote.update(bid, ask, timestamp)
        if timestamp > inst.clock:
            inst.clock = timestamp
        if len(inst.quotes) < 2:
            return NOTHING  # quoted on one venue so far: no cross-venue view
        return self._outputs(inst, quote, was_fresh, seq)

    def _new_quote(self, venue: str) -> _Quote:
        return _Quote(venue, self.config.fee_bps(venue), self.config.threshold_bps)

    def _outputs(self, inst: _Instrument, quote: _Quote, was_fresh: bool, seq: int) -> SpreadOutput:
        cfg = self.config
        oldest = inst.clock - cfg.staleness_ms
        if was_fresh and oldest <= inst.min_fresh:
            events = self._crossings_of(inst, quote, oldest, seq)
        else:
            events = self._crossings(inst, oldest, quote.timestamp, seq)
        publish_bucket = inst.clock // cfg.publish_interval_ms
        sample_bucket = inst.clock // cfg.sample_interval_ms
        if not events and publish_bucket <= inst.published and sample_bucket <= inst.sampled:
            return NOTHING
        out = SpreadOutput(events=events)
        if publish_bucket > inst.published or sample_bucket > inst.sampled:
            snapshot = self._snapshot(inst, seq)
            if publish_bucket > inst.published:
                inst.published, out.snapshot = publish_bucket, snapshot
            if sample_bucket > inst.sampled:
                inst.sampled, out.sample = sample_bucket, snapshot
        return out

    def _crossings_of(self, inst: _Instrument, v: _Quote, oldest: int, seq: int) -> list[SpreadOpportunity]:
        """The common case, no venue gone stale or back: only the pairs of ``v`` can have crossed."""
        opened, closed = [], []
        is_open = inst.open
        for w in inst.quotes.values():
            if w is v or w.timestamp < oldest:
                continue
            for pair, above in (
                ((v.venue, w.venue), w.sell_take > v.buy_cost),
                ((w.venue, v.venue), v.sell_take > w.buy_cost),
            ):
                if above is not (pair in is_open):
                    (opened if above else closed).append(pair)
        if not opened and not closed:
            return []
        return self._changes(inst, sorted(closed), sorted(opened), oldest, v.timestamp, seq)

    def _crossings(self, inst: _Instrument, oldest: int, timestamp: int, seq: int) -> list[SpreadOpportunity]:
        """Every pair of fresh venues judged again (a venue went stale, or came back)."""
        fresh = [q for q in inst.quotes.values() if q.timestamp >= oldest]
        inst.min_fresh = min(q.timestamp for q in fresh)
        now_open = {
            (buy.venue, sell.venue)
            for buy in fresh
            for sell in fresh
            if sell.sell_take > buy.buy_cost and buy is not sell
        }
        if not now_open and not inst.open:
            return []
        closed = sorted(inst.open.keys() - now_open)
        return self._changes(inst, closed, sorted(now_open - inst.open.keys()), oldest, timestamp, seq)

    def _changes(
        self,
        inst: _Instrument,
        closed: list[tuple[str, str]],
        opened: list[tuple[str, str]],
        oldest: int,
        timestamp: int,
        seq: int,
    ) -> list[SpreadOpportunity]:
        events: list[SpreadOpportunity] = []
        for pair in closed:
            buy, sell = inst.quotes[pair[0]], inst.quotes[pair[1]]
            gone = [q.venue for q in (buy, sell) if q.timestamp < oldest]
            reason = f"stale: {', '.join(gone)}" if gone else BELOW_THRESHOLD
            events.append(self._event(inst, "close", buy, sell, inst.open.pop(pair), timestamp, seq, reason))
        for pair in opened:
            inst.open[pair] = timestamp
            buy, sell = inst.quotes[pair[0]], inst.quotes[pair[1]]
            events.append(self._event(inst, "open", buy, sell, timestamp, timestamp, seq, None))
        return events

    def _event(
        self,
        inst: _Instrument,
        kind: SpreadOpportunityKind,
        buy: _Quote,
        sell: _Quote,
        opened: int,
        timestamp: int,
        seq: int,
        reason: str | None,
    ) -> SpreadOpportunity:
        pair = pair_spread(buy, sell)
        return SpreadOpportunity(
            symbol=inst.symbol,
            kind=kind,
            buy_venue=buy.venue,
            sell_venue=sell.venue,
            timestamp=timestamp,
            opened=opened,
            buy_price=pair.buy_price,
            sell_price=pair.sell_price,
            buy_fee_bps=buy.fee_bps,
            sell_fee_bps=sell.fee_bps,
            gross_bps=pair.gross_bps,
            net_bps=pair.net_bps,
            net_per_unit=pair.net_per_unit,
            threshold_bps=self.config.threshold_bps,
            source_seq=seq,
            reason=reason,
        )

    # Views -----------------------------------------------------------------------------------------

    def snapshot(self, symbol: str, seq: int = 0) -> SpreadSnapshot | None:
        """The instrument's cross-venue view now (None: not quoted on two venues yet)."""
        inst = self._instruments.get(symbol)
        if inst is None or len(inst.quotes) < 2:
            return None
        return self._snapshot(inst, seq)

    def _snapshot(self, inst: _Instrument, seq: int) -> SpreadSnapshot:
        oldest = inst.clock - self.config.staleness_ms
        ordered = [q for _, q in sorted(inst.quotes.items())]
        fresh = [q for q in ordered if q.timestamp >= oldest]
        best_bid = best_ask = fresh[0]
        for q in fresh[1:]:
            if q.bid > best_bid.bid:
                best_bid = q
            if q.ask < best_ask.ask:
                best_ask = q
        pairs = [pair_spread(buy, sell) for buy in fresh for sell in fresh if buy is not sell]
        best = None
        for pair in pairs:
            if best is None or pair.net_per_unit / pair.buy_price > best.net_per_unit / best.buy_price:
                best = pair
        return SpreadSnapshot(
            symbol=inst.symbol,
            timestamp=inst.clock,
            best_bid=best_bid.bid,
            best_bid_venue=best_bid.venue,
            best_ask=best_ask.ask,
            best_ask_venue=best_ask.venue,
            quotes=[_view(q) for q in fresh],
            stale=[_view(q) for q in ordered if q.timestamp < oldest],
            pairs=pairs,
            best=best,
            source_seq=seq,
        )

    def symbols(self) -> list[str]:
        return sorted(self._instruments)

    def open_opportunities(self, symbol: str) -> dict[tuple[str, str], int]:
        inst = self._instruments.get(symbol)
        return dict(inst.open) if inst is not None else {}

    # State ------------------------------------------------------------------------------------------

    def state(self) -> SpreadState:
        return SpreadState(
            [
                InstrumentState(
                    symbol=inst.symbol,
                    clock=inst.clock,
                    published=inst.published,
                    sampled=inst.sampled,
                    quotes=[QuoteState(q.venue, q.bid, q.ask, q.timestamp) for q in inst.quotes.values()],
                    open=[OpenState(buy, sell, opened) for (buy, sell), opened in inst.open.items()],
                )
                for inst in self._instruments.values()
            ]
        )

    def restore(self, state: SpreadState) -> None:
        self._instruments = {}
        for saved in state.instruments:
            inst = self._instruments[saved.symbol] = _Instrument(saved.symbol)
            inst.clock, inst.published, inst.sampled = saved.clock, saved.published, saved.sampled
            for q in saved.quotes:
                quote = inst.quotes[q.venue] = self._new_quote(q.venue)
                quote.update(q.bid, q.ask, q.timestamp)
            inst.open = {(o.buy_venue, o.sell_venue): o.opened for o in saved.open}


def _view(quote: _Quote) -> VenueQuote:
    return VenueQuote(
        venue=quote.venue,
        bid=quote.bid,
        ask=quote.ask,
        timestamp=quote.timestamp,
        taker_fee_bps=quote.fee_bps,
    )
