"""feature-eng's handling of bars, without servers: live bars give their features to publish and a row
each; replayed bars (after a restart) rebuild the state, give a row each (written again, upserted), and
only those newer than the last features on their subject are kept to publish, with the identity that
makes a publish idempotent. tests/integration/test_feature_eng.py runs it on the real servers."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec

from trader.analytics.features.engine import FeatureEngine
from trader.bus.read import Stored
from trader.config import Settings
from trader.messages import Bar, Features, encode
from trader.runtime.intake import Received
from trader.services.feature_eng import FeatureEng, features_message
from trader.strategies.testing import make_bar

MINUTE = 60_000
SUBJECT = "market.feature.1m.mock.BTCUSDT"


def service(caught_up: bool, published: dict[str, int] | None = None) -> FeatureEng:
    svc = FeatureEng(Settings())
    svc.engine = FeatureEngine(svc.settings.feature_eng)
    svc.published = published or {}
    svc._rows, svc._replayed = [], []
    svc.bars = SimpleNamespace(caught_up=caught_up)  # type: ignore[assignment]
    return svc


def received(bar: Bar, seq: int) -> Received[Bar]:
    return Received(Stored(seq, f"market.bar.1m.mock.{bar.symbol}", encode(bar), None, 0), bar)


def test_a_live_bar_gives_its_features_to_publish_and_a_row() -> None:
    svc = service(caught_up=True)
    [out] = svc._take_bar(received(make_bar(0, "100"), 1))
    assert out.subject == SUBJECT
    assert out.msg_id == "mock:BTCUSDT:1m:0"
    features = msgspec.json.decode(out.payload, type=Features)
    assert features.start == 0
    assert svc._rows == [features]
    assert svc._take_bar(received(make_bar(0, "100", timeframe="5m"), 2)) == []  # not configured


def test_a_replay_publishes_only_what_the_bus_does_not_hold_and_writes_every_row() -> None:
    svc = service(caught_up=False, published={SUBJECT: 2 * MINUTE})
    for i in range(5):
        assert svc._take_bar(received(make_bar(i * MINUTE, str(100 + i)), i + 1)) == []
    assert [f.start for f in svc._rows] == [i * MINUTE for i in range(5)]
    assert [o.msg_id for o in svc._replayed] == ["mock:BTCUSDT:1m:180000", "mock:BTCUSDT:1m:240000"]
    assert svc._replayed[0] == features_message(svc._rows[3])


def test_ready_and_health_before_the_start_say_so() -> None:
    svc = FeatureEng(Settings())
    assert svc.ready_checks() == {"intake": False}
    assert svc.health_details() == {}
