"""Connecting to NATS: a service's first connection retried with backoff, later drops reconnected
forever; a command's connection tried once, quietly, failing in a line."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from trader.bus.backoff import Backoff
from trader.bus.wire import bulk_client


class NatsUnreachable(ConnectionError):
    """No NATS server answered a command's one attempt to connect."""


async def connect_once(url: str, name: str, *, timeout: float = 2.0) -> NATS:
    """Connect for a short-lived command: one attempt, no reconnecting and nothing logged, so a server
    that is down is a ``NatsUnreachable`` within ``timeout`` seconds, not a stream of retries."""

    async def quiet(exc: Exception) -> None:
        pass

    nc = bulk_client()
    try:
        # nats-py tries a server max_reconnect_attempts + 1 times even on a first connect (0 would
        # mean for ever): two quick tries, then NoServersError.
        await nc.connect(
            url,
            name=name,
            connect_timeout=timeout,  # type: ignore[arg-type]  # nats-py says int; it takes float seconds
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,  # type: ignore[arg-type]  # (the same)
            error_cb=quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise NatsUnreachable(f"cannot reach NATS at {url}") from exc
    return nc


async def connect_nats(
    url: str,
    name: str,
    *,
    stop: asyncio.Event | None = None,
    log: Any = None,
    on_change: Any = None,
) -> NATS | None:
    """Connect, retrying with backoff until connected; None if ``stop`` is set first.

    The connection parses the wire with ``BulkParser``, which the bulk consumers need. Once connected,
    nats-py reconnects on its own without limit. Its wait between attempts has no
    jitter of its own, so each process draws its own wait once, spreading a herd of reconnects.
    """
    log = log or structlog.get_logger()
    backoff = Backoff(initial=0.2, maximum=5.0)

    client: list[NATS] = []

    async def disconnected() -> None:
        if client and client[0].is_closed:
            log.debug("nats.closed", url=url)  # our own close: nothing to report
            return
        log.warning("nats.disconnected", url=url)
        if on_change:
            on_change(False)

    async def reconnected() -> None:
        log.info("nats.reconnected", url=url)
        if on_change:
            on_change(True)

    async def error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc) or type(exc).__name__)

    while stop is None or not stop.is_set():
        try:
            nc = bulk_client()
            await nc.connect(
                url,
                name=name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=random.uniform(0.5, 1.5),  # type: ignore[arg-type]  # (the same)
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
            log.warning("nats.connect_failed", url=url, error=str(exc) or type(exc).__name__)
            if not await backoff.sleep(stop):
                return None
            continue
        client.append(nc)
        log.info("nats.connected", url=url)
        if on_change:
            on_change(True)
        return nc
    return None
