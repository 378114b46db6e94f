"""The service runtime: one place for connection, probes, metrics, config and shutdown.

A service is a small class: what it consumes, what it produces, its state. It implements ``run`` (and,
when it holds work in hand, ``stop``); ``run_service`` does the rest:

1. settings and JSON logs; 2. /health, /ready and /metrics on the service's port; 3. NATS, retried
with backoff and reconnected for ever; 4. the streams provisioned (create or update) before anything
consumes; 5. ``start`` then ``run``; 6. on SIGTERM or SIGINT: intake stops (``stopping`` is set),
``run`` returns, ``stop`` finishes and acknowledges the work in hand, NATS is drained, and the process
exits, all within ``shutdown_timeout_s``.

/ready means doing its job: started, connected, the service's own checks, and no problem
(``trader.runtime.health``: what the service names in ``problems``, and its consumers stalled or far
behind). /health stays 200 while the process lives, ``degraded`` with the reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import structlog
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from trader.bus.backoff import Backoff
from trader.bus.connection import connect_nats
from trader.bus.dlq import dead_letter
from trader.bus.publish import BatchResult, Outgoing, publish_batch
from trader.bus.refusals import Refused
from trader.bus.streams import ensure_streams
from trader.config import Settings
from trader.runtime.collector import CollectorWatch
from trader.runtime.health import ConsumerWatch, Problem
from trader.runtime.http import HttpServer, PortInUse, bind, build_probe_app
from trader.runtime.logging import configure_logging
from trader.runtime.metrics import ServiceMetrics

T = TypeVar("T")


class Service(ABC):
    """What a service implements. ``name`` is its key in ``trader.services.REGISTRY``."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self, rt: Runtime) -> None:
        """Open what the service needs beyond NATS (stores, consumers)."""

    @abstractmethod
    async def run(self, rt: Runtime) -> None:
        """Do the work until ``rt.stopping`` is set, then return."""

    async def stop(self, rt: Runtime) -> None:
        """Finish and acknowledge the work in hand; intake has already stopped."""

    def ready_checks(self) -> dict[str, bool]:
        """Readiness beyond the NATS connection, by name: false while starting (catching up)."""
        return {}

    def problems(self) -> list[Problem]:
        """What keeps the service from doing its job now (none: it is doing it). Called at every probe,
        from the start of the process on: it must not fail on what ``start`` has not built yet."""
        return []

    def health_details(self) -> dict[str, Any]:
        return {}

    def http_app(self, probes: FastAPI) -> FastAPI:
        """The app served on the service's port: the probes, unless the service serves more (the api
        serves its own app, with the probes in it)."""
        return probes

    def bind_host(self) -> str:
        """Where the service's port listens: ``bind_host`` (loopback by default)."""
        return self.settings.bind_host


class Runtime:
    """What a running service is handed: settings, log, metrics, the bus, and the stop signal."""

    def __init__(self, service_name: str, settings: Settings) -> None:
        self.name = service_name
        self.settings = settings
        self.log = structlog.get_logger(service_name)
        self.metrics = ServiceMetrics(service_name)
        self.stopping = asyncio.Event()
        self.started = False
        self.started_at = time.time()
        self.nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._connected = False
        self.consumers = ConsumerWatch()

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("not connected to NATS yet")
        return self._js

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            self.log.info("service.stopping")
            self.stopping.set()

    def on_connection_change(self, connected: bool) -> None:
        self._connected = connected
        self.metrics.set_connected(connected)

    async def publish_reliably(self, items: list[Outgoing], *, give_up_on_stop: bool = False) -> BatchResult:
        """Publish with acknowledgements, retrying what failed with backoff until all is stored.

        Retrying is safe because producers give their messages a ``Nats-Msg-Id``. While stopping, the
        retries go on until the shutdown deadline unless ``give_up_on_stop``.
        """
        total = BatchResult()
        backoff = Backoff(initial=0.1, maximum=5.0)
        todo = list(items)
        while todo:
            result = await publish_batch(self.js, todo)
            total.stored += result.stored
            total.duplicates += result.duplicates
            total.last_seq = max(total.last_seq, result.last_seq)
            self.metrics.count_out(result.stored + result.duplicates)
            if not result.failed:
                break
            self.metrics.count_error("publish", len(result.failed))
            self.log.warning("publish.retry", failed=len(result.failed), errors=result.errors[:3])
            todo = result.failed
            if give_up_on_stop and self.stopping.is_set():
                total.failed = todo
                break
            await backoff.sleep()
        return total

    async def retry(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` until it succeeds, with backoff: a store that drops is waited for, and the
        work in hand is kept. The shutdown deadline bounds it when the service is stopping."""
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                return await operation()
            except Exception as exc:
                self.metrics.count_error(what)
                self.log.warning(f"{what}.failed", error=repr(exc), retry=backoff.attempts + 1)
                await backoff.sleep()

    async def dead_letter(self, stream: str, refused: list[Refused]) -> None:
        """Send refused messages to the DLQ stream, whole, each with its reason; count them."""
        if not refused:
            return
        letters = [
            dead_letter(
                service=self.name,
                subject=r.subject,
                data=r.data,
                headers=r.headers,
                reason=r.reason,
                stream=stream,
                stream_seq=r.seq,
            )
            for r in refused
        ]
        await self.publish_reliably(letters)
        for r in refused:
            self.metrics.count_dead_letter(r.field)
        self.log.warning("dead_letters", count=len(refused), first_reason=refused[0].reason, stream=stream)

    # Probes ---------------------------------------------------------------------------------

    def note_consumer(self, name: str, pending: int, last_arrival_ms: int | None) -> None:
        """A consumer handed over a batch: its lag for /metrics, its progress for the problems."""
        self.metrics.set_lag(name, pending)
        self.consumers.note(name, pending, last_arrival_ms)

    def forget_consumer(self, name: str) -> None:
        self.consumers.forget(name)

    def problems(self, service: Service) -> list[Problem]:
        """The service's own, then (once started: a start replays history) its consumers'."""
        try:
            found = list(service.problems())
        except Exception as exc:  # a probe must answer: a check that fails is itself the problem
            found = [Problem(f"its health check failed: {exc!r}")]
        if self.started and not self.stopping.is_set():
            if not self.connected:
                found.append(Problem("not connected to NATS: reconnecting"))
            found += self.consumers.problems()
        return found

    def health(self, service: Service) -> dict[str, Any]:
        m = self.metrics
        problems = self.problems(service)
        return {
            "service": self.name,
            "status": "degraded" if problems else "ok",
            "problems": [p.as_dict() for p in problems],
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "nats_connected": self.connected,
            "rates": {"in_per_s": round(m.in_rate.rate, 1), "out_per_s": round(m.out_rate.rate, 1)},
            "counts": {
                "in": m.count_in_total,
                "out": m.count_out_total,
                "errors": m.count_errors_total,
                "dead_letters": m.count_dead_total,
            },
            **service.health_details(),
        }

    def readiness(self, service: Service) -> dict[str, Any]:
        checks = {"started": self.started, "nats": self.connected, **service.ready_checks()}
        problems = self.problems(service)
        ready = all(checks.values()) and not problems and not self.stopping.is_set()
        return {
            "service": self.name,
            "ready": ready,
            "checks": checks,
            "problems": [p.as_dict() for p in problems],
        }


def _http_ports(spec_port: int, metrics_port: int | None) -> list[int]:
    return [spec_port] if metrics_port is None else [spec_port, metrics_port]


async def serve(service: Service, port: int, metrics_port: int | None = None) -> int:
    """Run ``service`` until told to stop. Returns the process exit code."""
    settings = service.settings
    rt = Runtime(service.name, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.request_stop)

    probes = build_probe_app(
        f"trader {service.name}",
        lambda: rt.health(service),
        lambda: rt.readiness(service),
        rt.metrics.exposition,
    )
    app = service.http_app(probes)
    host = service.bind_host()
    servers = [
        HttpServer(app if p == port else probes, bind(host, p, service.name))
        for p in _http_ports(port, metrics_port)
    ]
    for server in servers:
        await server.start()
    rt.log.info("service.listening", ports=_http_ports(port, metrics_port))
    sampler = asyncio.create_task(_sample_rates(rt, service))
    code = 0
    try:
        code = await _lifecycle(service, rt)
    finally:
        sampler.cancel()
        for server in servers:
            await server.stop()
        rt.log.info("service.stopped", exit_code=code)
    return code


async def _lifecycle(service: Service, rt: Runtime) -> int:
    rt.nc = await connect_nats(
        rt.settings.effective_nats_url,
        rt.name,
        stop=rt.stopping,
        log=rt.log,
        on_change=rt.on_connection_change,
    )
    if rt.nc is None:
        return 0  # asked to stop before NATS ever answered
    rt._js = rt.nc.jetstream()
    outcome = await _with_retry(rt, "streams", lambda: ensure_streams(rt.js, rt.settings))
    if outcome is None:
        return await _close(service, rt, started=False)
    rt.log.info("streams.ready", streams=outcome)
    if await _with_retry(rt, "start", lambda: service.start(rt)) is None and rt.stopping.is_set():
        return await _close(service, rt, started=False)
    rt.started = True
    # What the start built (books rebuilt from the streams) lives as long as the service: out of the
    # garbage collector's sight from now on (see trader.runtime.collector).
    collector = CollectorWatch(rt.metrics)
    collector.start()
    rt.log.info("service.started")
    run_task = asyncio.create_task(service.run(rt))
    stop_task = asyncio.create_task(rt.stopping.wait())
    await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if run_task.done() and not rt.stopping.is_set():
        exc = run_task.exception()
        rt.log.error("service.crashed", error=repr(exc)) if exc else rt.log.error("service.run_returned")
        code = 1
        rt.stopping.set()
    stop_task.cancel()
    collector.stop()
    return await _close(service, rt, started=True, run_task=run_task, code=code)


async def _with_retry(rt: Runtime, what: str, step: Any) -> Any:
    """Run a start-up step, retrying with backoff while it fails (a store or NATS not there yet)."""
    backoff = Backoff(initial=0.2, maximum=5.0)
    while not rt.stopping.is_set():
        try:
            result = await step()
            return result if result is not None else True
        except Exception as exc:
            rt.metrics.count_error(what)
            rt.log.warning(f"{what}.failed", error=repr(exc))
            if not await backoff.sleep(rt.stopping):
                break
    return None


async def _close(
    service: Service, rt: Runtime, *, started: bool, run_task: asyncio.Task | None = None, code: int = 0
) -> int:
    deadline = rt.settings.shutdown_timeout_s
    try:
        async with asyncio.timeout(deadline):
            if run_task is not None and not run_task.done():
                await asyncio.gather(run_task, return_exceptions=True)
            if started:
                await service.stop(rt)
            if rt.nc is not None and not rt.nc.is_closed:
                await rt.nc.drain()  # flushes what is published and the acknowledgements given
    except TimeoutError:
        rt.log.error("service.shutdown_timeout", seconds=deadline)
        if run_task is not None:
            run_task.cancel()
        code = code or 1
    finally:
        if rt.nc is not None and not rt.nc.is_closed:
            with contextlib.suppress(Exception):
                await rt.nc.close()
    return code


async def _sample_rates(rt: Runtime, service: Service) -> None:
    """Every second: the rates `trader status` shows, and readiness for /metrics (``trader_ready``),
    judged here on the loop because /metrics is answered in a worker thread."""
    while True:
        rt.metrics.sample_rates()
        try:
            ready = bool(rt.readiness(service)["ready"])
        except Exception:  # a check that fails is not ready (and must not stop the rates)
            ready = False
        rt.metrics.set_ready(ready)
        await asyncio.sleep(1.0)


def run_service(
    name: str,
    service_class: Callable[[Settings], Service],
    settings: Settings | None = None,
    *,
    port_field: str,
    metrics_port_field: str | None = None,
) -> int:
    """Entry point of a service process: ``trader service run NAME``. The caller (the CLI) finds the
    service and its port fields in the registry (``trader.services``): the runtime names no service."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format, service=name)
    service = service_class(settings)
    port = getattr(settings.ports, port_field)
    metrics_port = getattr(settings.ports, metrics_port_field) if metrics_port_field else None
    try:
        return asyncio.run(serve(service, port, metrics_port))
    except PortInUse as exc:  # one line that says what to do, not a traceback
        field = port_field if exc.port == port else metrics_port_field
        sys.stderr.write(f"{exc} (set TRADER_PORTS__{str(field).upper()} or stop what uses it)\n")
        return 1
