"""What a service's /metrics says of its readiness and of how long its messages waited in their stream."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from trader.bus.publish import Outgoing
from trader.runtime.consumer import Delivery
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.metrics import ServiceMetrics
from trader.runtime.service import Runtime, Service, _sample_rates


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_readiness_is_a_gauge_of_the_service() -> None:
    metrics = ServiceMetrics("oms")
    metrics.set_ready(True)
    assert _samples(metrics)[("trader_ready", (("service", "oms"),))] == 1
    metrics.set_ready(False)
    assert _samples(metrics)[("trader_ready", (("service", "oms"),))] == 0


def test_the_delay_is_a_histogram_per_input() -> None:
    metrics = ServiceMetrics("risk")
    metrics.observe_delay("risk", 0.003)
    metrics.observe_delay("risk", 0.2)
    metrics.observe_delay("risk", -0.001)  # the stream's clock a hair ahead: counted as no wait
    samples = _samples(metrics)
    labels = (("input", "risk"), ("service", "risk"))
    assert samples[("trader_intake_delay_seconds_count", labels)] == 3
    assert samples[("trader_intake_delay_seconds_bucket", (*labels[:1], ("le", "0.001"), labels[1]))] == 1
    assert samples[("trader_intake_delay_seconds_bucket", (*labels[:1], ("le", "0.005"), labels[1]))] == 2
    assert abs(samples[("trader_intake_delay_seconds_sum", labels)] - 0.203) < 1e-9


class Item(msgspec.Struct, frozen=True):
    name: str


def _intake() -> tuple[Intake[Item], list[tuple[str, float]]]:
    observed: list[tuple[str, float]] = []
    metrics = SimpleNamespace(
        count_in=lambda n: None,
        observe_batch=lambda s: None,
        observe_delay=lambda name, seconds: observed.append((name, seconds)),
    )

    async def publish_reliably(outputs: list[Outgoing]) -> None:
        return None

    async def dead_letter(stream: str, refused: list[Any]) -> None:
        return None

    rt = cast(
        Runtime,
        SimpleNamespace(
            name="svc", publish_reliably=publish_reliably, dead_letter=dead_letter, metrics=metrics
        ),
    )

    def handle(message: Received[Item]) -> list[Outgoing]:
        return []

    intake = Intake(rt, Input("ITEMS", "items.>", Item, Mode.HISTORY, name="items"), handle)
    return intake, observed


async def test_a_live_batch_observes_the_wait_of_its_oldest_message_and_a_replay_none() -> None:
    intake, observed = _intake()
    now_ms = int(time.time() * 1000)
    consumer = cast(Any, SimpleNamespace(caught_up=False))
    data = msgspec.json.encode(Item("a"))
    intake._end_seq = intake.replay_to = 2
    replayed = [Delivery(1, now_ms - 3_600_000, "items.a", data, None)]
    await intake._take(replayed, consumer)  # an hour old, read again at a restart: not a wait
    assert observed == []
    intake.caught_up = True
    live = [Delivery(3, now_ms - 250, "items.a", data, None), Delivery(4, now_ms - 10, "items.a", data, None)]
    await intake._take(live, consumer)
    assert len(observed) == 1
    name, waited = observed[0]
    assert name == "items"
    assert 0.24 <= waited < 0.25 + 5  # the oldest of the batch, to the millisecond (and a slow machine)


class _Readiness(Service):
    name = "probe"

    def __init__(self) -> None:
        self.ready = False

    async def run(self, rt: Runtime) -> None:
        return None

    def ready_checks(self) -> dict[str, bool]:
        return {"own": self.ready}


async def test_the_sampler_keeps_the_readiness_gauge_current() -> None:
    service = _Readiness()
    rt = Runtime("probe", cast(Any, SimpleNamespace()))
    rt.started = True
    rt.nc = cast(Any, SimpleNamespace(is_connected=True))
    sampler = asyncio.create_task(_sample_rates(rt, service))
    try:
        await asyncio.sleep(0.05)
        assert _samples(rt.metrics)[("trader_ready", (("service", "probe"),))] == 0
        service.ready = True
        deadline = time.monotonic() + 3  # the sampler's next turn, within a second
        while _samples(rt.metrics)[("trader_ready", (("service", "probe"),))] != 1:
            assert time.monotonic() < deadline, "the gauge did not follow readiness"
            await asyncio.sleep(0.05)
    finally:
        sampler.cancel()
