"""`trader up` and `trader down` from the outside: ports, external servers, no process left behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from tests.stack_helpers import Stack, wait_listening
from trader.bus.connection import connect_nats
from trader.bus.streams import STREAMS, ensure_streams
from trader.config import Settings
from trader.stack.base import find_binary
from trader.stack.probes import port_is_free

pytestmark = pytest.mark.integration

MANAGED = {"seaweedfs", "questdb", *Settings().services}
# Enough to stop for the tests of stopping: the servers and two services (the whole stack is one test's).
FEW = "gateway,normalizer"
Lifecycle = tuple[Stack, subprocess.Popen[bytes]]


@pytest.fixture
def lifecycle_stack(tmp_path: Path) -> Iterator[Lifecycle]:
    """A stack whose NATS is the user's own, already running: trader must use it, not start one."""
    stack = Stack.create(tmp_path / "data")
    store = tmp_path / "external-nats"
    port = str(stack.ports["nats"])
    external = subprocess.Popen(
        [find_binary("nats-server"), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(stack.ports["nats"])
    try:
        yield stack, external
    finally:
        stack.trader("down", timeout=120)
        external.terminate()
        external.wait(10)


def _stack_ports(stack: Stack) -> list[int]:
    # Every port of the map except the external NATS' own, and the planned services' (nothing runs there).
    owned = ("nats_monitor", "s3", "seaweed", "questdb", "gateway", "alt_feed")
    return [p for name, p in stack.ports.items() if name.startswith(owned)]


def _pids(report: dict) -> dict[str, int]:
    return {c["name"]: c["pid"] for c in report["components"] if c["pid"]}


async def test_streams_on_a_fresh_server_are_created_once(lifecycle_stack: Lifecycle) -> None:
    stack, _ = lifecycle_stack
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    try:
        js = nc.jetstream()
        names = [s.name for s in STREAMS]
        assert await ensure_streams(js, stack.settings()) == dict.fromkeys(names, "created")
        configs = {n: (await js.stream_info(n)).config for n in names}
        assert await ensure_streams(js, stack.settings()) == dict.fromkeys(names, "unchanged")
        assert {n: (await js.stream_info(n)).config for n in names} == configs
    finally:
        await nc.close()


def test_port_conflict_fails_naming_component_port_and_log(lifecycle_stack: Lifecycle) -> None:
    stack, _ = lifecycle_stack
    port = stack.ports["gateway"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = stack.trader("up", "--detach")
    assert result.returncode == 1
    assert "gateway" in result.stderr
    assert str(port) in result.stderr
    assert str(stack.data_dir / "logs" / "gateway.log") in result.stderr.replace("\n", "")
    # Checked before anything started: no server was left running.
    assert all(port_is_free(p) for p in _stack_ports(stack))


def test_up_uses_a_reachable_server_and_down_leaves_nothing_behind(lifecycle_stack: Lifecycle) -> None:
    stack, external = lifecycle_stack
    stack.trader("up", "--detach", check=True)
    report = stack.status()
    rows = {c["name"]: c for c in report["components"]}
    assert report["healthy"] is True
    assert rows["nats"]["managed"] is False  # the user's server, reused
    assert rows["nats"]["pid"] is None
    pids = _pids(report)
    assert set(pids) == MANAGED
    supervisor = report["supervisor"]["pid"]

    result = stack.trader("down", timeout=120)
    assert result.returncode == 0, result.stderr
    for name, pid in [*pids.items(), ("supervisor", supervisor)]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
    assert [p for p in _stack_ports(stack) if not port_is_free(p)] == []
    assert external.poll() is None  # not trader's to stop
    assert stack.trader("status").returncode == 1


def _lines_of(stream: IO[bytes] | None) -> list[str]:
    """The lines ``stream`` gives, as they come (read by a thread of their own)."""
    lines: list[str] = []
    assert stream is not None

    def read() -> None:
        for line in stream:
            lines.append(line.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_ctrl_c_on_foreground_up_stops_everything(lifecycle_stack: Lifecycle) -> None:
    stack, _ = lifecycle_stack
    up = subprocess.Popen(
        [sys.executable, "-m", "trader", "up", "--services", FEW],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Until it says it is up (every component started), not `trader status` polled meanwhile: a status
    # process every half second slows the start it waits for, and reads healthy while only the servers
    # are listed yet.
    said = _lines_of(up.stderr)
    deadline = time.monotonic() + 180
    while not any("trader is up" in line for line in said[:]):
        assert up.poll() is None, "".join(said)
        assert time.monotonic() < deadline, stack.log("supervisor")
        time.sleep(0.2)
    while not (stack.status().get("healthy")):
        assert up.poll() is None, "".join(said)
        assert time.monotonic() < deadline, stack.log("supervisor")
        time.sleep(0.5)
    pids = _pids(stack.status())
    assert {"questdb", "seaweedfs", "gateway", "normalizer"} <= set(pids)
    up.send_signal(signal.SIGINT)
    assert up.wait(120) == 0
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid), name
    assert [p for p in _stack_ports(stack) if not port_is_free(p)] == []


def test_children_stop_when_the_supervisor_is_killed(lifecycle_stack: Lifecycle) -> None:
    stack, _ = lifecycle_stack
    stack.trader("up", "--detach", "--services", FEW, check=True)
    report = stack.status()
    pids = _pids(report)
    assert {"questdb", "seaweedfs", "gateway", "normalizer"} <= set(pids)
    psutil.Process(report["supervisor"]["pid"]).kill()
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(p) for p in pids.values()):
        assert time.monotonic() < deadline, {n: p for n, p in pids.items() if psutil.pid_exists(p)}
        time.sleep(0.2)
    assert stack.trader("down").returncode == 0
    assert [p for p in _stack_ports(stack) if not port_is_free(p)] == []
