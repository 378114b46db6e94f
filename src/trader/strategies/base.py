"""The interface a strategy implements, and the context it acts through.

A strategy is pure: it never touches NATS. The strategy service feeds it market data and the news of
its own orders through the callbacks below, and sends what it asks for through its context. This is
what makes a strategy testable by calling its callbacks with synthetic bars and ticks.

A minimal strategy::

    class BuyTheDip(Strategy):
        def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
            super().__init__(config, ctx)
            self.quantity = self.param_decimal("quantity", positive=True)

        def on_bar(self, bar: Bar) -> None:
            if bar.close < bar.open and not self.ctx.open_orders(bar.symbol):
                self.ctx.submit("buy", bar.symbol, self.quantity)

configured with ``kind: "my_package.my_module:BuyTheDip"`` (``trader.strategies.load_strategy_class``).

Parameters: a strategy reads its ``params`` in ``__init__`` (with ``param_str``/``param_decimal``/
``param_int``/``param_bool``, or from ``self.config.params`` directly: every key asked for counts, even
one absent). A configured parameter it did not ask for there is refused when it is loaded
(``check_params``: a typo would otherwise leave the default in force), unless the strategy names it in
``other_params`` (for one it reads only later).

Warm-up: a strategy that needs history to act on its first live bar declares it by overriding
``warmup`` (for example ``[Warmup("1m", 20)]``: the last 20 closed 1m bars of each of its symbols). At
every start the service feeds those bars to ``on_bar`` after ``on_start`` and before any live data, with
``ctx.warming_up`` true: nothing asked for meanwhile is sent (``submit`` returns an id that is never
sent, ``cancel`` and ``replace`` return ``False``; each is counted). A strategy should only update its
indicators then, and trade on live bars. ``warmup_bars`` in the configuration overrides the number of
bars (0: no warm-up).
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import structlog

from trader.config import StrategyConfig
from trader.messages import (
    Algo,
    AltDatum,
    Bar,
    ExecutionReport,
    Features,
    MarketTick,
    Order,
    OrderType,
    Side,
    TimeInForce,
    TradingMode,
)


class StrategyConfigError(ValueError):
    """A strategy's configuration cannot run: a missing or malformed parameter, an unknown kind."""


class AskedParams(dict[str, str]):
    """A strategy's parameters that remember every key asked for (``get``, ``[]``, ``in``), present
    or not: ``Strategy.check_params`` refuses the configured keys never asked for."""

    def __init__(self, params: dict[str, str]) -> None:
        super().__init__(params)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


@dataclass(frozen=True, slots=True)
class Warmup:
    """History a strategy needs at start: the last ``bars`` closed bars of ``timeframe`` (``1s``,
    ``1m``, ...) of each of its symbols."""

    timeframe: str
    bars: int


class StrategyContext(ABC):
    """What a strategy acts through. Every call is synchronous: what it asks for is sent by the
    service once the callback returns, in the order it was asked."""

    @property
    @abstractmethod
    def now_ms(self) -> int:
        """The current time, epoch milliseconds UTC."""

    @property
    @abstractmethod
    def trading_mode(self) -> TradingMode:
        """The shared trading switch: ``active``, ``reduce_only`` or ``halted``."""

    @property
    def warming_up(self) -> bool:
        """True while history is being fed (see ``Strategy.warmup``): nothing asked for is sent."""
        return False

    @abstractmethod
    def submit(
        self,
        side: Side,
        symbol: str,
        quantity: Decimal,
        *,
        type: OrderType = "market",
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        tif: TimeInForce = "GTC",
        post_only: bool = False,
        reduce_only: bool = False,
        venue: str | None = None,
        algo: Algo | None = None,
        algo_params: dict[str, str] | None = None,
    ) -> str:
        """Ask for a new order; returns its ``client_order_id``. The order is open (status NEW) from
        now on, until its state says otherwise. While trading is halted the request is not sent: the
        order comes back at once to ``on_order`` as REJECTED with the reason."""

    @abstractmethod
    def cancel(self, client_order_id: str, reason: str = "requested") -> bool:
        """Ask to cancel an open order; ``False`` (and nothing sent) when its state does not allow it."""

    @abstractmethod
    def replace(
        self, client_order_id: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> bool:
        """Cancel-replace a working order with a new total quantity and/or limit price; ``False`` (and
        nothing sent) when its state does not allow it or trading is halted."""

    @abstractmethod
    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The strategy's orders not yet final, oldest first. An order with a cancel or replace asked
        for shows PENDING_CANCEL until the oms answers."""

    @abstractmethod
    def order(self, client_order_id: str) -> Order | None:
        """The latest known state of one of the strategy's orders."""

    @abstractmethod
    def position(self, symbol: str) -> Decimal:
        """The strategy's signed net quantity in ``symbol`` (positive long), from its own fills, over
        all venues; a fill the oms has confirmed counts even before its report arrives."""


class Strategy:
    """A strategy: constructed with its configuration and its context, then driven by callbacks.

    Every callback is optional. ``on_order`` and ``on_fill`` only ever see the strategy's own orders;
    ``on_tick`` and ``on_bar`` only its symbols (``on_bar`` only closed bars, of every timeframe).
    ``self.log`` is a structured logger bound to the strategy's name. An exception in a callback is
    logged and counted by the service, which goes on."""

    # Parameters the strategy reads only after ``__init__``: ``check_params`` does not refuse them.
    other_params: ClassVar[Collection[str]] = ()
    # The kinds of alternative data ``on_alt`` takes (``funding``, ``open_interest``, ...); empty: every
    # kind. The others never reach it, live or in a backtest, and a backtest reads only these kinds.
    alt_kinds: ClassVar[Collection[str]] = ()

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        # The same object the subclass was given: what it asks of ``config.params`` counts too.
        config.params = AskedParams(config.params)
        self.config = config
        self.ctx = ctx
        self.log = structlog.get_logger("strategy").bind(strategy=config.name)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def symbols(self) -> list[str]:
        return self.config.symbols

    def warmup(self) -> Sequence[Warmup]:
        """The history to feed to ``on_bar`` (with ``ctx.warming_up`` true) after ``on_start`` and
        before live data; none by default."""
        return ()

    def on_start(self) -> None:
        """Called once the strategy's open orders and position are rebuilt, before any market data
        (the warm-up bars come after it)."""

    def on_stop(self) -> None:
        """Called when the service stops; what the strategy asks for here is still sent."""

    def on_tick(self, tick: MarketTick) -> None:
        """A trade or quote of one of the strategy's symbols."""

    def on_bar(self, bar: Bar) -> None:
        """A closed bar of one of the strategy's symbols (any timeframe: check ``bar.timeframe``).
        A bar may come again, amended, with the same ``start``."""

    def on_alt(self, datum: AltDatum) -> None:
        """Alternative data about one of the strategy's symbols or its perpetual (``BTCUSDT`` hears of
        ``BTCUSDT-PERP`` too), from any venue (``datum.source``): funding, mark and index prices,
        open interest, liquidations (``trader.messages.AltDatum``); only the kinds in ``alt_kinds``
        when it names some. Only after ``on_start`` and the warm-up, like ticks (none of the history);
        the service subscribes only when a strategy overrides this. A backtest feeds it the lake's
        ``alt_data`` in event time (docs/backtest.md)."""

    def on_features(self, features: Features) -> None:
        """The features of a closed bar of one of the strategy's symbols on its data venue, from
        feature-eng (``features.values`` by column: ``sma_20``, ``rsi_14``, ...; any timeframe: check
        ``features.timeframe``), computed from that bar and those before it only. The same warm-up as
        bars: for each ``Warmup(timeframe, n)`` declared, the features of the last n bars of that
        timeframe come (``ctx.warming_up`` true) after the warm-up bars, then live ones. The service
        subscribes only when a strategy overrides this."""

    def on_fill(self, report: ExecutionReport) -> None:
        """A fill of one of the strategy's orders (``ctx.position`` already includes it)."""

    def on_order(self, order: Order) -> None:
        """A change of state of one of the strategy's orders; ``order.reason`` says why a REJECTED,
        CANCELED or EXPIRED order ended (for a risk denial: the check and the numbers)."""

    def describe(self) -> dict[str, Any]:
        """What the strategy wants shown in the service's /health details (JSON values)."""
        return {}

    # Parameters: strings in the configuration, parsed exactly ------------------------------------

    def check_params(self) -> None:
        """``StrategyConfigError`` naming each configured parameter the strategy has not asked for
        since it was given its configuration (nor named in ``other_params``): a misspelt one would
        leave its default in force unseen. The strategy runner calls it once the strategy is built."""
        params = self.config.params
        known = (params.asked if isinstance(params, AskedParams) else set(params)) | set(self.other_params)
        unknown = sorted(set(self.config.params) - known)
        if not unknown:
            return
        problems = []
        for key in unknown:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            problems.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        reads = ", ".join(sorted(known)) or "none"
        raise StrategyConfigError(
            f"strategy {self.name} ({self.config.kind}): unknown parameter {', '.join(problems)}; "
            f"it reads: {reads}"
        )

    def param_str(self, key: str, default: str | None = None) -> str:
        value = self.config.params.get(key, default)
        if value is None:
            raise StrategyConfigError(f"strategy {self.name}: parameter {key!r} is required")
        return value

    def param_decimal(self, key: str, default: str | None = None, *, positive: bool = False) -> Decimal:
        text = self.param_str(key, default)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise StrategyConfigError(f"strategy {self.name}: {key}={text!r} is not a decimal") from None
        if not value.is_finite() or (positive and value <= 0):
            wanted = "a positive decimal" if positive else "a finite decimal"
            raise StrategyConfigError(f"strategy {self.name}: {key}={text!r} is not {wanted}")
        return value

    def param_int(self, key: str, default: str | None = None, *, minimum: int | None = None) -> int:
        text = self.param_str(key, default)
        try:
            value = int(text)
        except ValueError:
            raise StrategyConfigError(f"strategy {self.name}: {key}={text!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise StrategyConfigError(f"strategy {self.name}: {key}={value} is below {minimum}")
        return value

    def param_bool(self, key: str, default: bool = False) -> bool:
        text = self.config.params.get(key)
        if text is None:
            return default
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise StrategyConfigError(f"strategy {self.name}: {key}={text!r} is not true or false")
