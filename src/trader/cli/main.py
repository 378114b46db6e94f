"""The `trader` command line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from trader.cli import alt, backtest, bench, data, replay, trading
from trader.cli.bars import bars as bars_command
from trader.cli.features import features as features_command
from trader.cli.format import fitted, log_line
from trader.cli.settings import config as config_command
from trader.cli.spreads import spreads as spreads_command
from trader.config import Settings
from trader.runtime.logging import configure_logging
from trader.stack.base import StackError
from trader.stack.state import StackState, read_state, supervisor_running
from trader.stack.status import (
    STARTED,
    collect_status,
    degraded_at_start,
    degraded_lines,
    port_table,
    process_alive,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="trader: a crypto trading backend.")
service_app = typer.Typer(no_args_is_help=True, help="Run one service in this process.")
app.add_typer(service_app, name="service")
app.add_typer(data.lake_app, name="lake")
app.add_typer(data.dlq_app, name="dlq")
app.add_typer(bench.bench_app, name="bench")
app.command()(data.query)
app.command()(trading.orders)
app.command()(trading.positions)
app.command()(trading.pnl)
app.command()(trading.order)
app.command()(trading.cancel)
app.command()(trading.kill)
app.command()(trading.resume)
app.command("spreads")(spreads_command)
app.command("features")(features_command)
app.command("funding")(alt.funding)
app.command("oi")(alt.oi)
bench.bench_app.command("alt")(alt.bench_alt)
app.command("bars")(bars_command)
app.command("config")(config_command)
app.command("backtest")(backtest.backtest)
app.command("replay")(replay.replay)

# Piped output (scripts, logs) is not cut to 80 columns: names and ports must stay whole.
console = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)


@app.callback()
def _quiet_libraries() -> None:
    # Commands print their results on stdout; what the libraries log goes to stderr, warnings and up.
    # `up`, `supervise` and `service run` configure their own logs.
    configure_logging("WARNING", "console", stream=sys.stderr)
    _settings()  # every command refuses bad settings (an unknown key) with one message, no traceback


ServicesOpt = Annotated[
    str | None,
    typer.Option("--services", help="Comma-separated services to run (default: the `services` setting)."),
]


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # a bad setting: say which, not a traceback
        err.print(f"[red]error:[/] invalid settings: {exc}")
        raise typer.Exit(2) from None


def _service_list(settings: Settings, services: str | None) -> list[str]:
    if services is None:
        return list(settings.services)
    return [s.strip() for s in services.split(",") if s.strip()]


# Stack ------------------------------------------------------------------------------------------


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; return once ready.")
    ] = False,
    services: ServicesOpt = None,
    live: Annotated[
        bool, typer.Option("--live", help="Also run live-gateway (venues from the live_gateway setting).")
    ] = False,
) -> None:
    """Start the servers, the streams and bucket, and the services; return when all are ready.

    A service that runs but cannot do its job (no strategy loaded, a venue disconnected) is waited for
    until its start timeout (not at all when only a configuration change can fix it); then the reasons
    are printed and the exit code is 1: at once with --detach (the stack keeps running, degraded), at
    the stop otherwise."""
    settings = _settings()
    names = _service_list(settings, services)
    if live and "live-gateway" not in names:
        if not settings.live_gateway.venues and not settings.live_gateway.alt:
            err.print("[yellow]warning:[/] --live with no venue in the live_gateway setting: it will idle")
        names.append("live-gateway")
    if supervisor_running(settings.run_dir):
        err.print(
            f"[red]error:[/] trader is already running (data directory {settings.data_dir}): "
            "`trader status`, `trader down`"
        )
        raise typer.Exit(1)
    if "api" in names:
        _ensure_api_tokens(settings)
    if detach:
        raise typer.Exit(_up_detached(settings, names))
    configure_logging(settings.log_level, "console", component="supervisor")
    code = asyncio.run(_supervise(settings, names, on_ready=lambda: _print_ready(settings)))
    raise typer.Exit(code)


def _ensure_api_tokens(settings: Settings) -> None:
    """The api's token file, made with random tokens when no token is given: its path said once (the
    tokens never: they are read from the file, mode 0600)."""
    from trader.api.auth import ensure_token_file

    created = ensure_token_file(settings)
    if created is not None:
        line = f"api tokens (a read and a trade token) written to {created} (mode 0600)"
        err.print(line, soft_wrap=True, markup=False, highlight=False)  # the path whole, on one line


@app.command(hidden=True)
def supervise(services: ServicesOpt = None) -> None:
    """Run the supervisor in this process (what `trader up --detach` starts in the background)."""
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format, component="supervisor")
    raise typer.Exit(asyncio.run(_supervise(settings, _service_list(settings, services))))


async def _supervise(
    settings: Settings, names: list[str], on_ready: Callable[[], Awaitable[None]] | None = None
) -> int:
    from trader.stack.supervisor import Supervisor  # the servers' and services' modules: not for `status`

    try:
        supervisor = Supervisor(settings, names)
    except StackError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.request_stop)
    task = asyncio.create_task(supervisor.run(on_ready=on_ready))
    # A stop asked for while starting interrupts the start; the supervisor then stops what it started.
    stop = asyncio.create_task(supervisor.stop_event.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done() and supervisor.phase == "starting":
        task.cancel()
    try:
        code = await task
    except asyncio.CancelledError:
        code = 0
    finally:
        stop.cancel()
    if supervisor.error:
        err.print(f"[red]error:[/] {escape(supervisor.error)}", soft_wrap=True)
    return code or (1 if supervisor.degraded else 0)


async def _print_ready(settings: Settings) -> None:
    state = read_state(settings.run_dir)
    if state is not None:
        await _print_status(state)
    if state is not None and _print_degraded(state):
        err.print(
            "[yellow]trader is up, degraded.[/] `trader status` shows it now; "
            "Ctrl-C or `trader down` stops it."
        )
    else:
        err.print("[green]trader is up.[/] Ctrl-C or `trader down` stops it.")


def _print_degraded(state: StackState) -> bool:
    """Say which components could not do their job when started, and why; False when none."""
    lines = degraded_lines(degraded_at_start(state))
    for line in lines:
        err.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)  # whole: a reason is read, and grepped
    return bool(lines)


def _up_detached(settings: Settings, names: list[str]) -> int:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_file("supervisor")
    env = {**os.environ, "TRADER_DATA_DIR": str(settings.data_dir)}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trader", "supervise", "--services", ",".join(names)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    err.print(f"starting trader in the background (supervisor pid {proc.pid}, log {log_path}) ...")
    while True:
        state = read_state(settings.run_dir)
        mine = state is not None and state.supervisor_pid == proc.pid
        if state is not None and mine and state.phase in STARTED:
            asyncio.run(_print_status(state))
            if _print_degraded(state):
                err.print(
                    "trader is running, degraded: `trader status` shows it now, `trader logs NAME` tells "
                    "more, `trader down` stops it."
                )
                return 1
            err.print("[green]trader is up.[/] `trader status`, `trader logs NAME`, `trader down`.")
            return 0
        if (state is not None and mine and state.phase == "failed") or proc.poll() is not None:
            proc.wait()
            state = read_state(settings.run_dir)
            reason = state.error if state is not None and state.supervisor_pid == proc.pid else None
            why = reason or "the supervisor exited while starting"
            err.print(f"[red]error:[/] {escape(why)}", soft_wrap=True)  # one line, whatever the width
            err.print(f"supervisor log: {log_path}")
            return 1
        time.sleep(0.2)


@app.command()
def down(timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 90.0) -> None:
    """Stop everything `trader up` started, services first, leaving no process behind."""
    settings = _settings()
    state = read_state(settings.run_dir)
    if state is None:
        err.print("trader is not running (no state in the data directory).")
        return
    if process_alive(state.supervisor_pid) and supervisor_running(settings.run_dir):
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(state.supervisor_pid):
            err.print(f"[yellow]the supervisor did not stop within {timeout:.0f}s: killing it[/]")
            os.kill(state.supervisor_pid, signal.SIGKILL)
    leftovers = _kill_leftovers(state.components)
    if leftovers:
        err.print(f"[yellow]killed processes left behind:[/] {', '.join(leftovers)}")
    err.print("trader is down.")


def _kill_leftovers(components: list[dict]) -> list[str]:
    """A supervisor killed hard cannot stop its children: stop the recorded ones still alive."""
    killed = []
    for c in components:
        if c.get("managed") and process_alive(c.get("pid"), c.get("create_time")):
            os.killpg(c["pid"], signal.SIGTERM)
            for _ in range(100):
                if not process_alive(c["pid"], c.get("create_time")):
                    break
                time.sleep(0.1)
            else:
                os.killpg(c["pid"], signal.SIGKILL)
            killed.append(f"{c['name']} (pid {c['pid']})")
    return killed


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every component: pid, ports, health (ok, degraded with the reasons, down), readiness, restarts,
    message rates. Exits 1 unless every component is up and doing its job."""
    settings = _settings()
    state = read_state(settings.run_dir)
    if state is None:
        if as_json:
            console.print_json(data={"supervisor": None, "components": [], "healthy": False})
        else:
            err.print(f"trader is not running (nothing in {settings.run_dir}).")
        raise typer.Exit(1)
    report = asyncio.run(_print_status(state, as_json))
    raise typer.Exit(0 if report["healthy"] else 1)


async def _print_status(state: StackState, as_json: bool = False) -> dict:
    report = await collect_status(state)
    if as_json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        _render(report)
    return report


def _render(report: dict) -> None:
    sup = report["supervisor"]
    console.print(f"supervisor pid {sup['pid']} - {sup['phase']} - data {sup['data_dir']}")
    if sup["error"]:
        console.print(f"[red]{sup['error']}[/]")
    # No "kind" column: servers and services read apart by name, and the table fits 80 columns.
    columns = ("component", "pid", "ports", "state", "restarts", "in/s", "out/s")
    rows = [
        (
            c["name"],
            str(c["pid"]) if c["pid"] else ("external" if not c["managed"] else "-"),
            ", ".join(str(p) for p in c["ports"].values()) or "-",  # wraps between ports
            _state(c),
            c["restarts"],
            _rate(c["in_per_s"]),
            _rate(c["out_per_s"]),
        )
        for c in report["components"]
    ]
    console.print(fitted(columns, rows, console.width))
    for c in report["components"]:
        for reason in c["problems"]:
            console.print(f"[yellow]{c['name']} degraded:[/] {escape(reason)}", soft_wrap=True)
        for note in c.get("notes", ()):
            console.print(f"{c['name']}: {escape(note)}", soft_wrap=True)


def _state(component: dict) -> str:
    """Health and readiness in a word: down, degraded (with its reasons below the table), starting
    (healthy, not ready yet) or ready."""
    if not component["healthy"]:
        return "down"
    if component["problems"]:
        return "degraded"
    return "ready" if component["ready"] else "starting"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


@app.command()
def logs(
    name: Annotated[
        str, typer.Argument(help="A component: nats, seaweedfs, questdb, supervisor or a service.")
    ],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what is added.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Print the last this many lines.")] = 50,
    raw: Annotated[bool, typer.Option("--raw", help="The lines as written: JSON for services.")] = False,
) -> None:
    """Print a component's log: JSON lines as readable ones (time UTC, level, event, key=value); the
    servers' own lines (nats, seaweedfs, questdb) as they are."""
    settings = _settings()
    path = settings.log_file(name)
    if not path.exists():
        known = sorted(p.stem for p in settings.log_dir.glob("*.log")) if settings.log_dir.exists() else []
        err.print(f"no log for {name!r} in {settings.log_dir}; logs: {', '.join(known) or 'none'}")
        raise typer.Exit(1)
    _tail(path, lines, follow, (lambda line: line) if raw else (lambda line: log_line(line, name)))


def _tail(path: Path, lines: int, follow: bool, show: Callable[[str], str]) -> None:
    with path.open("r", errors="replace") as f:
        for line in deque(f, maxlen=lines):
            sys.stdout.write(show(line))
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(show(line))
                sys.stdout.flush()
            else:
                time.sleep(0.2)


@app.command()
def ports(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the port map in force (defaults overridden by settings): each port's component, and
    whether it runs now (running, restarting, external: a server trader did not start, not running)."""
    settings = _settings()
    state = read_state(settings.run_dir)
    rows = port_table(settings, state)
    if as_json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return
    shown = [(r["name"], r["port"], r["component"] or "-", _PORT_STATES[r["state"]]) for r in rows]
    console.print(fitted(("name", "port", "component", "state"), shown, console.width))
    if all(row["state"] == "not running" for row in rows):
        err.print("trader is not running: `trader up` starts it.")


_PORT_STATES = {
    "running": "[green]running[/]",
    "restarting": "[yellow]restarting[/]",
    "external": "external",
    "not running": "[dim]not running[/]",
}


@app.command()
def streams(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create or update the streams, then list them with their message counts."""
    from trader.bus.connection import NatsUnreachable, connect_once
    from trader.bus.streams import HISTORY_STREAMS, STREAMS, ensure_streams, history_room, stream_max_bytes
    from trader.cli.connect import CLIENT_NAME, unreachable
    from trader.risk.history_room import WARN_SHARE, HistoryUse

    settings = _settings()

    async def run() -> list[dict]:
        nc = await connect_once(settings.effective_nats_url, CLIENT_NAME)
        try:
            js = nc.jetstream()
            outcome = await ensure_streams(js, settings)
            rows = []
            for spec in STREAMS:
                info = await js.stream_info(spec.name)
                rows.append(
                    {
                        "stream": spec.name,
                        "subjects": spec.subjects,
                        "messages": info.state.messages,
                        "bytes": info.state.bytes,
                        "max_bytes": stream_max_bytes(spec, settings),  # -1: the trading history's room
                        "provisioned": outcome[spec.name],
                    }
                )
            return rows
        finally:
            await nc.close()

    try:
        rows = asyncio.run(run())
    except NatsUnreachable as exc:
        raise unreachable(exc) from None
    if as_json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return
    columns = ["stream", "subjects", "messages", "bytes", "at_most", "provisioned"]
    shown = [
        [
            r["stream"],
            " ".join(r["subjects"]),
            r["messages"],
            r["bytes"],
            r["max_bytes"] if r["max_bytes"] > 0 else "(history)",
            r["provisioned"],
        ]
        for r in rows
    ]
    console.print(fitted(columns, shown, console.width))
    use = HistoryUse(sum(r["bytes"] for r in rows if r["stream"] in HISTORY_STREAMS), history_room(settings))
    line = f"trading history: {use.used:,} of {use.room:,} bytes ({use.share:.0%})"
    if use.share >= WARN_SHARE:
        err.print(
            f"[yellow]warning:[/] {line}: when it is full JetStream refuses new orders; "
            "raise jetstream_max_file_store_bytes (and the disk) in time"
        )
    else:
        console.print(line)


@service_app.command("run")
def service_run(name: str) -> None:
    """Run service NAME in the foreground (the supervisor runs each service this way)."""
    from trader.cli.service import run

    raise typer.Exit(run(name))


def main() -> None:
    app()
