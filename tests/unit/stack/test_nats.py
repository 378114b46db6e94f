"""The nats-server `trader up` starts: its environment."""

from __future__ import annotations

import pytest

from trader.config import Settings
from trader.stack.nats import NatsServer, nats_gomaxprocs


def test_nats_server_runs_on_half_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert nats_gomaxprocs(Settings()) == 1
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert nats_gomaxprocs(Settings()) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert nats_gomaxprocs(Settings()) == 1
    assert nats_gomaxprocs(Settings(nats_gomaxprocs=3)) == 3


def test_the_started_server_gets_gomaxprocs_and_an_operators_own_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    server = NatsServer(Settings(nats_gomaxprocs=2))
    assert server.component(managed=True).env == {"GOMAXPROCS": "2"}
    assert server.component(managed=False).env is None  # not ours to start
    monkeypatch.setenv("GOMAXPROCS", "6")
    assert server.component(managed=True).env is None  # the supervisor passes its environment on
