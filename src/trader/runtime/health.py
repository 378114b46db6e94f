"""What keeps a running service from doing its job: the problems that make it degraded.

A service names its own (``Service.problems``: no strategy loaded, a venue disconnected, no data for a
symbol); the runtime adds those of its stream consumers (``ConsumerWatch``: stalled, or far behind
their stream). /health stays 200 and says ``degraded`` with the reasons; /ready answers 503 while
there is any (ready means doing its job); `trader status` shows ``degraded: <reason>``. A problem that
will not go away on its own (a configuration to fix) is ``lasting``: `trader up` stops waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# A consumer whose last message taken was stored this long ago while more are waiting is far behind.
BEHIND_S = 60.0
# A consumer that has handed over no batch (not even an empty one: they come every max_wait_s) this
# long: its service is stuck on its work (a store that does not answer, a compaction that never ends).
STALL_S = 300.0


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    lasting: bool = False  # only a change of configuration (and a restart) makes it go

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "lasting": self.lasting}


def problems_of(body: Any) -> list[Problem]:
    """The problems in a /health or /ready answer (none when it has no such list)."""
    found = body.get("problems") if isinstance(body, dict) else None
    if not isinstance(found, list):
        return []
    return [
        Problem(str(p.get("reason", "")), bool(p.get("lasting", False))) for p in found if isinstance(p, dict)
    ]


def duration(seconds: float) -> str:
    """A person's way of saying how long: 45 s, 3 min, 2 h, 3 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass
class _Progress:
    pending: int
    last_arrival_ms: int | None  # when the stream stored the last message handed over
    last_batch: float  # monotonic: when the consumer last handed over a batch


class ConsumerWatch:
    """The runtime's view of its service's stream consumers, from what each says at every batch: the
    messages still waiting in the stream (``pending``, from the last delivery's acknowledgement subject)
    and when the last one it handed over was stored."""

    def __init__(self, behind_s: float = BEHIND_S, stall_s: float = STALL_S) -> None:
        self.behind_s, self.stall_s = behind_s, stall_s
        self._consumers: dict[str, _Progress] = {}

    def note(self, name: str, pending: int, last_arrival_ms: int | None, now: float | None = None) -> None:
        """A batch handed over (``last_arrival_ms`` None: an empty one)."""
        now = time.monotonic() if now is None else now
        known = self._consumers.get(name)
        if last_arrival_ms is None and known is not None:
            last_arrival_ms = known.last_arrival_ms
        self._consumers[name] = _Progress(pending, last_arrival_ms, now)

    def forget(self, name: str) -> None:
        """The consumer stopped: it is no one's job any more."""
        self._consumers.pop(name, None)

    def problems(self, now: float | None = None, now_ms: int | None = None) -> list[Problem]:
        now = time.monotonic() if now is None else now
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        found = []
        for name, p in sorted(self._consumers.items()):
            behind_s = (now_ms - p.last_arrival_ms) / 1000 if p.pending and p.last_arrival_ms else 0.0
            if behind_s > self.behind_s:
                found.append(
                    Problem(
                        f"consumer {name} is {duration(behind_s)} behind its stream "
                        f"({p.pending:,} messages not yet taken)"
                    )
                )
            elif now - p.last_batch > self.stall_s:
                found.append(
                    Problem(f"consumer {name} stalled: no batch taken for {duration(now - p.last_batch)}")
                )
        return found


class Silence(Generic[K]):
    """Keys (instruments) that should be heard of regularly: which have been quiet for ``quiet_s``,
    since they were expected or since they were last heard of."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._last: dict[K, float] = {}  # monotonic: heard of, or expected from then on
        self._heard: set[K] = set()

    def expect(self, keys: Iterable[K], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._last.setdefault(key, now)

    def heard(self, key: K, now: float | None = None) -> None:
        if key in self._last:
            self._last[key] = time.monotonic() if now is None else now
            self._heard.add(key)

    def quiet(self, now: float | None = None) -> dict[K, tuple[float, bool]]:
        """Each key quiet too long: (for how long, whether it was ever heard of)."""
        now = time.monotonic() if now is None else now
        return {
            key: (now - last, key in self._heard)
            for key, last in sorted(self._last.items())
            if now - last > self.quiet_s
        }
