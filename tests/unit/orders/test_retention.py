"""Forgetting ended orders: oldest first, a few at a time, and never with a retention of 0."""

from __future__ import annotations

import time
from typing import Any

from trader.orders.retention import IDS_WINDOW_MS, Ended, Forgetting, ids_cutoff


def test_ended_keys_are_taken_oldest_first_before_the_cutoff_a_few_at_a_time() -> None:
    ended = Ended([("c", 30), ("a", 10), ("b", 20)])
    ended.add("d", 40)
    ended.add("a", 99)  # told again: it ended when first told
    assert list(ended.take(before_ms=35, limit=2)) == ["a", "b"]
    assert list(ended.take(before_ms=35)) == ["c"]
    ended.keep("d", 50)  # back in line: not before 50
    assert list(ended.take(before_ms=45)) == []
    assert (list(ended.take(before_ms=51)), len(ended)) == (["d"], 0)


class Log:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


def test_forgetting_cuts_at_now_minus_the_retention_and_tells_the_log_once_a_minute() -> None:
    cutoffs: list[int] = []

    def forget(cutoff_ms: int, limit: int | None) -> int:
        cutoffs.append(cutoff_ms)
        return 3

    log = Log()
    forgetting = Forgetting(60.0, forget, lambda: 7, log, "test.forgot")
    before = time.time_ns() // 1_000_000 - 60_000
    forgetting(limit=3)
    forgetting(limit=3)
    assert before <= cutoffs[0] <= time.time_ns() // 1_000_000 - 60_000
    assert log.lines == [{"event": "test.forgot", "orders": 3, "held": 7}]  # the second one waits


def test_a_retention_of_zero_forgets_nothing() -> None:
    forgetting = Forgetting(0, lambda cutoff, limit: 1 // 0, lambda: 0, Log(), "test.forgot")
    assert forgetting.cutoff_ms() is None
    forgetting()  # does not call forget


def test_ids_are_kept_for_the_window_after_an_end_or_a_retention_more_if_longer() -> None:
    now = 10**13
    for retention_s in (5, 3600, 86_400):
        cutoff = now - retention_s * 1000  # what ended before it leaves memory
        kept_ms = now - (ids_cutoff(cutoff, retention_s) or 0)
        assert kept_ms == max(IDS_WINDOW_MS, 2 * retention_s * 1000)
    assert ids_cutoff(None, 5) is None
    assert ids_cutoff(now, 0) is None  # a retention of 0: nothing is forgotten, ids neither
