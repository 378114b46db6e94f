"""The replay loop of ``trader replay`` (trader.cli.replay.Replay) against a publisher of the test's own:
every tick once and in order with acknowledgements in flight, a lost acknowledgement published again
under the same id, pacing, and a stop (Ctrl-C) that waits for what is in flight and says how far it got.
On the real bus: tests/integration/test_replay_cli.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from trader.backtest.data import DataRange
from trader.bus.publish import BatchResult, Outgoing, PubAck
from trader.cli import replay as cli
from trader.messages import MarketTick

T0 = 1_795_600_000_000


def ticks(count: int, step_ms: int = 10) -> list[MarketTick]:
    return [
        MarketTick(
            timestamp=T0 + i * step_ms,
            exchange="mock",
            venue="mock",
            symbol=("BTCUSDT", "ETHUSDT")[i % 2],
            price=Decimal("100.5"),
            size=Decimal(1),
            volume=Decimal(1),
            trade_id=str(i),
        )
        for i in range(count)
    ]


class Source:
    def __init__(self, all_ticks: list[MarketTick], batch: int = 7) -> None:
        self.all_ticks, self.batch = all_ticks, batch

    def batches_with_seq(self, data: DataRange) -> Iterator[tuple[list[MarketTick], list[int]]]:
        for i in range(0, len(self.all_ticks), self.batch):
            chunk = self.all_ticks[i : i + self.batch]
            yield chunk, list(range(i + 1, i + 1 + len(chunk)))


class FakeBus(cli.Replay):
    """Acknowledges each publish a moment later (or never, for the ids in ``lose``); keeps what it stored."""

    def __init__(self, source: Source, speed: float = 0, lose: set[str] | None = None, **kw: Any) -> None:
        data = DataRange(T0, T0 + 10 * len(source.all_ticks), ())
        super().__init__(None, source, data, len(source.all_ticks), speed, "run1")  # type: ignore[arg-type]
        self.stored: dict[str, Outgoing] = {}
        self.sent: list[str] = []
        self.most_in_flight = 0
        self.lose = lose or set()
        self.stop_after = kw.get("stop_after")

    async def _check_stream(self) -> None:
        pass

    async def _send(self, item: Outgoing) -> asyncio.Future[PubAck]:
        assert item.msg_id is not None
        self.sent.append(item.msg_id)
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        if item.msg_id not in self.lose:
            duplicate = item.msg_id in self.stored
            self.stored.setdefault(item.msg_id, item)
            ack = PubAck(seq=1, duplicate=duplicate)
            asyncio.get_running_loop().call_later(0.001, future.set_result, ack)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight) + 1)
        if self.stop_after is not None and len(self.sent) == self.stop_after:
            self.stop.set()  # as Ctrl-C does
        return future

    async def _send_again(self, item: Outgoing) -> BatchResult:
        assert item.msg_id is not None
        self.sent.append(item.msg_id)
        duplicate = item.msg_id in self.stored
        self.stored.setdefault(item.msg_id, item)
        return BatchResult(stored=0 if duplicate else 1, duplicates=1 if duplicate else 0)


def test_every_tick_once_in_order_with_acknowledgements_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WINDOW", 50)
    source = Source(ticks(500))
    bus = FakeBus(source)
    assert asyncio.run(bus.run()) == 0
    expected = [f"replay:run1:mock:{t.symbol}:{t.trade_id}" for t in source.all_ticks]
    assert bus.sent == expected
    assert list(bus.stored) == expected
    assert 1 < bus.most_in_flight <= 50  # not one at a time, and bounded
    assert (bus.progress.acknowledged, bus.progress.stored, bus.progress.duplicates) == (500, 500, 0)
    assert bus.venues == {"replay-mock"}


def test_a_lost_acknowledgement_is_published_again_under_the_same_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "ACK_TIMEOUT_S", 0.05)
    source = Source(ticks(20))
    lost = "replay:run1:mock:ETHUSDT:5"
    bus = FakeBus(source, lose={lost})
    assert asyncio.run(bus.run()) == 0
    assert bus.sent.count(lost) == 2
    assert len(bus.stored) == 20
    assert bus.progress.acknowledged == 20


def test_ticks_are_paced_by_their_event_time() -> None:
    source = Source(ticks(11, step_ms=100))  # one second of event time
    bus = FakeBus(source, speed=4.0)  # a quarter of a second
    began = time.monotonic()
    assert asyncio.run(bus.run()) == 0
    assert 0.24 <= time.monotonic() - began < 1.0
    assert len(bus.stored) == 11


def test_a_stop_waits_for_what_is_in_flight_and_says_how_far(capsys: pytest.CaptureFixture[str]) -> None:
    bus = FakeBus(Source(ticks(400)), stop_after=123)
    assert asyncio.run(bus.run()) == cli.INTERRUPTED
    assert len(bus.sent) == 123  # nothing published after the stop
    assert bus.progress.acknowledged == 123  # and everything published was acknowledged
    err = capsys.readouterr().err
    assert "stopped (interrupted): 123 of 400 ticks" in err
    assert "every tick published was acknowledged (123 stored, 0 duplicates)" in err


def test_sigint_stops_it() -> None:
    source = Source(ticks(1_000, step_ms=10))  # ten seconds of event time at real time

    async def main() -> int:
        bus = FakeBus(source, speed=1.0)
        asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGINT)
        return await bus.run()

    began = time.monotonic()
    assert asyncio.run(main()) == cli.INTERRUPTED
    assert time.monotonic() - began < 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
