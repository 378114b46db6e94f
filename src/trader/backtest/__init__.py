"""Backtests from the lake with the components paper trading runs (docs/backtest.md).

``data``: ticks of ``market_ticks`` in time order, memory bounded; ``engine``: the strategies, risk, the
order book, exeq's desk with its paper venues and the position and PnL books on a simulated clock;
``report``: the figures and the chart; ``run``: one run to its directory, and sweeps.

The simulated clock is the engine's ``now``: the time of the tick being processed, never turned back,
given to every component that asks for the time (a strategy's context, the desk's algos, risk), so a
run depends on its inputs alone.
"""
