"""The supervisor's state file and lock: what `trader status`, `trader up` and `trader down` read."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import msgspec


class StackState(msgspec.Struct):
    supervisor_pid: int
    # starting | ready | degraded (started, a component not doing its job) | failed | stopping | stopped
    phase: str
    error: str | None
    data_dir: str
    updated_at: float
    components: list[dict[str, Any]]


def state_path(run_dir: Path) -> Path:
    return run_dir / "state.json"


def write_state(run_dir: Path, state: StackState) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".state.{os.getpid()}.tmp"
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(state)))
    os.replace(tmp, state_path(run_dir))  # readers never see half a file


def read_state(run_dir: Path) -> StackState | None:
    try:
        return msgspec.json.decode(state_path(run_dir).read_bytes(), type=StackState)
    except (FileNotFoundError, msgspec.DecodeError, json.JSONDecodeError):
        return None


def lock_path(run_dir: Path) -> Path:
    """The file a running supervisor holds locked (``flock``), with its pid."""
    return run_dir / "supervisor.lock"


def supervisor_running(run_dir: Path) -> bool:
    """True while some supervisor holds the lock of this data directory's ``run_dir``."""
    path = lock_path(run_dir)
    if not path.exists():
        return False
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False
