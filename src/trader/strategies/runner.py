"""Drives one strategy: events in, the messages to publish out. Pure, like the strategy itself.

The runner routes each event to the strategy only when it concerns it (its symbols on its data venue,
its orders: market data of any other venue, the mock feed's for a strategy on live data, is refused),
updates the context first (so the strategy sees its position and orders already changed), keeps a
failing callback from taking the service down, and hands back what the strategy asked for.
Before ``start`` the events only rebuild the context: the strategy hears of nothing from the past
but the bars of its warm-up (``warm_up``), fed after ``start`` with nothing it asks for sent.
Until it has had the bars it declares (``Strategy.warmup``), from the warm-up and live, it is warming
up, and says so (``warming_up``: "warming up: 7 of 20 bars of 1m"), in ``describe`` and the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from trader.messages import AltDatum, Bar, ExecutionReport, Features, MarketTick, Order
from trader.strategies.base import Strategy, Warmup
from trader.strategies.context import Instruction, OrderContext, data_venue_of
from trader.strategies.warmup import warmup_subjects

# A strategy that answers every halted (locally rejected) submit with another submit would loop:
# its notices are delivered this many rounds per event, the rest dropped with a warning.
MAX_NOTICE_ROUNDS = 3


@dataclass
class Actions:
    """What one event made a strategy do."""

    instructions: list[Instruction] = field(default_factory=list)
    suppressed: list[Order] = field(default_factory=list)  # submits not sent: trading halted
    error: str | None = None  # a callback raised: the exception, for the log

    def __bool__(self) -> bool:
        return bool(self.instructions or self.suppressed or self.error)


class StrategyRunner:
    def __init__(self, strategy: Strategy, ctx: OrderContext) -> None:
        strategy.check_params()  # a parameter it does not read is a typo: refused before it runs
        self.strategy = strategy
        self.ctx = ctx
        self.name = strategy.name
        self.symbols = frozenset(strategy.symbols)
        self.data_venue = data_venue_of(strategy.config)
        self.foreign_data = 0  # ticks and bars of another venue, refused
        self.started = False
        self.errors = 0
        self.events = 0
        self.warmed_up = False
        self.warmup_bars = 0
        self.warmup_features = 0
        self.warmup_last: dict[str, int] = {}  # "<tf>.<SYMBOL>": start of the last warm-up bar
        self.live_bars = 0
        self.log = structlog.get_logger("strategy").bind(strategy=self.name)
        self._needed: dict[tuple[str, str], int] | None = None  # (tf, symbol): bars the strategy declares
        self._had: dict[tuple[str, str], tuple[int, int]] = {}  # (tf, symbol): (bars had, last start)

    def start(self) -> Actions:
        self.started = True
        return self._call(self.strategy.on_start)

    def stop(self) -> Actions:
        if not self.started:
            return Actions()
        self.started = False
        return self._call(self.strategy.on_stop)

    def warmup_wanted(self) -> dict[str, int]:
        """Bars wanted per ``market.bar.<tf>.<venue>.<SYMBOL>`` subject (``Strategy.warmup``, the
        configuration's ``warmup_bars``); a strategy that fails to say runs without warm-up (logged)."""
        try:
            return warmup_subjects(self.strategy.config, self.strategy.warmup())
        except Exception:
            self.errors += 1
            self.log.exception("strategy.warmup_declaration_failed")
            return {}

    def warm_up(self, bars: Iterable[Bar], features: Iterable[Features] = ()) -> Actions:
        """History through ``on_bar``, then the features of those bars through ``on_features``, once,
        after ``start``: the context drops (and counts) whatever the strategy asks for meanwhile, so
        only errors come back."""
        if not self.started or self.warmed_up:
            return Actions()
        actions = Actions()
        self.ctx.set_warming_up(True)
        try:
            for bar in bars:
                if bar.closed and self._mine(bar):
                    self._count(bar)
                    actions.error = self._call(self.strategy.on_bar, bar).error or actions.error
                    self.warmup_bars += 1
                    self.warmup_last[f"{bar.timeframe}.{bar.symbol}"] = bar.start
            for item in features:
                if self._mine(item):
                    actions.error = self._call(self.strategy.on_features, item).error or actions.error
                    self.warmup_features += 1
        finally:
            self.ctx.set_warming_up(False)
        self.warmed_up = True
        progress = self.warming_up()
        if progress is not None:  # too little history (a first start): the live bars complete it
            self.log.info("strategy.warming_up", progress=progress)
        return actions

    def on_tick(self, tick: MarketTick) -> Actions:
        if not self.started or not self._mine(tick):
            return Actions()
        return self._call(self.strategy.on_tick, tick)

    def wants_features(self) -> bool:
        """Whether the strategy takes features (overrides ``on_features``)."""
        return type(self.strategy).on_features is not Strategy.on_features

    def on_features(self, features: Features) -> Actions:
        """Live features of a bar of one of its symbols on its data venue, once started."""
        if not self.started or not self._mine(features):
            return Actions()
        return self._call(self.strategy.on_features, features)

    def on_alt(self, datum: AltDatum) -> Actions:
        """Live alternative data of one of its symbols (or their perpetuals), once started and warmed up."""
        if not self.started or not self.warmed_up or datum.symbol is None:
            return Actions()
        if datum.symbol not in self.symbols and datum.symbol.removesuffix("-PERP") not in self.symbols:
            return Actions()
        kinds = self.strategy.alt_kinds
        if kinds and datum.kind not in kinds:
            return Actions()
        return self._call(self.strategy.on_alt, datum)

    def on_bar(self, bar: Bar) -> Actions:
        if not self.started or not bar.closed or not self._mine(bar):
            return Actions()
        self.live_bars += 1
        before = self.warming_up()
        self._count(bar)
        if before is not None:
            after = self.warming_up()
            if after is None:
                self.log.info("strategy.warm_up_complete", bars=self.needed())
            elif after != before:
                self.log.info("strategy.warming_up", progress=after)
        return self._call(self.strategy.on_bar, bar)

    def needed(self) -> dict[str, int]:
        """The bars the strategy declares it needs before it can decide, per ``<tf>.<SYMBOL>``."""
        return {f"{tf}.{symbol}": bars for (tf, symbol), bars in self._needs().items()}

    def warming_up(self) -> str | None:
        """ "warming up: 7 of 20 bars of 1m" (and the symbol, when it has several) while it has had
        fewer bars than it declares for some symbol and timeframe; None once it has them all."""
        short = [
            (self._had.get(key, (0, 0))[0], bars, key)
            for key, bars in self._needs().items()
            if self._had.get(key, (0, 0))[0] < bars
        ]
        if not short:
            return None
        had, bars, (timeframe, symbol) = min(short, key=lambda s: s[0] / s[1])
        where = f" ({symbol})" if len(self.symbols) > 1 else ""
        return f"warming up: {had} of {bars} bars of {timeframe}{where}"

    def _needs(self) -> dict[tuple[str, str], int]:
        if self._needed is None:
            try:
                declared: list[Warmup] = list(self.strategy.warmup())
            except Exception:  # said by warmup_wanted, which the service calls first
                declared = []
            self._needed = {}
            for need in declared:
                for symbol in self.symbols:
                    key = (need.timeframe, symbol)
                    self._needed[key] = max(self._needed.get(key, 0), need.bars)
        return self._needed

    def _count(self, bar: Bar) -> None:
        """One more bar of its (timeframe, symbol), unless it is the last one again (amended)."""
        key = (bar.timeframe, bar.symbol)
        had, last_start = self._had.get(key, (0, -1))
        if bar.start > last_start:
            self._had[key] = (had + 1, bar.start)

    def on_order(self, order: Order) -> Actions:
        if order.strategy != self.name:
            return Actions()
        changed = self.ctx.apply_order(order)
        if changed is None or not self.started:
            return Actions()
        return self._call(self.strategy.on_order, changed)

    def on_fill(self, report: ExecutionReport) -> Actions:
        if report.strategy != self.name:
            return Actions()
        try:
            new = self.ctx.apply_fill(report)
        except ValueError as exc:  # a "fill" without a price or quantity: nothing to apply
            self.errors += 1
            return Actions(error=f"fill {report.exec_id} not applied: {exc}")
        if not new or not self.started:
            return Actions()
        return self._call(self.strategy.on_fill, report)

    def _mine(self, data: MarketTick | Bar | Features) -> bool:
        """Of one of the strategy's symbols on its data venue: an instrument is a symbol and a venue."""
        if data.symbol not in self.symbols:
            return False
        if data.venue != self.data_venue:
            self.foreign_data += 1
            return False
        return True

    def describe(self) -> dict[str, Any]:
        ctx = self.ctx
        rejection = ctx.last_rejection
        try:
            state = self.strategy.describe()
        except Exception as exc:  # the health endpoint must answer whatever the strategy does
            state = {"describe_failed": repr(exc)}
        return {
            "kind": self.strategy.config.kind,
            "symbols": sorted(self.symbols),
            "data_venue": self.data_venue,
            "foreign_data_refused": self.foreign_data,  # ticks and bars of another venue
            "started": self.started,
            "open_orders": len(ctx.open_orders()),
            "positions": {symbol: str(q) for symbol, q in ctx.positions().items()},
            "submitted": ctx.submitted,
            "suppressed": ctx.suppressed,
            "events": self.events,
            "errors": self.errors,
            "warmup": {
                "done": self.warmed_up,
                "bars": self.warmup_bars,
                "orders_dropped": ctx.warmup_dropped,
                "last_start": dict(self.warmup_last),
            },
            "live_bars": self.live_bars,
            "warming_up": self.warming_up(),
            "last_rejection": None
            if rejection is None
            else {"client_order_id": rejection.client_order_id, "reason": rejection.reason},
            "state": state,
        }

    def _call(self, callback: Callable[..., None], *args: object) -> Actions:
        self.events += 1
        actions = Actions()
        self._guarded(actions, callback, *args)
        for _ in range(MAX_NOTICE_ROUNDS):
            notices = self.ctx.take_notices()
            if not notices:
                break
            for order in notices:
                self._guarded(actions, self.strategy.on_order, order)
        else:
            dropped = self.ctx.take_notices()
            if dropped:
                self.log.warning("strategy.notices_dropped", count=len(dropped))
        actions.instructions = self.ctx.take_instructions()
        actions.suppressed = self.ctx.take_suppressed()
        return actions

    def _guarded(self, actions: Actions, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception as exc:
            # What the strategy asked for before it raised is already in the context's books, so it
            # is still sent: dropping it would leave orders the strategy believes are in flight.
            self.errors += 1
            actions.error = f"{callback.__name__}: {exc!r}"
            self.log.exception("strategy.callback_failed", callback=callback.__name__)
