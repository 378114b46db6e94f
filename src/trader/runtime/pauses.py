"""Pauses at the points where a crash must lose nothing and repeat nothing, for the tests that kill a
service there (SIGKILL between a batch's outputs and its checkpoint, in a snapshot write, in a replay).

A test sets ``TEST_PAUSE_TRADER`` in the service's environment to ``<point>:<seconds>`` (several joined
by commas); the service logs ``test.paused`` with the point and sleeps. Unset (production), a pause
costs one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import functools
import os

import structlog

ENV = "TEST_PAUSE_TRADER"  # not TRADER_: the settings refuse names they do not know
BEFORE_CHECKPOINT = "intake.before_checkpoint"  # a work batch's outputs stored, not yet checkpointed
IN_REPLAY = "intake.replay"  # a batch of the history applied at start, before the next is read
IN_SNAPSHOT_WRITE = "snapshot.write"  # a snapshot taken, being written

_log = structlog.get_logger("trader.runtime.pauses")


@functools.cache
def pauses() -> dict[str, float]:
    """The pauses asked for, by point (read once)."""
    asked: dict[str, float] = {}
    for item in os.environ.get(ENV, "").split(","):
        point, _, seconds = item.strip().rpartition(":")
        if point and seconds:
            asked[point] = float(seconds)
    return asked


async def pause(point: str) -> None:
    seconds = pauses().get(point)
    if seconds:
        _log.warning("test.paused", point=point, seconds=seconds)
        await asyncio.sleep(seconds)
