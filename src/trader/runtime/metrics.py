"""Prometheus metrics every service exports, plus the message rates `trader status` shows."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# A message's wait in its stream: from a millisecond (a hop of the order path) to a minute (a backlog).
DELAY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        labels = ["service"]
        self._in = Counter("trader_messages_in", "Messages taken in", labels, registry=self.registry)
        self._out = Counter("trader_messages_out", "Messages published", labels, registry=self.registry)
        self._errors = Counter("trader_errors", "Errors, by kind", [*labels, "kind"], registry=self.registry)
        self._dead = Counter(
            "trader_dead_letters",
            "Messages sent to the dead letters, by field at fault",
            [*labels, "reason"],
            registry=self.registry,
        )
        self._lag = Gauge(
            "trader_consumer_lag",
            "Messages in the stream not yet delivered to the consumer",
            [*labels, "consumer"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "trader_batch_latency_seconds",
            "Time to process one batch",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._up = Gauge("trader_nats_connected", "1 while connected to NATS", labels, registry=self.registry)
        self._ready = Gauge(
            "trader_ready", "1 while the service is ready (/ready: 200)", labels, registry=self.registry
        )
        self._delay = Histogram(
            "trader_intake_delay_seconds",
            "How long the oldest message of a live batch waited in its stream before the service took it",
            [*labels, "input"],
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        )
        # The service's own series, bound once: ``labels()`` costs more than the increment, per message.
        self._in_series, self._out_series = self._in.labels(service), self._out.labels(service)
        self._latency_series = self._latency.labels(service)
        self.count_in_total = 0
        self.count_out_total = 0
        self.count_errors_total = 0
        self.count_dead_total = 0
        self.in_rate = RateMeter()
        self.out_rate = RateMeter()

    def count_in(self, n: int = 1) -> None:
        self.count_in_total += n
        self._in_series.inc(n)

    def count_out(self, n: int = 1) -> None:
        self.count_out_total += n
        self._out_series.inc(n)

    def count_error(self, kind: str, n: int = 1) -> None:
        self.count_errors_total += n
        self._errors.labels(self.service, kind).inc(n)

    def count_dead_letter(self, reason: str, n: int = 1) -> None:
        self.count_dead_total += n
        self._dead.labels(self.service, reason).inc(n)

    def set_lag(self, consumer: str, pending: int) -> None:
        self._lag.labels(self.service, consumer).set(pending)

    def observe_batch(self, seconds: float) -> None:
        self._latency_series.observe(seconds)

    def set_connected(self, connected: bool) -> None:
        self._up.labels(self.service).set(1 if connected else 0)

    def set_ready(self, ready: bool) -> None:
        self._ready.labels(self.service).set(1 if ready else 0)

    def observe_delay(self, input_name: str, seconds: float) -> None:
        """The wait of a batch's oldest message, from when JetStream stored it (to the millisecond) to
        when its batch was taken: with the batch latency, a hop's share of a path's latency."""
        self._delay.labels(self.service, input_name).observe(max(seconds, 0.0))

    def sample_rates(self) -> None:
        self.in_rate.sample(self.count_in_total)
        self.out_rate.sample(self.count_out_total)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RateMeter:
    """Messages per second, smoothed: an exponentially weighted average of per-sample rates."""

    def __init__(self, alpha: float = 0.4) -> None:
        self.alpha = alpha
        self.rate = 0.0
        self._last: tuple[float, int] | None = None

    def sample(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if self._last is not None and now > self._last[0]:
            instant = (total - self._last[1]) / (now - self._last[0])
            self.rate = instant if self.rate == 0 else self.alpha * instant + (1 - self.alpha) * self.rate
        self._last = (now, total)
        return self.rate
