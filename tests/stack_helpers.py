"""Running a real trader stack for tests: the real CLI, real servers, ports no one else uses."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trader.config import PortMap, Settings
from trader.stack.base import find_binary
from trader.stack.probes import port_is_free

# Below Linux's ephemeral range (32768+), so an outgoing connection cannot take one meanwhile.
PORT_RANGE = (21000, 32000)


def worker_port_range() -> tuple[int, int]:
    """This pytest-xdist worker's share of PORT_RANGE (all of it in one process): a port is checked free
    when a stack is made, and another worker's stack made meanwhile must not pick it before it binds."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count:
        return PORT_RANGE
    low, high = PORT_RANGE
    share = (high - low) // int(count)
    start = low + int(worker.removeprefix("gw")) * share
    return start, start + share


def free_port_map() -> dict[str, int]:
    rng = random.Random()
    port_range = worker_port_range()
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in PortMap.model_fields:
        while True:
            port = rng.randrange(*port_range)
            if port not in taken and port_is_free(port):
                break
        taken.add(port)
        ports[name] = port
    return ports


@dataclass
class Stack:
    data_dir: Path
    ports: dict[str, int]
    env: dict[str, str]

    @classmethod
    def create(cls, data_dir: Path, **extra_env: str) -> Stack:
        ports = free_port_map()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
        env.update({f"TRADER_PORTS__{name.upper()}": str(port) for name, port in ports.items()})
        env["TRADER_DATA_DIR"] = str(data_dir)
        env["TRADER_SHUTDOWN_TIMEOUT_S"] = "5"
        # Two test stacks at once on two loaded cores start slowly (QuestDB answers an ALTER TABLE in
        # a second): more time to be ready than a user's minute, so only a real fault fails a test.
        env["TRADER_SUPERVISOR__READY_TIMEOUT_S"] = "180"
        env.update(extra_env)
        return cls(data_dir, ports, env)

    def settings(self) -> Settings:
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def trader(
        self, *args: str, timeout: float = 300, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "trader", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"trader {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}\n"
                + self.log("supervisor")
            )
        return result

    def status(self) -> dict[str, Any]:
        return json.loads(self.trader("status", "--json").stdout)

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports['nats']}"


def wait_listening(port: int, what: str = "nats-server", timeout: float = 15) -> None:
    """Until something listens on ``port`` (a server just started)."""
    deadline = time.monotonic() + timeout
    while port_is_free(port):
        assert time.monotonic() < deadline, f"{what} did not start: nothing listens on {port}"
        time.sleep(0.05)


@contextlib.contextmanager
def nats_only(data_dir: Path) -> Iterator[Stack]:
    """A stack of which only a nats-server (with JetStream) runs: for services that need nothing else."""
    stack = Stack.create(data_dir)
    port = stack.ports["nats"]
    store = str(data_dir / "nats")
    command = [find_binary("nats-server"), "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    try:
        yield stack
    finally:
        server.terminate()
        server.wait(10)


class RestartableNats:
    """A nats-server with JetStream on file storage that can be stopped and started again."""

    def __init__(self, store: Path) -> None:
        self.store, self.port = store, free_port_map()["nats"]
        assert PORT_RANGE[0] <= self.port < PORT_RANGE[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            find_binary("nats-server"),
            "-js",
            "-sd",
            str(self.store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
