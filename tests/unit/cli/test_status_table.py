"""`trader status` as a person reads it: the table fits an 80-column terminal with every component."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from trader.cli import main

NAMES = ["nats", "seaweedfs", "questdb", "execution-router", "sink-ticks", "strategy"]
PORTS = {"seaweedfs": {f"p{i}": 18333 + i for i in range(8)}}


def component(name: str) -> dict:
    return {
        "name": name,
        "kind": "infra" if name in ("nats", "seaweedfs", "questdb") else "service",
        "pid": 123456,
        "managed": True,
        "ports": PORTS.get(name, {"http": 8301}),
        "healthy": True,
        "ready": name != "strategy",
        "problems": ["strategy typo could not be loaded"] if name == "strategy" else [],
        "notes": [],
        "restarts": 12,
        "in_per_s": 20123.4,
        "out_per_s": 2.0,
    }


def test_the_status_table_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(main, "console", Console(file=out, width=80))
    supervisor = {"pid": 1, "phase": "degraded", "data_dir": "/data", "error": None}
    main._render({"supervisor": supervisor, "components": [component(n) for n in NAMES]})
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("component"))
    rows = [line.split()[0] for line in lines[header + 2 :] if line[:1].strip()]
    assert rows[: len(NAMES)] == NAMES  # one row each: a table, not records
    first = {}
    for line in lines[header + 2 :]:
        first.setdefault(line.split()[0] if line[:1].strip() else "", line)
    assert [n for n in NAMES if " ready " in first[n]] == [n for n in NAMES if n != "strategy"]
    assert " degraded " in first["strategy"]
    assert "strategy degraded: strategy typo could not be loaded" in out.getvalue()
