"""`trader bench wakeup`: its counters, and one short run against its echo server."""

from __future__ import annotations

import asyncio
import os
import time

from trader.bench.wakeup import cpu_ns, run_wakeup_bench, voluntary_switches


def test_the_counters_see_this_process_work_and_wait() -> None:
    pid = os.getpid()
    cpu, switches = cpu_ns(pid), voluntary_switches(pid)
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:
        pass
    for _ in range(5):
        time.sleep(0.001)
    assert cpu_ns(pid) - cpu >= 40_000_000  # ns: most of the 50 ms of work
    assert voluntary_switches(pid) - switches >= 5  # each sleep waited


def test_a_short_run_answers_every_message_and_prices_each() -> None:
    report = asyncio.run(run_wakeup_bench([200.0], 0.25))
    (phase,) = report["phases"]
    assert phase["messages"] == 50
    assert 100 <= phase["achieved_per_s"] <= 220
    assert phase["server_cpu_us_per_message"] > 0
    assert phase["server_wakeups_per_message"] > 0.5  # it slept between messages
    assert phase["round_trip_p50_us"] <= phase["round_trip_p99_us"]
