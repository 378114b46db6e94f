"""Exponential backoff with jitter, shared by every reconnect and restart loop; and ``set_within``, the
one way a loop waits for an event with a timeout."""

from __future__ import annotations

import asyncio
import random

# One generator for all: seeding a new one reads os.urandom, and a Backoff is made per publish.
_SHARED_RNG = random.Random()


class Backoff:
    """Delays of initial * factor**n, capped, each spread by +/- jitter so that many clients that lost
    the same server do not all come back in the same instant."""

    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.3,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self.attempts = 0
        self._rng = rng or _SHARED_RNG

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self, stop: asyncio.Event | None = None) -> bool:
        """Wait the next delay; False when ``stop`` was set meanwhile."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return True
        return not await set_within(stop, delay)


async def set_within(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds. Not ``asyncio.wait_for``: on Python 3.11 it
    swallows a cancellation that comes as the event is set (it returns the result instead), and a loop
    around it then never ends; a stop that awaits the cancelled task waited forever (risk's start hung
    so once in about ten runs). ``asyncio.timeout`` raises the cancellation."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
