"""A service's problems: its own, its consumers' (stalled, far behind), and what /health and /ready say."""

from __future__ import annotations

from typing import Any

from trader.config import Settings
from trader.runtime.health import ConsumerWatch, Problem, Silence, duration, problems_of
from trader.runtime.service import Runtime, Service

NOW_MS = 1_795_600_000_000


def test_a_consumer_that_keeps_up_is_no_problem() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("sink", pending=5_000, last_arrival_ms=NOW_MS - 2_000, now=100.0)
    assert watch.problems(now=101.0, now_ms=NOW_MS) == []


def test_a_consumer_far_behind_its_stream_is_a_problem_naming_it() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("sink-ticks", pending=120_000, last_arrival_ms=NOW_MS - 180_000, now=100.0)
    assert watch.problems(now=101.0, now_ms=NOW_MS) == [
        Problem("consumer sink-ticks is 3 min behind its stream (120,000 messages not yet taken)")
    ]


def test_old_messages_with_nothing_after_them_are_not_behind() -> None:
    """A quiet stream: the last message is old, but the consumer has it and nothing waits."""
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("oms", pending=0, last_arrival_ms=NOW_MS - 3_600_000, now=100.0)
    assert watch.problems(now=101.0, now_ms=NOW_MS) == []


def test_a_consumer_stuck_with_messages_waiting_falls_behind_as_time_passes() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("normalizer", pending=10, last_arrival_ms=NOW_MS, now=100.0)
    assert watch.problems(now=130.0, now_ms=NOW_MS + 30_000) == []
    assert [p.reason for p in watch.problems(now=190.0, now_ms=NOW_MS + 90_000)] == [
        "consumer normalizer is 90 s behind its stream (10 messages not yet taken)"
    ]


def test_an_empty_batch_keeps_the_time_of_the_last_message_taken() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("c", pending=3, last_arrival_ms=NOW_MS, now=100.0)
    watch.note("c", pending=3, last_arrival_ms=None, now=170.0)
    assert len(watch.problems(now=171.0, now_ms=NOW_MS + 71_000)) == 1


def test_a_consumer_that_hands_over_no_batch_is_stalled() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("sink-alt", pending=0, last_arrival_ms=NOW_MS, now=100.0)
    assert watch.problems(now=399.0, now_ms=NOW_MS) == []
    assert watch.problems(now=460.0, now_ms=NOW_MS) == [
        Problem("consumer sink-alt stalled: no batch taken for 6 min")
    ]


def test_a_forgotten_consumer_is_no_ones_problem() -> None:
    watch = ConsumerWatch(behind_s=60, stall_s=300)
    watch.note("c", pending=0, last_arrival_ms=NOW_MS, now=100.0)
    watch.forget("c")
    watch.forget("never-seen")
    assert watch.problems(now=10_000.0, now_ms=NOW_MS) == []


def test_silence_counts_from_the_expectation_then_from_the_last_word() -> None:
    silence = Silence(quiet_s=60)
    silence.expect(["BTCUSDT", "NOPEUSDT"], now=0.0)
    silence.heard("BTCUSDT", now=30.0)
    silence.heard("ELSEUSDT", now=30.0)  # not expected: not watched
    assert silence.quiet(now=59.0) == {}
    assert silence.quiet(now=61.0) == {"NOPEUSDT": (61.0, False)}
    assert silence.quiet(now=95.0) == {"BTCUSDT": (65.0, True), "NOPEUSDT": (95.0, False)}
    silence.expect(["BTCUSDT"], now=95.0)  # expected again (a new subscription): keeps its history
    assert "BTCUSDT" in silence.quiet(now=95.0)


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(s) for s in (5, 119, 180, 7199, 7200, 200_000)] == [
        "5 s",
        "119 s",
        "3 min",
        "120 min",
        "2 h",
        "2 days",
    ]


def test_problems_are_read_back_from_a_probe_answer() -> None:
    body = {"problems": [{"reason": "no strategy running", "lasting": True}, {"reason": "late"}]}
    assert problems_of(body) == [Problem("no strategy running", True), Problem("late")]
    assert problems_of("Service Unavailable") == []
    assert problems_of({"ready": False}) == []


class Idle(Service):
    name = "idle"

    def __init__(self, settings: Settings, problems: list[Problem]) -> None:
        super().__init__(settings)
        self._problems = problems

    async def run(self, rt: Runtime) -> None:
        await rt.stopping.wait()

    def problems(self) -> list[Problem]:
        return self._problems


class Broken(Idle):
    def problems(self) -> list[Problem]:
        raise KeyError("venues")


class Connected(Runtime):
    @property
    def connected(self) -> bool:
        return True


def _probes(service: Service, *, started: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    rt = Connected(service.name, service.settings)
    rt.started = started
    return rt.health(service), rt.readiness(service)


def test_a_service_doing_its_job_is_ok_and_ready() -> None:
    health, ready = _probes(Idle(Settings(), []))
    assert (health["status"], health["problems"]) == ("ok", [])
    assert (ready["ready"], ready["problems"]) == (True, [])


def test_a_service_with_a_problem_is_degraded_and_not_ready_with_the_reason() -> None:
    health, ready = _probes(Idle(Settings(), [Problem("venue binance disconnected")]))
    assert health["status"] == "degraded"
    assert health["problems"] == [{"reason": "venue binance disconnected", "lasting": False}]
    assert ready["ready"] is False
    assert ready["checks"] == {"started": True, "nats": True}
    assert ready["problems"] == health["problems"]


def test_a_problem_is_told_while_the_service_still_starts() -> None:
    health, ready = _probes(Idle(Settings(), [Problem("no strategy running", lasting=True)]), started=False)
    assert health["problems"] == [{"reason": "no strategy running", "lasting": True}]
    assert ready["problems"] == health["problems"]


def test_consumers_count_once_the_service_has_started() -> None:
    service = Idle(Settings(), [])
    rt = Connected(service.name, service.settings)
    rt.consumers = ConsumerWatch(behind_s=60, stall_s=300)
    rt.note_consumer("idle", pending=50, last_arrival_ms=1)  # stored in 1970: far behind
    assert rt.readiness(service)["problems"] == []  # starting: a start replays history
    rt.started = True
    reasons = [p["reason"] for p in rt.readiness(service)["problems"]]
    assert len(reasons) == 1
    assert reasons[0].startswith("consumer idle is ")
    assert b'trader_consumer_lag{consumer="idle",service="idle"} 50.0' in rt.metrics.exposition()


def test_a_check_that_fails_is_itself_the_problem() -> None:
    health, ready = _probes(Broken(Settings(), []))
    assert health["problems"] == [{"reason": "its health check failed: KeyError('venues')", "lasting": False}]
    assert ready["ready"] is False


def test_a_started_service_that_lost_nats_says_so() -> None:
    service = Idle(Settings(), [])
    rt = Runtime(service.name, service.settings)  # never connected
    assert rt.readiness(service)["problems"] == []  # starting: connecting is part of it
    rt.started = True
    assert rt.health(service)["problems"] == [
        {"reason": "not connected to NATS: reconnecting", "lasting": False}
    ]
    assert rt.readiness(service)["ready"] is False
