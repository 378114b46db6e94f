"""Forgetting ended orders after a retention, so that what the oms and exeq hold follows a recent window.

An ended order changes no more. A service keeps it a while (late events about it are still recognised),
then only its identity, so that a repeat stays a repeat, until ``IDS_WINDOW_MS`` after it ended (or a
retention after it left memory, if longer: ``ids_cutoff``; a repeat is a second stored copy of a
message, which a publisher retrying past JetStream's duplicate window can store, minutes after the
first, never hours), then nothing; the streams keep everything. ``Ended`` holds the
ended ones in the order they ended; ``Forgetting`` is a service's side of it: the cutoff from its
retention setting, a few at a time (a pass over thousands would stall the order path), and a log line
at most once a minute.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

FORGET_BATCH = 200  # ended orders a service forgets at a time, at most
# How long after a record ended its ids are kept (the oms's and exeq's forgotten ids, by the wall clock;
# ptrc's, the strategies' and the router's, by the fills', orders' and reports' own time).
IDS_WINDOW_MS = 2 * 3600 * 1000
LOG_INTERVAL_S = 60.0


class Ended(Generic[K]):
    """Keys of ended records by when they ended, taken oldest first whatever the order they were told
    in (a heap, with what it holds in a dict: a key discarded or moved leaves a stale heap entry,
    passed over when it comes up)."""

    def __init__(self, ended: Iterable[tuple[K, int]] = ()) -> None:
        self._at: dict[K, int] = {}
        for key, at_ms in ended:
            self._at[key] = at_ms
        self._count = itertools.count()
        self._heap: list[tuple[int, int, K]] = [(at, next(self._count), key) for key, at in self._at.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._at)

    def add(self, key: K, at_ms: int) -> None:
        """``key`` ended at ``at_ms`` (the first time it is told)."""
        if key not in self._at:
            self.keep(key, at_ms)

    def discard(self, key: K) -> None:
        """``key`` is no longer held (forgotten otherwise)."""
        self._at.pop(key, None)

    def keep(self, key: K, at_ms: int) -> None:
        """Back in line, as if it had ended at ``at_ms``: not forgotten yet."""
        self._at[key] = at_ms
        heapq.heappush(self._heap, (at_ms, next(self._count), key))

    def take(self, before_ms: int, limit: int | None = None) -> Iterator[K]:
        """Remove and give the keys that ended before ``before_ms``, oldest first, ``limit`` at most."""
        for key, _ in self.take_items(before_ms, limit):
            yield key

    def take_items(self, before_ms: int, limit: int | None = None) -> Iterator[tuple[K, int]]:
        """``take``, each key with when it ended."""
        heap, at, taken = self._heap, self._at, 0
        while heap and (limit is None or taken < limit):
            ended_ms, _, key = heap[0]
            if at.get(key) != ended_ms:
                heapq.heappop(heap)  # discarded, or moved: a stale entry
                continue
            if ended_ms >= before_ms:
                return
            heapq.heappop(heap)
            del at[key]
            taken += 1
            yield key, ended_ms
        if len(heap) > 2 * len(at) + 1024:  # mostly stale: rebuilt from what is held
            self._heap = [(ms, next(self._count), key) for key, ms in at.items()]
            heapq.heapify(self._heap)

    def items(self) -> list[tuple[K, int]]:
        """Every key held with when it ended, oldest first."""
        return sorted(self._at.items(), key=lambda item: item[1])


def ids_cutoff(cutoff_ms: int | None, retention_s: float) -> int | None:
    """Ids of records that ended before this are dropped (``cutoff_ms``: what ended before it leaves
    memory, a retention ago): ``IDS_WINDOW_MS`` after they ended, or a retention after they left memory
    when that is longer. The window is the bus's (how late a copy of a message can be stored), not the
    retention's: a short retention keeps the ids as long."""
    if cutoff_ms is None or not retention_s:
        return None
    retention_ms = int(retention_s * 1000)
    return cutoff_ms - max(retention_ms, IDS_WINDOW_MS - retention_ms)


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

    def ids_cutoff_ms(self, cutoff_ms: int | None = None) -> int | None:
        """The ids of what ended before this leave too (a retention after the first); None: never."""
        cutoff = self.cutoff_ms() if cutoff_ms is None else cutoff_ms
        return ids_cutoff(cutoff, self.retention_s)

    def __call__(self, limit: int | None = None) -> None:
        cutoff = self.cutoff_ms()
        if cutoff is None:
            return
        self._untold += self._forget(cutoff, limit)
        if self._untold and time.monotonic() >= self._next_log:
            self._log.info(self._event, orders=self._untold, held=self._held())
            self._untold, self._next_log = 0, time.monotonic() + LOG_INTERVAL_S
