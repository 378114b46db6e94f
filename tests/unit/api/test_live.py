"""The WebSocket's hub: each client gets what it asked for, once per message; a slow one is flagged."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from trader.api import live
from trader.api.routes.live import Instrument, Op, subjects_of
from trader.api.schemas import OrderBody
from trader.messages import TradingState


def test_a_frame_goes_to_the_clients_of_its_channel_or_subject_only() -> None:
    hub = live.Hub()
    fills, ticks = hub.join("a"), hub.join("b")
    fills.channels.add("fills")
    ticks.subjects.add("market.tick.mock.BTCUSDT")
    hub.broadcast("fills", "fill", {"exec_id": "e1"}, 5)
    hub.broadcast("orders", "order", {"x": 1}, 6)
    hub.market("market.tick.mock.BTCUSDT", "tick", {"price": "1"}, None)
    hub.market("market.tick.mock.ETHUSDT", "tick", {"price": "2"}, None)
    first = json.loads(fills.queue.get_nowait())
    assert (first["type"], first["data"], first["bus_ms"]) == ("fill", {"exec_id": "e1"}, 5)
    assert fills.queue.empty()
    assert json.loads(ticks.queue.get_nowait())["data"] == {"price": "1"}
    assert ticks.queue.empty()
    assert hub.subjects() == {"market.tick.mock.BTCUSDT"}
    hub.leave(ticks)
    assert hub.subjects() == set()


def test_decimals_go_as_strings() -> None:
    frame = json.loads(live.frame("trading", TradingState(mode="halted", reason="r", since=1), None))
    assert frame["data"] == {"mode": "halted", "reason": "r", "since": 1}
    assert json.loads(live.frame("x", {"p": Decimal("0.10")}, None))["data"] == {"p": "0.10"}


def test_a_client_that_falls_behind_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "QUEUE_LIMIT", 2)
    hub = live.Hub()
    slow = hub.join("slow")
    slow.channels.add("orders")
    for i in range(3):
        hub.broadcast("orders", "order", {"i": i}, None)
    assert slow.overflowed.is_set()
    assert slow.queue.qsize() == 2


def test_subjects_of_an_op() -> None:
    op = Op(
        op="subscribe",
        ticks=[Instrument(venue="mock", symbol="BTCUSDT")],
        bars=[Instrument(venue="binance", symbol="ETHUSDT", timeframe="1m")],
    )
    assert subjects_of(op) == {"market.tick.mock.BTCUSDT", "market.bar.1m.binance.ETHUSDT"}
    for bad in (
        Op(op="subscribe", ticks=[Instrument(venue="mock", symbol="BTC.>")]),
        Op(op="subscribe", bars=[Instrument(venue="mock", symbol="BTCUSDT")]),  # no timeframe
        Op(op="subscribe", bars=[Instrument(venue="mock", symbol="BTCUSDT", timeframe="1 m")]),
    ):
        with pytest.raises(ValueError, match="not a"):
            subjects_of(bad)


@pytest.mark.parametrize(
    ("prices", "kind"),
    [
        ({}, "market"),
        ({"price": "1"}, "limit"),
        ({"stop_price": "1"}, "stop_market"),
        ({"price": "1", "stop_price": "2"}, "stop_limit"),
    ],
)
def test_an_order_body_makes_the_request_the_cli_makes(prices: dict[str, str], kind: str) -> None:
    request = OrderBody(symbol="BTCUSDT", side="sell", quantity="0.5", **prices).request()
    assert request.type == kind
    assert request.strategy == "manual"
    assert request.client_order_id.startswith("manual-")
    assert str(request.quantity) == "0.5"
    assert request.timestamp > 0
