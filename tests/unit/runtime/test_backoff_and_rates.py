from __future__ import annotations

import random

import pytest

from trader.runtime.backoff import Backoff
from trader.runtime.metrics import RateMeter


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    b = Backoff(initial=1, maximum=8, factor=2, jitter=0.25, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8, 8, 8], strict=True):
        assert base * 0.75 <= delay <= base * 1.25
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not all equal
    b.reset()
    assert b.next_delay() <= 1.25


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial=0)


def test_rate_meter_measures_messages_per_second() -> None:
    meter = RateMeter(alpha=1.0)
    meter.sample(0, now=10.0)
    assert meter.sample(500, now=12.0) == 250.0
    assert meter.sample(500, now=13.0) == 0.0
