"""The garbage collector of a service: what it keeps for good out of sight, and every pause timed.

CPython's cyclic collector walks every tracked object of the generations it collects, and a full
collection pauses the event loop for all of them. A service keeps what it rebuilt at start and what it
learns (books of orders, venue orders, decisions) for as long as it runs, so two things keep those
walks short whatever the history: what the start built is frozen (``gc.freeze``: the permanent
generation, never walked again), and the values kept afterwards are not tracked at all (messages and
exeq's order records are ``gc=False`` structs, see ``trader.messages``). Measured in the trading
benchmark at 1,000 orders/s before the latter, exeq paused 68 and 80 ms in full collections, the
longest latencies of the run (docs/benchmarks.md).

``trader_gc_pause_seconds`` times every collection by generation (`trader bench trading` prints them
per service); ``trader_gc_frozen_objects`` is the size of the permanent generation.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Gauge, Histogram

from trader.runtime.metrics import ServiceMetrics

PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class CollectorWatch:
    def __init__(self, metrics: ServiceMetrics) -> None:
        registry, service = metrics.registry, metrics.service
        pause = Histogram(
            "trader_gc_pause_seconds",
            "Pause of one garbage collection, by generation",
            ["service", "generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self._pauses = [pause.labels(service, str(generation)) for generation in range(3)]
        self._frozen = Gauge(
            "trader_gc_frozen_objects", "Objects in the permanent generation", ["service"], registry=registry
        ).labels(service)
        self._started_at = 0.0

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        else:
            self._pauses[info["generation"]].observe(time.perf_counter() - self._started_at)

    def start(self) -> None:
        """Freeze what the start built, and time every collection from now on."""
        gc.collect()
        gc.freeze()
        self._frozen.set(gc.get_freeze_count())
        gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
