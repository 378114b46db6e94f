"""The `trader` command's entry point: `trader service run NAME` goes straight to the service (see
``trader.cli.service``); every other command through the whole command line, ``trader.cli.main``."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 3 and args[:2] == ["service", "run"] and not args[2].startswith("-"):
        from trader.cli.service import run

        sys.exit(run(args[2]))
    from trader.cli.main import app

    app()
