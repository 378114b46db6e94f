from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from tests.stack_helpers import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the integration tests that only use it: started by `trader up --detach`."""
    s = Stack.create(Path(tmp_path_factory.mktemp("stack")), TRADER_GATEWAY__RATE="200")
    s.trader("up", "--detach", check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[NATS]:
    client = await nats.connect(stack.nats_url)
    yield client
    await client.close()
