from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from tests.stack_helpers import RestartableNats, Stack
from trader.bus.connection import connect_nats

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the integration tests that only use it: started by `trader up --detach`. It runs
    until the session ends, beside the other files' stacks: a slow feed keeps it from loading them."""
    s = Stack.create(Path(tmp_path_factory.mktemp("stack")), TRADER_GATEWAY__RATE="10")
    s.trader("up", "--detach", check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[NATS]:
    """A connection as the services make it (reading in bulk)."""
    client = await connect_nats(stack.nats_url, "test")
    assert client is not None
    yield client
    await client.close()


@pytest.fixture
def restartable_nats(tmp_path: Path) -> Iterator[RestartableNats]:
    """A nats-server of the test's own, with JetStream on file storage, that it can stop and start."""
    server = RestartableNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
