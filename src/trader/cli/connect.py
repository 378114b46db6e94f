"""How a command reaches NATS: one quiet attempt, and when nothing answers, one line that says what to
do (no reconnect warnings, no traceback, exit code 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from trader.cli.format import fail
from trader.config import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from trader.bus.connection import NatsUnreachable

T = TypeVar("T")
CLIENT_NAME = "trader-cli"


def unreachable(exc: NatsUnreachable) -> typer.Exit:
    return fail(f"{exc}: is the stack up? run `trader up`")


def run_on_nats(work: Callable[[NATS], Awaitable[T]], settings: Settings | None = None) -> T:
    """Connect, run ``work``, close; a server that does not answer is the one-line error above."""
    from trader.bus.connection import NatsUnreachable, connect_once  # nats: only for the commands using it

    url = (settings or Settings()).effective_nats_url

    async def main() -> T:
        nc = await connect_once(url, CLIENT_NAME)
        try:
            return await work(nc)
        finally:
            await nc.close()

    try:
        return asyncio.run(main())
    except NatsUnreachable as exc:
        raise unreachable(exc) from None
