"""`trader bench wakeup`: what one wake-up of a waiting process costs on this machine.

Every hop of the trading chain wakes processes that were waiting: nats-server when a message comes in,
the service it delivers to, the publisher again when JetStream's acknowledgement comes back. At a few
thousand messages a second the CPU those wake-ups cost, not the work done once awake, is most of what
an order costs (docs/benchmarks.md, "Why an order costs so much CPU"), and it differs a lot between
machines (bare metal, a VM with or without posted interrupts, a Firecracker micro-VM).

This measures it with nothing of trader's in the way: an echo server in a process of its own (the same
interpreter, asyncio event loop and streams as the services) answers a client that sends one 64-byte
message over TCP on loopback at a paced rate and waits for the answer. The server does nothing but
wake, read and write, so its CPU per message is the price of one wake-up and one round of the event
loop; its voluntary context switches per message show that it did sleep between messages. At a high
rate the server finds more to do per wake-up and the cost per message falls: compare the rates.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trader.bench.ingest import percentile

MESSAGE = b"x" * 64


# The echo server, in a process of its own --------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


async def _serve() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def serve() -> None:
    """Entry point of the echo process: prints its port, then echoes until killed."""
    asyncio.run(_serve())


# Measuring ----------------------------------------------------------------------------------------


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``: how often it waited and was woken."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid``, in nanoseconds (the scheduler's count: clock-tick CPU
    times are too coarse for a few hundred messages)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


async def _paced_round_trips(port: int, rate: float, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    round_trips: list[float] = []
    began = time.perf_counter()
    try:
        for i in range(count):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            writer.write(MESSAGE)
            received = 0
            while received < len(MESSAGE):
                received += len(await reader.read(65536))
            round_trips.append(time.perf_counter() - sent)
    finally:
        writer.close()
    return round_trips


async def _measure(pid: int, port: int, rate: float, seconds: float) -> dict[str, Any]:
    count = max(10, round(rate * seconds))
    me = os.getpid()
    server_cpu, client_cpu, switches = cpu_ns(pid), cpu_ns(me), voluntary_switches(pid)
    started = time.perf_counter()
    round_trips = await _paced_round_trips(port, rate, count)
    elapsed = time.perf_counter() - started
    per_message = 1e-3 / count  # ns -> us per message
    return {
        "rate": rate,
        "messages": count,
        "achieved_per_s": round(count / elapsed),
        "server_cpu_us_per_message": round((cpu_ns(pid) - server_cpu) * per_message, 1),
        "server_wakeups_per_message": round((voluntary_switches(pid) - switches) / count, 2),
        "client_cpu_us_per_message": round((cpu_ns(me) - client_cpu) * per_message, 1),
        "round_trip_p50_us": round(percentile(round_trips, 50) * 1e6),
        "round_trip_p99_us": round(percentile(round_trips, 99) * 1e6),
    }


async def run_wakeup_bench(rates: list[float], seconds: float) -> dict[str, Any]:
    """The echo server's CPU per message, and the round trip, at each rate in turn."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from trader.bench.wakeup import serve; serve()", stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        if not line.strip().isdigit():
            raise RuntimeError(f"the echo server did not start (it said {line!r})")
        port = int(line)
        await _measure(server.pid, port, 1000, 0.5)  # warm-up: imports, first allocations
        phases = [await _measure(server.pid, port, rate, seconds) for rate in rates]
    finally:
        server.kill()
        await server.wait()
    return {"cpus": os.cpu_count(), "seconds": seconds, "phases": phases}
