"""Waiting for followers to catch up: a long history is waited for, a stalled one is not."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from trader.bus.read import Follower, catch_up


class Replaying:
    """What ``catch_up`` looks at in a follower: messages handled so far, and caught up or not."""

    def __init__(self) -> None:
        self.caught_up = asyncio.Event()
        self.handled = 0

    async def replay(self, messages: int, every_s: float) -> None:
        for _ in range(messages):
            await asyncio.sleep(every_s)
            self.handled += 1
        self.caught_up.set()


def followers(*items: Replaying) -> list[Follower]:
    return cast(list[Follower], list(items))


async def test_a_history_longer_than_the_stall_limit_is_waited_for() -> None:
    a, b = Replaying(), Replaying()
    tasks = [asyncio.create_task(a.replay(12, 0.05)), asyncio.create_task(b.replay(3, 0.05))]
    started = asyncio.get_running_loop().time()
    await catch_up(followers(a, b), 0.2, "test")  # 0.6 s of history, never 0.2 s without a message
    assert asyncio.get_running_loop().time() - started > 0.4
    assert a.caught_up.is_set()
    assert b.caught_up.is_set()
    await asyncio.gather(*tasks)


async def test_a_stalled_history_is_a_timeout() -> None:
    a, b = Replaying(), Replaying()
    b.caught_up.set()
    a.handled = 2  # two messages, then silence, not caught up
    with pytest.raises(TimeoutError, match=r"test: nothing for 0\.2s"):
        await catch_up(followers(a, b), 0.2, "test")
