"""Strategies: the interface (``base``), the built-ins, and the loader of the user's own.

A strategy's ``kind`` in its ``StrategyConfig`` is a built-in name (``BUILTINS``) or a
``package.module:Class`` path to a ``Strategy`` subclass importable by the service.

Warm-up: a strategy that needs history declares it by overriding ``Strategy.warmup`` to return
``Warmup(timeframe, bars)`` items (``ma_cross``: ``slow`` bars of its timeframe); at every start the
service feeds those last closed bars of its symbols to ``on_bar`` before any live data, with
``ctx.warming_up`` true and every order asked for dropped (``trader.strategies.warmup``). The
configuration's ``warmup_bars`` overrides the number (0 turns it off).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from trader.config import StrategyConfig
from trader.marketdata.decode import SYMBOL_PATTERN
from trader.strategies.base import Strategy, StrategyConfigError, StrategyContext, Warmup
from trader.strategies.context import Instruction, OrderContext, wall_clock_ms
from trader.strategies.runner import Actions, StrategyRunner

BUILTINS: dict[str, str] = {
    "ma_cross": "trader.strategies.ma_cross:MaCross",
    "market_maker": "trader.strategies.market_maker:MarketMaker",
}


def load_strategy_class(kind: str) -> type[Strategy]:
    """The class a ``kind`` names, or ``StrategyConfigError`` saying exactly what is wrong."""
    path = BUILTINS.get(kind, kind)
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise StrategyConfigError(
            f"unknown strategy kind {kind!r}: use a built-in ({', '.join(sorted(BUILTINS))}) "
            "or a 'package.module:Class' path"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyConfigError(f"strategy kind {kind!r}: cannot import {module_name}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise StrategyConfigError(
            f"strategy kind {kind!r}: {module_name} has no Strategy subclass named {class_name}"
        )
    return cls


def build_runner(config: StrategyConfig, clock: Callable[[], int] = wall_clock_ms) -> StrategyRunner:
    """A ready runner for one configured strategy; ``StrategyConfigError`` (or the strategy's own
    exception) when it cannot run."""
    if not config.symbols:
        raise StrategyConfigError(f"strategy {config.name}: no symbols")
    for symbol in config.symbols:
        if not SYMBOL_PATTERN.match(symbol):  # a subject token: market.tick.<venue>.<SYMBOL>
            raise StrategyConfigError(f"strategy {config.name}: {symbol!r} is not a symbol like BTCUSDT")
    cls = load_strategy_class(config.kind)
    ctx = OrderContext(config, clock)
    return StrategyRunner(cls(config, ctx), ctx)


__all__ = [
    "BUILTINS",
    "Actions",
    "Instruction",
    "OrderContext",
    "Strategy",
    "StrategyConfigError",
    "StrategyContext",
    "StrategyRunner",
    "Warmup",
    "build_runner",
    "load_strategy_class",
]
