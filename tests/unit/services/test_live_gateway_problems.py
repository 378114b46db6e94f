"""live-gateway's job is to be connected to every venue it streams: when it is not, it says which and why."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from trader.runtime.health import Problem
from trader.services.live_gateway import RECONNECT_GRACE_S, venue_problem

URL = "ws://127.0.0.1:1/ws"


def feed(**state: Any) -> Any:
    base = {"name": "binance", "ws_url": URL, "connected": False, "connections": 0}
    return SimpleNamespace(**{"last_error": None, "disconnected_at": None, **base, **state})


def test_a_connected_venue_is_no_problem() -> None:
    assert venue_problem(feed(connected=True, connections=1), now=100.0) is None


def test_a_venue_not_connected_yet_is_one_until_it_connects() -> None:
    assert venue_problem(feed(), now=100.0) == Problem(f"binance: connecting to {URL}")


def test_a_venue_nothing_answers_at_is_disconnected_with_the_reason() -> None:
    refused = "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    problem = venue_problem(feed(last_error=refused, disconnected_at=99.0), now=100.0)
    assert problem == Problem(f"binance: disconnected, never connected to {URL}: {refused}")


def test_a_drop_is_a_problem_only_past_a_reconnects_time() -> None:
    dropped = feed(connections=3, last_error="stale: no frame for 30 s", disconnected_at=100.0)
    assert venue_problem(dropped, now=100.0 + RECONNECT_GRACE_S - 1) is None
    assert venue_problem(dropped, now=190.0) == Problem(
        f"binance: disconnected for 90 s ({URL}): stale: no frame for 30 s"
    )
