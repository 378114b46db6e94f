"""``set_within``: a loop that waits for an event with a timeout ends when its task is cancelled, even
when the cancellation comes as the event is set (Python 3.11's ``asyncio.wait_for`` swallows it then)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from trader.bus.backoff import set_within


async def _cancel_as_the_event_is_set(wait: Callable[[asyncio.Event], Awaitable[object]]) -> bool:
    """Whether a loop around ``wait`` ended when cancelled in the same step the event was set."""
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while rounds < 3:  # a loop whose cancellation is lost ends on its own, after 3 rounds
            rounds += 1
            event.clear()
            await wait(event)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # the loop waits
    event.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return task.cancelled()


async def _wait_for(event: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), 0.05)


async def _set_within(event: asyncio.Event) -> None:
    await set_within(event, 0.05)


def test_a_cancellation_as_the_event_is_set_ends_the_loop() -> None:
    assert asyncio.run(_cancel_as_the_event_is_set(_set_within))


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for was fixed in 3.12")
def test_wait_for_loses_that_cancellation_on_3_11() -> None:
    """Why ``set_within`` exists: the same loop over ``asyncio.wait_for`` goes on."""
    assert not asyncio.run(_cancel_as_the_event_is_set(_wait_for))


def test_set_within_tells_set_from_timeout() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        quiet = await set_within(event, 0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        woken = await set_within(event, 5)
        return quiet, woken, await set_within(event, 0)

    assert asyncio.run(scenario()) == (False, True, True)
