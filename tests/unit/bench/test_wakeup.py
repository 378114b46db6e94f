"""`trader bench wakeup`: its counters, and one short run against its echo server."""

from __future__ import annotations

import asyncio
import os
import time

from trader.bench.wakeup import cpu_ns, run_wakeup_bench, voluntary_switches


def test_the_counters_see_this_process_work_and_wait() -> None:
    pid = os.getpid()
    cpu, switches = cpu_ns(pid), voluntary_switches(pid)
    # 50 ms of this thread's CPU, however busy the machine is (wall time would be a guess).
    until = time.thread_time_ns() + 50_000_000
    while time.thread_time_ns() < until:
        pass
    for _ in range(5):
        time.sleep(0.001)
    assert cpu_ns(pid) - cpu >= 45_000_000  # ns: the scheduler's count agrees (to a tick)
    assert voluntary_switches(pid) - switches >= 5  # each sleep waited


def test_a_short_run_answers_every_message_and_prices_each() -> None:
    report = asyncio.run(run_wakeup_bench([200.0], 0.25))
    (phase,) = report["phases"]
    assert phase["messages"] == 50
    assert 100 <= phase["achieved_per_s"] <= 220
    assert phase["server_cpu_us_per_message"] > 0
    assert phase["server_wakeups_per_message"] > 0.5  # it slept between messages
    assert phase["round_trip_p50_us"] <= phase["round_trip_p99_us"]
