"""The supervisor behind `trader up`: starts the stack in order, keeps it running, stops it cleanly.

Order of start: the servers (only those not already answering at their configured address), then
their provisioning (streams, bucket), then the services. Every port is checked free before anything
starts. A process that dies is restarted after an exponential backoff; its restart count is kept in
the state file that `trader status` reads. Stop goes in reverse: services first, then the servers.
A service that answers but cannot do its job (its /ready says why: ``trader.runtime.health``) is
waited for until its start timeout, or not at all when its problem will not go away on its own; the
stack then runs degraded (phase ``degraded``, the reasons in the state file) and `trader up` says so.
Every log file is capped (``cap_log``), so a stack left running does not fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import structlog

from trader.bus.backoff import set_within
from trader.config import Settings
from trader.runtime.backoff import Backoff
from trader.runtime.health import problems_of
from trader.services import REGISTRY
from trader.stack.base import Component, Infra, StackError
from trader.stack.nats import NatsServer
from trader.stack.probes import port_is_free, port_owner, probe
from trader.stack.questdb import QuestDBServer
from trader.stack.seaweedfs import SeaweedFS
from trader.stack.state import StackState, lock_path, write_state

PR_SET_PDEATHSIG = 1
LOG_CHECK_S = 30.0  # how often the log files' sizes are looked at


def _die_with_supervisor() -> None:
    """Runs in the child before exec: if the supervisor dies, even by SIGKILL, the child is told to
    stop, so no process is ever left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Running:
    component: Component
    backoff: Backoff
    popen: subprocess.Popen[bytes] | None = None
    state: str = "pending"
    restarts: int = 0
    started_at: float | None = None
    restart_at: float | None = None
    last_exit: int | None = None
    problems: list[str] = field(default_factory=list)  # why it could not do its job when started
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None


def infra_servers(settings: Settings) -> list[Infra]:
    return [NatsServer(settings), SeaweedFS(settings), QuestDBServer(settings)]


def service_component(settings: Settings, name: str) -> Component:
    spec = REGISTRY[name]
    port = getattr(settings.ports, spec.port_field)
    ports = {"http": port}
    if spec.metrics_port_field:
        ports["metrics"] = getattr(settings.ports, spec.metrics_port_field)
    base = f"http://{settings.bind_host}:{port}"
    return Component(
        name=name,
        kind="service",
        ports=ports,
        log_file=settings.log_file(name),
        health_url=f"{base}/health",
        ready_url=f"{base}/ready",
        argv=[sys.executable, "-m", "trader", "service", "run", name],
        env={"PYTHONUNBUFFERED": "1"},
        start_timeout_s=settings.supervisor.ready_timeout_s,
        stop_timeout_s=settings.shutdown_timeout_s + 5,
    )


def check_ports_free(planned: list[tuple[str, dict[str, int], Path]]) -> None:
    """Every (component, ports, log file) planned to start: fail on the first port already taken."""
    for name, ports, log_file in planned:
        for label, port in ports.items():
            if not port_is_free(port):
                owner = port_owner(port)
                raise StackError(
                    f"cannot start {name}: port {port} ({label}) is already in use"
                    f"{' by ' + owner if owner else ''}. Free it or move {name} to another port "
                    f"(see docs/ports.md). Log file: {log_file}"
                )


def cap_log(path: Path, max_bytes: int, keep: int) -> bool:
    """Copy ``path`` aside and empty it once it is over ``max_bytes`` (``<name>.1``, the one before
    moving to ``.2``, ... ``keep`` copies). Its writers opened it to append, so they go on writing at
    the start of the emptied file; what they write between the copy and the truncation is lost (the
    way logrotate's copytruncate works: a process's stdout cannot be reopened from outside)."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for generation in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{generation}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{generation + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as log:
        log.truncate(0)
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


class Supervisor:
    def __init__(self, settings: Settings, services: list[str]) -> None:
        unknown = [s for s in services if s not in REGISTRY]
        if unknown:
            raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
        self.settings = settings
        self.service_names = services
        self.log = structlog.get_logger("supervisor")
        self.runs: list[Running] = []
        self.phase = "starting"
        self.error: str | None = None
        self.stop_event = asyncio.Event()
        self._lock: IO[str] | None = None
        self._last_state: str | None = None

    # Lifecycle ----------------------------------------------------------------------------------

    async def run(self, on_ready: Any = None) -> int:
        """Start everything, supervise until asked to stop, stop everything. Returns the exit code."""
        self._acquire_lock()
        code = 0
        try:
            try:
                await self.start()
            except asyncio.CancelledError:
                self.phase = "stopping"
            except Exception as exc:  # whatever failed, what did start is stopped below
                self.error = str(exc) if isinstance(exc, StackError) else f"unexpected error: {exc!r}"
                self.phase = "failed"
                self.log.error("stack.failed", error=self.error, exc_info=not isinstance(exc, StackError))
                code = 1
            else:
                self.phase = "degraded" if self.degraded else "ready"
                self._write_state()
                if self.degraded:
                    self.log.error("stack.degraded", components=self.degraded)
                else:
                    self.log.info("stack.ready")
                if on_ready is not None:
                    await on_ready()
                await self.supervise()
        finally:
            if self.phase != "failed":
                self.phase = "stopping"
            self._write_state()
            await self.stop_all()
            self.phase = "failed" if code else "stopped"
            self._write_state()
            self._release_lock()
        return code

    @property
    def degraded(self) -> dict[str, list[str]]:
        """The components that could not do their job when started, with the reasons."""
        return {run.component.name: run.problems for run in self.runs if run.problems}

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            self.log.info("stack.stopping")
            self.stop_event.set()

    async def start(self) -> None:
        infra = infra_servers(self.settings)
        managed: list[Infra] = []
        for server in infra:
            if await server.reachable():
                self.log.info("infra.external", component=server.name)
                self._add(server.component(managed=False), state="external")
            elif not server.is_local():
                raise server.not_reachable_error("{}:{}".format(*server.address()))
            else:
                managed.append(server)
        services = [service_component(self.settings, name) for name in self.service_names]
        check_ports_free(  # before anything starts
            [(s.name, s.ports(), self.settings.log_file(s.name)) for s in managed]
            + [(c.name, c.ports, c.log_file) for c in services]
        )
        for server in managed:
            await asyncio.to_thread(server.prepare)
        infra_runs = [self._add(server.component(managed=True)) for server in managed]
        await self._start_and_wait(infra_runs)
        for server in infra:
            await self._provision(server)
        service_runs = [self._add(c) for c in services]
        await self._start_and_wait(service_runs)

    async def _provision(self, server: Infra) -> None:
        self.log.info("infra.provisioning", component=server.name)
        await server.provision()

    def _add(self, component: Component, state: str = "pending") -> Running:
        sup = self.settings.supervisor
        run = Running(
            component, Backoff(sup.restart_backoff_initial_s, sup.restart_backoff_max_s), state=state
        )
        self.runs.append(run)
        return run

    async def _start_and_wait(self, runs: list[Running]) -> None:
        for run in runs:
            self._spawn(run)
        self._write_state()
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(self._wait_ready(run, client) for run in runs))

    def _spawn(self, run: Running) -> None:
        c = run.component
        assert c.argv is not None
        c.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(c.env or {}), "TRADER_DATA_DIR": str(self.settings.data_dir)}
        with c.log_file.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} trader supervisor starts: {shlex.join(c.argv)}\n".encode())
            log.flush()
            run.popen = subprocess.Popen(
                c.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=c.cwd,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops them in order
                preexec_fn=_die_with_supervisor,
            )
        run.started_at = time.monotonic()
        run.state = "starting"
        with contextlib.suppress(psutil.Error):
            run.extra["create_time"] = psutil.Process(run.popen.pid).create_time()
        self.log.info("component.started", component=c.name, pid=run.popen.pid, ports=c.ports)

    async def _wait_ready(self, run: Running, client: httpx.AsyncClient) -> None:
        c = run.component
        deadline = time.monotonic() + c.start_timeout_s
        ports = ", ".join(f"{label} {port}" for label, port in c.ports.items())
        while True:
            if self.stop_event.is_set():
                raise asyncio.CancelledError
            if run.popen is not None and run.popen.poll() is not None:
                raise StackError(
                    f"{c.name} exited with code {run.popen.returncode} while starting (ports: {ports}). "
                    f"Log file: {c.log_file}\n{log_tail(c.log_file)}"
                )
            ready = await probe(c.ready_url, client)
            if ready.ok:
                run.state = "running"
                self.log.info("component.ready", component=c.name)
                return
            problems = problems_of(ready.body)
            if problems and (time.monotonic() > deadline or any(p.lasting for p in problems)):
                run.state = "running"  # it runs, and is watched and restarted like the others
                run.problems = [p.reason for p in problems]
                self.log.error("component.degraded", component=c.name, problems=run.problems)
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{c.name} did not become ready within {c.start_timeout_s:.0f}s (ports: {ports}; "
                    f"probe {c.ready_url}). Log file: {c.log_file}\n{log_tail(c.log_file)}"
                )
            await asyncio.sleep(0.2)

    async def supervise(self) -> None:
        reset_after = self.settings.supervisor.restart_backoff_reset_s
        next_log_check = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now >= next_log_check:
                self._cap_logs()
                next_log_check = now + LOG_CHECK_S
            for run in self.runs:
                if run.popen is None:
                    continue
                if run.state in ("running", "starting") and run.popen.poll() is not None:
                    run.last_exit = run.popen.returncode
                    if run.started_at is not None and now - run.started_at > reset_after:
                        run.backoff.reset()
                    delay = run.backoff.next_delay()
                    run.restarts += 1
                    run.state = "backoff"
                    run.restart_at = now + delay
                    self.log.warning(
                        "component.exited",
                        component=run.component.name,
                        code=run.last_exit,
                        restart_in_s=round(delay, 2),
                        restarts=run.restarts,
                    )
                elif run.state == "backoff" and run.restart_at is not None and now >= run.restart_at:
                    self._spawn(run)
                    run.state = "running"
            self._write_state()
            await set_within(self.stop_event, 0.25)

    def _cap_logs(self) -> None:
        cfg = self.settings.supervisor
        paths = {self.settings.log_file("supervisor"), *(run.component.log_file for run in self.runs)}
        for path in sorted(paths):
            try:
                if cap_log(path, cfg.log_max_bytes, cfg.log_keep):
                    self.log.info("log.capped", log=str(path), max_bytes=cfg.log_max_bytes)
            except OSError as exc:  # a full disk must not stop the supervision
                self.log.warning("log.cap_failed", log=str(path), error=repr(exc))

    async def stop_all(self) -> None:
        services = [r for r in self.runs if r.component.kind == "service"]
        infra = [r for r in self.runs if r.component.kind == "infra"]
        await asyncio.gather(*(self._terminate(r, r.component.stop_timeout_s) for r in services))
        for run in reversed(infra):  # QuestDB, SeaweedFS, then NATS last
            await self._terminate(run, run.component.stop_timeout_s)

    async def _terminate(self, run: Running, grace: float) -> None:
        popen = run.popen
        if popen is None:
            return
        run.state = "stopping"
        if popen.poll() is None:
            self._signal(popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if popen.poll() is None:
                log = self.log.info if run.component.killed_at_stop else self.log.warning
                log("component.kill", component=run.component.name, after_s=grace)
                self._signal(popen.pid, signal.SIGKILL)
                await asyncio.to_thread(popen.wait)
        run.last_exit = popen.returncode
        run.state = "stopped"
        self.log.info("component.stopped", component=run.component.name, code=popen.returncode)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # Each child leads its own process group: signal the group, so helpers it spawned go too.
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # State ----------------------------------------------------------------------------------------

    def snapshot(self) -> StackState:
        components = []
        for run in self.runs:
            c = run.component
            components.append(
                {
                    "name": c.name,
                    "kind": c.kind,
                    "managed": c.managed,
                    "state": run.state,
                    "pid": run.pid,
                    "create_time": run.extra.get("create_time") if run.pid else None,
                    "ports": c.ports,
                    "restarts": run.restarts,
                    "last_exit": run.last_exit,
                    "problems": run.problems,
                    "health_url": c.health_url,
                    "ready_url": c.ready_url,
                    "log": str(c.log_file),
                }
            )
        return StackState(
            supervisor_pid=os.getpid(),
            phase=self.phase,
            error=self.error,
            data_dir=str(self.settings.data_dir),
            updated_at=time.time(),
            components=components,
        )

    def _write_state(self) -> None:
        state = self.snapshot()
        key = repr((state.phase, state.error, state.components))
        if key != self._last_state:
            write_state(self.settings.run_dir, state)
            self._last_state = key

    def _acquire_lock(self) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_path(self.settings.run_dir).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackError(
                f"trader is already running with data directory {self.settings.data_dir}: "
                "see `trader status`, or stop it with `trader down`"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
