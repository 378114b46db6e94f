"""Forgetting ended orders after a retention, so that what the oms and exeq hold follows a recent window.

An ended order changes no more. A service keeps it a while (late events about it are still recognised),
then only its identity, so that a repeat stays a repeat; the streams keep everything. ``Ended`` holds the
ended ones in the order they ended; ``Forgetting`` is a service's side of it: the cutoff from its
retention setting, a few at a time (a pass over thousands would stall the order path), and a log line
at most once a minute.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

FORGET_BATCH = 200  # ended orders a service forgets at a time, at most
LOG_INTERVAL_S = 60.0


class Ended(Generic[K]):
    """Keys of ended records by when they ended, oldest first. (An ``OrderedDict``: a dict's front
    slows down as items are popped from it.)"""

    def __init__(self, ended: Iterable[tuple[K, int]] = ()) -> None:
        self._at: OrderedDict[K, int] = OrderedDict(sorted(ended, key=lambda item: item[1]))

    def __len__(self) -> int:
        return len(self._at)

    def add(self, key: K, at_ms: int) -> None:
        """``key`` ended at ``at_ms`` (the first time it is told)."""
        self._at.setdefault(key, at_ms)

    def discard(self, key: K) -> None:
        """``key`` is no longer held (forgotten otherwise)."""
        self._at.pop(key, None)

    def keep(self, key: K, at_ms: int) -> None:
        """Back in line, as if it had ended at ``at_ms``: not forgotten yet."""
        self._at[key] = at_ms

    def take(self, before_ms: int, limit: int | None = None) -> Iterator[K]:
        """Remove and give the keys that ended before ``before_ms``, oldest first, ``limit`` at most."""
        at, taken = self._at, 0
        while at and (limit is None or taken < limit):
            key = next(iter(at))
            if at[key] >= before_ms:
                return
            del at[key]
            taken += 1
            yield key


class Forgetting:
    """A service forgetting what ended more than ``retention_s`` ago (0: never) through ``forget``
    (cutoff in epoch ms, limit -> how many were forgotten)."""

    def __init__(
        self,
        retention_s: float,
        forget: Callable[[int, int | None], int],
        held: Callable[[], int],
        log: Any,
        event: str,
    ) -> None:
        self.retention_s, self._forget, self._held, self._log, self._event = (
            retention_s,
            forget,
            held,
            log,
            event,
        )
        self._untold = 0
        self._next_log = 0.0

    def cutoff_ms(self) -> int | None:
        """What ended before this is to be forgotten now; None: nothing ever is."""
        if not self.retention_s:
            return None
        return time.time_ns() // 1_000_000 - int(self.retention_s * 1000)

    def __call__(self, limit: int | None = None) -> None:
        cutoff = self.cutoff_ms()
        if cutoff is None:
            return
        self._untold += self._forget(cutoff, limit)
        if self._untold and time.monotonic() >= self._next_log:
            self._log.info(self._event, orders=self._untold, held=self._held())
            self._untold, self._next_log = 0, time.monotonic() + LOG_INTERVAL_S
