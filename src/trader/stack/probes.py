"""Asking a component whether it is alive and ready, by URL: http:// (200 means yes) or tcp://."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import httpx


@dataclass
class ProbeResult:
    ok: bool
    body: Any = None
    error: str | None = None


async def probe(url: str, client: httpx.AsyncClient, timeout: float = 2.0) -> ProbeResult:
    if url.startswith("tcp://"):
        parsed = urlparse(url)
        return await _tcp(parsed.hostname or "127.0.0.1", parsed.port or 0, timeout)
    import httpx  # the caller's client has loaded it; `trader down` and a stopped `status` need not

    try:
        response = await client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return ProbeResult(False, error=type(exc).__name__)
    body: Any = response.text
    if "json" in response.headers.get("content-type", ""):
        with contextlib.suppress(json.JSONDecodeError):
            body = response.json()
    return ProbeResult(
        response.status_code == 200, body, None if response.status_code == 200 else str(response.status_code)
    )


async def _tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, error=type(exc).__name__)
    writer.close()
    return ProbeResult(True)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """Who listens on ``port``, as 'name (pid N)', when the system tells; '' otherwise."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except Exception:
        return ""
    return ""
