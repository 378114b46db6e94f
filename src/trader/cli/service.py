"""`trader service run NAME`: one service in this process, as the supervisor starts each of them.

It is the command a stack starts eighteen times at once, so ``trader.cli.entry`` runs it without
loading the rest of the command line (its commands, their libraries): each service starts on less CPU.
"""

from __future__ import annotations

from trader.cli.format import err


def run(name: str) -> int:
    """Run service ``name`` until it stops; its exit code (2: an unknown name or invalid settings)."""
    from trader.config import Settings
    from trader.runtime.service import run_service
    from trader.services import REGISTRY, load_service

    if name not in REGISTRY:
        err.print(f"[red]error:[/] unknown service {name!r}; known: {', '.join(sorted(REGISTRY))}")
        return 2
    try:
        settings = Settings()
    except Exception as exc:  # a bad setting: say which, not a traceback
        err.print(f"[red]error:[/] invalid settings: {exc}")
        return 2
    spec = REGISTRY[name]
    return run_service(
        name,
        load_service(name),
        settings,
        port_field=spec.port_field,
        metrics_port_field=spec.metrics_port_field,
    )
