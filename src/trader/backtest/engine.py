"""The backtest engine: the configured strategies, risk, the oms's order book, exeq's paper venues and
the position and PnL books, wired in one process on a simulated clock. Pure: ticks in, records out.

Every piece is the one the live services run, unchanged: ``StrategyRunner`` and ``OrderContext`` (the
strategy service), ``Decider`` and ``PreTradeRisk`` (risk), ``OrderBook`` and the order state machine
(oms), ``ExecutionDesk`` with its ``PaperVenue`` adapters and algos (exeq: exec ids, fills, fees,
slippage, latency, partial fills, IOC/FOK/post-only), ``PositionTracker`` and ``PnlBook`` (ptrc,
pnl), ``BarBuilder`` (normalizer). What the bus did between them, the engine does in order: each
message a component produces is handed to the next at once, first in first out. A tick goes to the
strategies first, then to the venues, and what the strategies asked for on it is carried out after
(live, both hear of it at once, and an order takes hops to reach the venue); the bars it closes come
last. A fill's report reaches the strategy before the order state it made (the strategy service sees
both; which first is a race on the bus).

Alternative data (``on_alt``, ``feed``): merged with the ticks in event time, a datum after the ticks
of its millisecond, to every strategy that overrides ``on_alt`` (its runner keeps those of its symbols
and their perpetuals and of the kinds it names, after its warm-up, as live); the clock moves to the
datum's time and what the strategies ask for is carried out at once.

What the engine does not have (docs/backtest.md, "What differs from paper"): the execution router (an
order must name its venue, or routing must leave no choice: otherwise it is denied, saying so), live
venues (a backtest simulates the configuration's paper venues only), and the kill switch. The post-trade
loss and drawdown limits are checked on the total PnL every ``pnl.snapshot_interval_s`` of event time.

A strategy callback that raises stops the run (``StrategyFailed``: the strategy, the callback, the
event time and the exception); the live service logs it and goes on, but a backtest that went on
would report figures of a strategy that did not run as written.
"""

from __future__ import annotations

import collections
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from trader.backtest.columns import HeldRow, WindowColumns, bar_pieces
from trader.bus.publish import Outgoing
from trader.bus.streams import bar_subject
from trader.config import Settings, StrategyConfig
from trader.execution.desk import ExecutionDesk
from trader.execution.routing import venue_without_choice
from trader.execution.venues import PaperVenue
from trader.marketdata.bars import BarBuilder, timeframe_ms
from trader.messages import (
    AltDatum,
    Bar,
    CancelRequest,
    ExecutionReport,
    MarketTick,
    Order,
    OrderRequest,
    TradingState,
    VenueOrder,
)
from trader.orders import (
    DuplicateOrderId,
    IllegalTransition,
    MismatchedEvent,
    OrderBook,
    UnknownOrder,
)
from trader.orders.state import is_replace
from trader.portfolio.pnl import PnlBook, pnl_snapshot
from trader.portfolio.positions import PositionTracker
from trader.risk.checks import PostTradeRisk, PreTradeRisk
from trader.risk.decider import Decider
from trader.risk.prices import VenuePrices

# The oms's routing messages still live in its service module (no bus is touched by them): imported
# from there, unchanged, until they move to their domain package.
from trader.services.oms import route_cancel, route_new, route_replace
from trader.strategies import Actions, Strategy, StrategyRunner, build_runner
from trader.strategies.warmup import HistoryBar, bars_for, merge_wanted, pick_latest

_venue_order = msgspec.json.Decoder(VenueOrder)
_report = msgspec.json.Decoder(ExecutionReport)
ZERO = Decimal(0)


class BacktestConfigError(ValueError):
    """The configuration cannot be backtested: no strategy, a venue that is not a paper venue, ..."""


class StrategyFailed(RuntimeError):
    """A strategy's callback raised during the run."""


@dataclass
class Records:
    """What a run produced, in the order it happened."""

    orders: list[Order] = field(default_factory=list)  # every state the oms would publish
    fills: list[dict[str, Any]] = field(default_factory=list)
    equity: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)  # what the oms would log and count
    trading: list[dict[str, Any]] = field(default_factory=list)  # switches of the trading state
    ticks: int = 0
    bars: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    alt: int = 0  # alternative data handed to the strategies that take it
    first_alt_ms: int | None = None
    last_alt_ms: int | None = None


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (the desk's lock is free and its publish only collects) to its
    end, without an event loop: cheaper per tick, and nothing can interleave."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a simulated component waited on something: the backtest cannot run it")


class BacktestEngine:
    def __init__(
        self,
        settings: Settings,
        strategies: Iterable[StrategyConfig],
        start_ms: int,
        *,
        equity_interval_ms: int = 60_000,
    ) -> None:
        self.settings = settings
        self.now = start_ms
        self.records = Records()
        self.equity_interval_ms = equity_interval_ms
        self._next_sample = start_ms
        self._requests = 0
        self._queue: collections.deque[OrderRequest | CancelRequest] = collections.deque()
        self._published: list[Outgoing] = []
        self.desk = ExecutionDesk(self._paper_venues(), self._collect, self._clock)
        self.pre = PreTradeRisk(settings.risk)
        self.prices = VenuePrices(settings)
        self.decider = Decider(self.pre, self.prices)
        self.book = OrderBook()
        self.positions = PositionTracker()
        self.pnl = PnlBook(settings.quote_venue_of)
        # Post-trade limits on the total PnL, as risk checks each snapshot the pnl service publishes.
        self.post = PostTradeRisk(settings.risk)
        self.trading = TradingState()
        self._pnl_step = max(int(settings.pnl.snapshot_interval_s * 1000), 1)
        self._next_pnl = start_ms
        self.runners: dict[str, StrategyRunner] = {}
        self.by_instrument: dict[tuple[str, str], list[StrategyRunner]] = {}
        # Bars are built only where a strategy hears of them: the cost of a tick otherwise.
        self.bar_instruments: set[tuple[str, str]] = set()
        self.tick_runners: set[StrategyRunner] = set()  # those whose strategy has ``on_tick``
        self.alt_runners: list[StrategyRunner] = []  # those whose strategy has ``on_alt``
        self._tick_instruments: set[tuple[str, str]] = set()  # the instruments they hear of
        # For the desk, later: ticks, or rows of a window taken column-wise (``on_window``).
        self._held: dict[tuple[str, str], dict[str, tuple[int, MarketTick | HeldRow]]] = {}
        for config in strategies:
            self._load(config)
        if not self.runners:
            raise BacktestConfigError("no strategy to backtest: none is configured and enabled")
        self.symbols = sorted({symbol for _, symbol in self.by_instrument})
        timeframes = list(settings.normalizer.timeframes)
        self.bars = BarBuilder(timeframes, int(settings.normalizer.lateness_s * 1000))
        self._grain = self.bars.grain
        self._next_advance = 0
        self._unmarked: dict[tuple[str, str], Decimal] = {}  # last trades not yet handed to risk and pnl
        self._unbarred: list[
            tuple[MarketTick, int, int]
        ] = []  # ticks for the bars, added at the next crossing

    # Setup -------------------------------------------------------------------------------------

    def _clock(self) -> int:
        return self.now

    def _paper_venues(self) -> dict[str, PaperVenue]:
        venues = {}
        for name, config in self.settings.exeq.venues.items():
            if config.kind != "paper":
                raise BacktestConfigError(
                    f"exeq venue {name!r} is a {config.kind} venue: a backtest simulates paper venues only"
                )
            paper = self.settings.exeq.paper.model_copy(
                update={"quote_venue": self.settings.quote_venue_of(name)}
            )
            venues[name] = PaperVenue(paper, name=name)
        return venues

    def _load(self, config: StrategyConfig) -> None:
        """As the strategy service loads it, except that a strategy that cannot run stops the backtest."""
        if not config.enabled:
            return
        if config.name in self.runners:
            raise BacktestConfigError(f"two strategies are named {config.name}")
        problem = self.settings.strategy_venue_problem(config)
        if problem is not None:
            raise BacktestConfigError(problem)
        config = config.model_copy(update={"data_venue": self.settings.data_venue_of(config)}, deep=True)
        try:
            runner = build_runner(config, clock=self._clock)
        except Exception as exc:  # the user's code may raise anything: said as the service says it
            raise BacktestConfigError(
                f"strategy {config.name} ({config.kind}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        self.runners[config.name] = runner
        if type(runner.strategy).on_tick is not Strategy.on_tick:
            self.tick_runners.add(runner)
        if type(runner.strategy).on_alt is not Strategy.on_alt:  # the strategy service's rule
            self.alt_runners.append(runner)
        for symbol in config.symbols:
            self.by_instrument.setdefault((runner.data_venue, symbol), []).append(runner)
            if runner in self.tick_runners:
                self._tick_instruments.add((runner.data_venue, symbol))
            if _hears_bars(runner):
                self.bar_instruments.add((runner.data_venue, symbol))

    def alt_wanted(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """What alternative data the strategies hear of: (their symbols, the kinds: empty for every
        kind), or None when none overrides ``on_alt`` (then nothing is read)."""
        if not self.alt_runners:
            return None
        symbols = sorted({s for runner in self.alt_runners for s in runner.symbols})
        kinds: set[str] = set()
        for runner in self.alt_runners:
            if not runner.strategy.alt_kinds:
                return tuple(symbols), ()
            kinds.update(runner.strategy.alt_kinds)
        return tuple(symbols), tuple(sorted(kinds))

    def warmup_ms(self) -> int:
        """How far before the start the warm-up reads: the widest declared need, a minute at least (the
        quotes and reference prices at the start are those of the last ticks before it)."""
        widest = 60_000
        for runner in self.runners.values():
            for subject, bars in runner.warmup_wanted().items():
                widest = max(widest, timeframe_ms(subject.split(".")[2]) * (bars + 1))
        return widest

    # The run -----------------------------------------------------------------------------------

    def start(self, history: Iterable[MarketTick]) -> None:
        """Start every strategy, then warm it up with the bars of ``history`` (the ticks before the
        start, in time order) as the strategy service does with the BARS stream; the last tick of each
        instrument in it gives risk its reference price, pnl its mark and the venues their book."""
        latest: dict[tuple[str, str], MarketTick] = {}
        closed: list[Bar] = []
        for tick in history:
            closed += self._add_to_bars(tick)
            latest[(tick.venue, tick.symbol)] = tick
        closed += self._advance_bars(self.now)
        history_bars = [
            HistoryBar(seq, bar_subject(bar.timeframe, bar.venue, bar.symbol), bar)
            for seq, bar in enumerate(closed)
        ]
        for tick in latest.values():
            self._mark(tick)
            self._desk(self.desk.on_tick(tick))
        for runner in self.runners.values():
            self._emit(runner, runner.start())
        wanted = {name: runner.warmup_wanted() for name, runner in self.runners.items()}
        picked = pick_latest(history_bars, merge_wanted(wanted.values()))
        for name, runner in self.runners.items():
            self._emit(runner, runner.warm_up(bars_for(wanted[name], picked)))
        self._drain()
        self._sample(self.now)

    def on_tick(self, tick: MarketTick) -> None:
        if not self._quiet(tick):
            self._on_tick(tick)

    @property
    def bars_only(self) -> bool:
        """Whether no strategy hears ticks or alternative data (none overrides ``on_tick`` or
        ``on_alt``): then the run may go a window of the lake at a time (``on_window``)."""
        return not self.tick_runners and not self.alt_runners

    def on_window(self, table: pa.Table) -> None:
        """A window of the lake's ticks (``LakeTicks.windows``), for a bars-only run: the same as
        ``on_tick`` of each of its ticks in turn, but a stretch of ticks that can make nothing happen
        (``_quiet`` of each) is taken column-wise, and a tick is made only of the others: one that
        crosses into a bar grain, or is due a post-trade check or an equity sample, and every tick while
        an order or algo works (the venues fill against each). A window whose values do not fit the
        column-wise sums goes tick by tick."""
        if not self.bars_only:
            raise RuntimeError("on_window is for runs whose strategies hear only bars")
        window = WindowColumns.of(table)
        if window is None:
            from trader.backtest.data import ticks_of

            for tick in ticks_of(table):
                self.on_tick(tick)
            return
        ts, rows = window.ts, window.rows
        barred = [n for n, i in enumerate(window.instruments) if i.key in self.bar_instruments]
        if len(barred) == len(window.instruments):
            barred_rows = np.arange(rows)
        else:
            barred_rows = np.flatnonzero(np.isin(window.instrument_of, barred))
        i = 0
        while i < rows:
            if self.book.open_count or self.desk.algos or self._queue:
                self.on_tick(window.tick(i))
                i += 1
                continue
            due = min(self._next_pnl, self._next_sample)
            j = i if self.now >= due else max(i, int(np.searchsorted(ts, due)))
            if len(barred_rows):
                crossing = max(i, int(np.searchsorted(ts, self._next_advance)))
                at = int(np.searchsorted(barred_rows, crossing))
                if at < len(barred_rows):
                    j = min(j, int(barred_rows[at]))
            if j > i:
                self._take_quiet(window, i, j)
            if j < rows:
                self.on_tick(window.tick(j))
            i = j + 1
        for held in self._held.values():  # the window's rows the desk was not shown: ticks, for later
            for name, (seq, tick) in held.items():
                if isinstance(tick, HeldRow) and tick.window is window:
                    held[name] = (seq, tick.tick())

    def _take_quiet(self, window: WindowColumns, i: int, j: int) -> None:
        """Rows ``i`` to ``j`` of the window, none of which can make anything happen: what ``_quiet``
        does for each, column-wise."""
        records = self.records
        first_seq = records.ticks + 1 - i  # a row's place among the run's ticks: first_seq + row
        records.ticks += j - i
        if records.first_ms is None:
            records.first_ms = int(window.ts[i])
        last_ms = int(window.ts[j - 1])
        records.last_ms = last_ms
        if last_ms > self.now:
            self.now = last_ms
        present = []  # (first row, last row, instrument, a, b)
        for instrument in window.instruments:
            a, b = np.searchsorted(instrument.rows, (i, j))
            if a < b:
                present.append((int(instrument.rows[a]), int(instrument.rows[b - 1]), instrument, a, b))
        unmarked = self._unmarked
        for _, last, instrument, _, _ in sorted(present, key=lambda p: p[1]):  # in the order of last trades
            unmarked.pop(instrument.key, None)
            unmarked[instrument.key] = window.price(last)
        pieces = []
        for _, last, instrument, a, b in sorted(present, key=lambda p: p[0]):  # first appearance
            held = self._held.get(instrument.key)
            if held is None:
                held = self._held[instrument.key] = {}
            held["last"] = (first_seq + last, HeldRow(window, last))
            for name, quoted in (("bid", instrument.bid_rows), ("ask", instrument.ask_rows)):
                at = int(np.searchsorted(quoted, j)) - 1
                if at >= 0 and quoted[at] >= i:
                    held[name] = (first_seq + int(quoted[at]), HeldRow(window, int(quoted[at])))
            if instrument.key in self.bar_instruments:
                for row, piece in bar_pieces(window, instrument, a, b, first_seq, self._grain):
                    pieces.append((row, instrument.key, piece))
        if pieces:
            if self._unbarred:  # ticks before these, in their order
                self.bars.add_many(self._unbarred)
                self._unbarred = []
            pieces.sort(key=lambda p: p[0])  # bars are made in the order their first tick came
            for _, (venue, symbol), piece in pieces:
                self.bars.add_summed(venue, symbol, piece, last_ms)

    def _quiet(self, tick: MarketTick) -> bool:
        """Take a tick that only moves the books and the bars in progress, and True; or False, with
        nothing done, for one that can make anything happen: a strategy hears ticks of its instrument,
        an order or algo works, it crosses into a bar grain, a post-trade check or an equity sample is
        due. What it does is what ``_on_tick`` would do for it, inline: the cost per tick of a run
        whose strategies hear only bars."""
        ts = tick.timestamp
        now = ts if ts > self.now else self.now
        if now >= self._next_pnl or now >= self._next_sample:
            return False
        key = (tick.venue, tick.symbol)
        if key in self._tick_instruments or self.book.open_count or self.desk.algos or self._queue:
            return False
        barred = key in self.bar_instruments
        if barred and ts >= self._next_advance:
            return False
        self.now = now
        records = self.records
        records.ticks += 1
        if records.first_ms is None:
            records.first_ms = ts
        records.last_ms = ts
        unmarked = self._unmarked  # _mark
        if key in unmarked:
            del unmarked[key]
        unmarked[key] = tick.price
        held = self._held.get(key)  # _hold_for_desk
        if held is None:
            held = self._held[key] = {}
        seen = (records.ticks, tick)
        held["last"] = seen
        if tick.bid is not None:
            held["bid"] = seen
        if tick.ask is not None:
            held["ask"] = seen
        if barred:  # _add_to_bars before the grain's crossing
            self._unbarred.append((tick, records.ticks, ts))
        return True

    def _on_tick(self, tick: MarketTick) -> None:
        if tick.timestamp > self.now:
            self.now = tick.timestamp
        records = self.records
        records.ticks += 1
        if records.first_ms is None:
            records.first_ms = tick.timestamp
        records.last_ms = tick.timestamp
        self._mark(tick)
        runners = self.by_instrument.get((tick.venue, tick.symbol))
        if runners is not None:
            # Live, the strategies and exeq hear of a tick at once: a strategy decides on it before it
            # hears of the fills the tick makes, and what it asks for reaches the venue after the tick.
            for runner in runners:
                if runner in self.tick_runners:
                    self._emit(runner, runner.on_tick(tick))
        if self.book.open_count or self.desk.algos:
            self._show_desk(tick)
        else:
            self._hold_for_desk(tick)
        self._drain()
        if runners is not None:
            # The bar the tick closes comes later, through the normalizer.
            for bar in self._add_to_bars(tick):
                for runner in self.by_instrument.get((bar.venue, bar.symbol), ()):
                    self._emit(runner, runner.on_bar(bar))
                self._drain()
        if self.now >= self._next_pnl:
            self._post_trade()
        if self.now >= self._next_sample:
            self._sample(self.now)

    def on_alt(self, datum: AltDatum) -> None:
        """An alternative datum, in event-time order with the ticks (``feed``): to every strategy that
        takes it (its runner keeps it to those of its symbol or their perpetual, and of the kinds it
        names, after its start and warm-up, as live), and what they ask for is carried out at once.
        The clock moves to its time; the checks and samples due then are made, as after a tick."""
        if datum.timestamp > self.now:
            self.now = datum.timestamp
        records = self.records
        records.alt += 1
        if records.first_alt_ms is None:
            records.first_alt_ms = datum.timestamp
        records.last_alt_ms = datum.timestamp
        for runner in self.alt_runners:
            self._emit(runner, runner.on_alt(datum))
        self._drain()
        if self.now >= self._next_pnl:
            self._post_trade()
        if self.now >= self._next_sample:
            self._sample(self.now)

    def finish(self) -> Records:
        """Stop the strategies (what they ask for in ``on_stop`` is carried out) and take the last
        equity sample, marked at the last prices."""
        for runner in self.runners.values():
            self._emit(runner, runner.stop())
        self._drain()
        self._sample(self.now, force=True)
        return self.records

    # Market data -------------------------------------------------------------------------------

    def _mark(self, tick: MarketTick) -> None:
        """Risk's reference prices and pnl's marks are read only by a decision and an equity sample: the
        last trade of each instrument is kept here, in the order of the last trades, and handed over
        before either (``_sync_marks``), which leaves them as every trade handed over at once would."""
        key = (tick.venue, tick.symbol)
        unmarked = self._unmarked
        if key in unmarked:
            del unmarked[key]
        unmarked[key] = tick.price

    def _sync_marks(self) -> None:
        if not self._unmarked:
            return
        unmarked, self._unmarked = self._unmarked, {}
        for (venue, symbol), price in unmarked.items():
            if self.prices.update(venue, symbol, price):
                self.pre.update_price(symbol, price)
            self.pnl.update_mark(venue, symbol, price)

    def _add_to_bars(self, tick: MarketTick) -> list[Bar]:
        """The bars the tick closes (the normalizer's rules, the event time for the arrival time)."""
        if (tick.venue, tick.symbol) not in self.bar_instruments:
            return []
        # Bars close only when a tick crosses into the next grain: the ticks before it are added in one
        # call (the same as one by one, ``BarBuilder.add_many``), at that crossing.
        self._unbarred.append((tick, self.records.ticks, tick.timestamp))
        if tick.timestamp < self._next_advance:
            return []
        self._next_advance = tick.timestamp - tick.timestamp % self._grain + self._grain
        return self._advance_bars(tick.timestamp)

    def _advance_bars(self, now: int) -> list[Bar]:
        if self._unbarred:
            self.bars.add_many(self._unbarred)
            self._unbarred = []
        closed = self.bars.advance(now).bars
        self.records.bars += len(closed)
        return closed

    # Orders: risk, the oms, exeq ---------------------------------------------------------------

    def _emit(self, runner: StrategyRunner, actions: Actions) -> None:
        if not actions:
            return
        if actions.error is not None:
            raise StrategyFailed(
                f"strategy {runner.name} ({runner.strategy.config.kind}) raised at {_iso(self.now)}: "
                f"{actions.error}"
            )
        self._queue.extend(i.message for i in actions.instructions)

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            message = queue.popleft()
            self._requests += 1  # the request's place in the ORDERS stream, as it were
            if isinstance(message, OrderRequest):
                self._submit(message)
            else:
                self._cancel(message)

    def _submit(self, request: OrderRequest) -> None:
        self._sync_marks()
        now = self.now
        decision = self.decider.decide(request, now, now)
        if decision.approved:
            venue = self._venue_without_choice(request.symbol, request.venue)
            if venue is None:
                reason = "no router in a backtest: the order must name its venue, or routing leave no choice"
                decision = msgspec.structs.replace(decision, approved=False, reason=reason)
            else:
                request = msgspec.structs.replace(request, venue=venue)
                decision = msgspec.structs.replace(decision, request=request)
        try:
            order = self.book.apply_decision(decision)
        except DuplicateOrderId as exc:
            self.records.anomalies.append(f"{_iso(now)} duplicate order id: {exc}")
            return
        if order is None:
            return
        self._state(order)
        if order.status == "NEW":
            self._route(route_new(request, now, direct=True))

    def _cancel(self, request: CancelRequest) -> None:
        self._sync_marks()
        now = self.now
        if is_replace(request) and request.replace_id is None:
            # Risk names a replace by its sender's id, else by its place in the ORDERS stream.
            request = msgspec.structs.replace(
                request, replace_id=f"{request.client_order_id}:{self._requests}"
            )
        try:
            if is_replace(request):
                decision = self.decider.decide_replace(request, now, now)
                changed = self.book.apply_replace(decision)
                approved = decision.approved
            else:
                one = self.book.apply_cancel(request)
                changed, approved = ([] if one is None else [one]), True
        except (UnknownOrder, IllegalTransition, MismatchedEvent) as exc:
            # The oms logs these (a late request is no fault) and changes nothing.
            self.records.anomalies.append(f"{_iso(now)} {request.client_order_id}: {exc}")
            return
        for order in changed:
            self._state(order)
        if changed and approved:
            order = changed[-1]
            route = route_replace if is_replace(request) else route_cancel
            self._route(route(order, order.venue or "", now, direct=True))

    def _venue_without_choice(self, symbol: str, requested: str | None) -> str | None:
        routing = self.settings.routing
        return venue_without_choice(
            symbol,
            requested,
            configured=routing.venues_for(symbol),
            fixed_venue=routing.fixed_venue,
            run=self.settings.exeq.venues,
        )

    def _route(self, message: Outgoing) -> None:
        self._catch_up_desk()
        self._desk(self.desk.on_orders([_venue_order.decode(message.payload)]))

    # While no order works anywhere, a tick can only move the venues' books, which hold the latest quote
    # of each instrument: the desk is shown, before the next order, the ticks that make its books what
    # every tick would have (the last with a bid, the last with an ask, the last), and skipped meanwhile.

    def _show_desk(self, tick: MarketTick) -> None:
        self._catch_up_desk()
        self._desk(self.desk.on_tick(tick))
        if self.desk.algos:
            self._desk(self.desk.drive_algos())

    def _hold_for_desk(self, tick: MarketTick) -> None:
        held = self._held.setdefault((tick.venue, tick.symbol), {})
        seen = (self.records.ticks, tick)  # in the order they came
        held["last"] = seen
        if tick.bid is not None:
            held["bid"] = seen
        if tick.ask is not None:
            held["ask"] = seen

    def _catch_up_desk(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, {}
        for ticks in held.values():
            for _, tick in sorted({seq: tick for seq, tick in ticks.values()}.items()):
                self._desk(self.desk.on_tick(tick if isinstance(tick, MarketTick) else tick.tick()))

    def _state(self, order: Order) -> None:
        self.records.orders.append(order)
        self.pre.update_order(order)
        runner = self.runners.get(order.strategy)
        if runner is not None:
            self._emit(runner, runner.on_order(order))

    # Reports: the oms, ptrc, pnl and the strategy ----------------------------------------------

    async def _collect(self, items: list[Outgoing]) -> None:
        self._published.extend(items)

    def _desk(self, call: Coroutine[Any, Any, Any]) -> None:
        run_now(call)
        while self._published:
            out, self._published = self._published, []
            for item in out:
                if item.subject.startswith("exec.report."):
                    self._report(_report.decode(item.payload))

    def _report(self, report: ExecutionReport) -> None:
        order: Order | None = None
        try:
            order = self.book.apply_report(report)
        except (UnknownOrder, IllegalTransition, MismatchedEvent) as exc:
            self.records.anomalies.append(f"{_iso(self.now)} report {report.exec_id}: {exc}")
        if report.kind == "fill":
            self._fill(report)
        if order is not None:
            self._state(order)

    def _fill(self, report: ExecutionReport) -> None:
        change = self.positions.apply(report)
        if change is None:
            return
        for position in change:
            self.pre.update_position(position)
            self.pnl.update_position(position)
        self.records.fills.append(
            {
                "timestamp": report.timestamp,
                "exec_id": report.exec_id,
                "client_order_id": report.client_order_id,
                "strategy": report.strategy,
                "account": report.account,
                "venue": report.venue,
                "symbol": report.symbol,
                "side": report.side,
                "quantity": report.last_quantity,
                "price": report.last_price,
                "fee": report.fee,
                "liquidity": report.liquidity,
                "position": change.strategy.quantity,
                "realized_pnl": change.strategy.realized_pnl,
            }
        )
        runner = self.runners.get(report.strategy)
        if runner is not None:
            self._emit(runner, runner.on_fill(report))

    # Post-trade risk ---------------------------------------------------------------------------

    def _post_trade(self) -> None:
        """The total PnL every ``pnl.snapshot_interval_s`` of event time to the post-trade limits; a
        breach switches trading to reduce-only for the rest of the run (only an operator switches back),
        for risk's checks and every strategy's context."""
        now = self.now
        self._next_pnl = now - now % self._pnl_step + self._pnl_step
        self._sync_marks()
        breach = self.post.on_pnl(self.pnl.total_snapshot(now))
        if breach is None:
            return
        self.trading = breach
        self.pre.set_state(breach)
        for runner in self.runners.values():
            runner.ctx.set_trading_state(breach)
        self.records.trading.append({"timestamp": now, "mode": breach.mode, "reason": breach.reason})

    # Equity ------------------------------------------------------------------------------------

    def _sample(self, now: int, *, force: bool = False) -> None:
        """Equity per strategy, and per strategy and symbol, marked to the last trade of each position's
        quote venue (as the pnl service marks it)."""
        if not force and now < self._next_sample:
            return
        self._sync_marks()
        step = self.equity_interval_ms
        self._next_sample = now - now % step + step
        rows = self.records.equity
        if force:  # the last sample is taken again, after the strategies stopped
            rows[:] = [row for row in rows if row["timestamp"] != now]
        for name in self.runners:
            mine = self.positions.strategy_positions(name)
            rows.append(_equity_row(name, "", pnl_snapshot(name, mine, self.pnl.mark_of, now), mine))
            for symbol in self.symbols:
                of_symbol = [p for p in mine if p.symbol == symbol]
                snap = pnl_snapshot(name, of_symbol, self.pnl.mark_of, now)
                rows.append(_equity_row(name, symbol, snap, of_symbol))


def feed(engine: BacktestEngine, ticks: Iterable[MarketTick], alt: Iterable[AltDatum] = ()) -> None:
    """The ticks and the alternative data (each in time order) to the engine, merged in event-time
    order. The tie rule: a datum comes after every tick of its millisecond (and before the next
    millisecond's): a strategy hears of it once the market of that moment is known, and a tick never
    waits for data of the same instant. Data after the last tick still come, before the stop."""
    on_tick = engine.on_tick
    data: Iterator[AltDatum] = iter(alt)
    pending = next(data, None)
    if pending is None:
        for tick in ticks:
            on_tick(tick)
        return
    on_alt = engine.on_alt
    due = pending.timestamp
    for tick in ticks:
        if tick.timestamp > due:
            while pending is not None and pending.timestamp < tick.timestamp:
                on_alt(pending)
                pending = next(data, None)
            due = 1 << 62 if pending is None else pending.timestamp  # none left: the cheap test only
        on_tick(tick)
    while pending is not None:
        on_alt(pending)
        pending = next(data, None)


def _hears_bars(runner: StrategyRunner) -> bool:
    """Whether bars can change what the strategy does: it has ``on_bar``, or warms up on bars."""
    return type(runner.strategy).on_bar is not Strategy.on_bar or bool(runner.warmup_wanted())


def _equity_row(strategy: str, symbol: str, snapshot: Any, positions: list[Any]) -> dict[str, Any]:
    return {
        "timestamp": snapshot.timestamp,
        "strategy": strategy,
        "symbol": symbol,
        "position": sum((p.quantity for p in positions), ZERO) if symbol else None,
        "realized": snapshot.realized,
        "unrealized": snapshot.unrealized,
        "fees": snapshot.fees,
        "equity": snapshot.total,
        "gross_exposure": snapshot.gross_exposure,
    }


def _iso(ms: int) -> str:
    from trader.backtest.data import _iso as iso

    return iso(ms)
