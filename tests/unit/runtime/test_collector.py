"""The garbage collector watch: every collection timed, and the values services keep out of its sight."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from trader.bench.trading import gc_totals
from trader.execution.desk import Tracked
from trader.execution.venues.paper import PaperVenue
from trader.messages import OrderRequest, RiskDecision, VenueOrder
from trader.runtime.collector import CollectorWatch
from trader.runtime.metrics import ServiceMetrics


@pytest.fixture
def watch() -> Iterator[tuple[CollectorWatch, ServiceMetrics]]:
    metrics = ServiceMetrics("test")
    watch = CollectorWatch(metrics)
    watch.start()
    try:
        yield watch, metrics
    finally:
        watch.stop()
        gc.unfreeze()


def test_every_collection_is_timed_and_read_back_by_the_benchmark(
    watch: tuple[CollectorWatch, ServiceMetrics],
) -> None:
    collector, metrics = watch
    before = gc_totals(metrics.exposition().decode())
    for _ in range(3):
        gc.collect()
    after = gc_totals(metrics.exposition().decode())
    assert after.collections - before.collections == 3
    assert after.seconds > before.seconds
    assert after.long_pauses <= after.collections
    collector.stop()
    gc.collect()
    assert gc_totals(metrics.exposition().decode()).collections == after.collections


def test_what_the_start_built_is_frozen(watch: tuple[CollectorWatch, ServiceMetrics]) -> None:
    _, metrics = watch
    exposition = metrics.exposition().decode()
    line = next(x for x in exposition.splitlines() if x.startswith("trader_gc_frozen_objects{"))
    frozen = float(line.rpartition(" ")[2])
    # Everything this test process had made: thousands of objects (some freed since, by their counts).
    assert frozen > 10_000
    assert abs(frozen - gc.get_freeze_count()) < frozen * 0.05


def _request() -> OrderRequest:
    raw = (
        b'{"client_order_id":"a","strategy":"s","symbol":"BTCUSDT","side":"buy","quantity":"1",'
        b'"type":"market","algo":"twap","algo_params":{"duration_s":"60"}}'
    )
    return msgspec.json.decode(raw, type=OrderRequest)


def new_order(client_order_id: str, **changes: Any) -> VenueOrder:
    terms: dict[str, Any] = {
        "action": "new",
        "client_order_id": client_order_id,
        "venue_client_id": client_order_id,
        "strategy": "s",
        "account": "paper",
        "venue": "paper",
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": Decimal(1),
        "type": "market",
    }
    return VenueOrder(**{**terms, **changes})


def test_what_services_keep_per_order_is_not_tracked() -> None:
    """A tracked object per order would make every full collection walk the whole history."""
    request = _request()
    venue_order = new_order("a", algo="twap", algo_params={"duration_s": "60"})
    kept = [
        request,
        RiskDecision(request=request, approved=True),
        venue_order,
        Tracked(venue_order),
    ]
    assert [gc.is_tracked(value) for value in kept] == [False] * len(kept)


async def test_the_paper_venue_keeps_its_orders_untracked() -> None:
    paper = PaperVenue()
    await paper.submit(new_order("b", type="limit", price=Decimal(100)))
    assert not gc.is_tracked(paper._orders["b"])
