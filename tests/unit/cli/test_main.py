"""`trader` starts without the heavy libraries: loading the command line (what `trader status`, `up`,
`down` and `--help` pay on every call) imports none of them; each command imports what it uses when it
runs. In a fresh interpreter, since this test process has most of them loaded already."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "nats",
    "aiohttp",
    "questdb",
    "numpy",
    "pyarrow",
    "deltalake",
    "polars",
    "duckdb",
    "fastapi",
    "uvicorn",
)


def test_the_command_line_loads_without_the_heavy_libraries() -> None:
    code = f"import trader.cli.main, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
