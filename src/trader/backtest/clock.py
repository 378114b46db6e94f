"""The simulated clock of a backtest: the time of the event being processed, never the wall clock.

Every component the backtest reuses that asks for the time (a strategy's context, the execution desk's
algos, risk's rate limit) is given ``SimClock.now`` instead of the wall clock, so a run depends on its
inputs alone. The clock only moves forward: a tick stamped before the latest one (the lake keeps
ticks as the feed stamped them) does not turn it back.
"""

from __future__ import annotations


class SimClock:
    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def now(self) -> int:
        return self.ms

    def advance_to(self, ms: int) -> None:
        if ms > self.ms:
            self.ms = ms
