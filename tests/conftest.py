"""Shared by every test file. When the suite runs on several pytest-xdist workers (`make test` runs
PYTEST_WORKERS of them), a file marked ``alone`` (its checks depend on the machine keeping up: the
backtest-parity run, the browser) runs with no other file beside it: it takes a lock every other file
shares. A file of one process, `pytest FILE`, takes no lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: no other test file runs beside this one on xdist")


@pytest.fixture(scope="module", autouse=True)
def _files_share_the_machine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # The workers' base directories (popen-gw0, popen-gw1) share this run's parent.
    path = tmp_path_factory.getbasetemp().parent / "files-alone.lock"
    alone = request.node.get_closest_marker("alone") is not None
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
