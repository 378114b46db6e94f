"""The supervisor's state file: what `trader status` and `trader down` read."""

from __future__ import annotations

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
