"""The running stack, on real NATS, SeaweedFS and QuestDB."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid

import httpx
import pyarrow.fs as pafs
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.stack_helpers import Stack
from trader.bus.streams import STREAMS, ensure_streams
from trader.config import Settings
from trader.marketdata.decode import decode_tick
from trader.stack.seaweedfs import s3_filesystem

pytestmark = pytest.mark.integration

COMPONENTS = {"nats", "seaweedfs", "questdb", *Settings().services}


def test_status_reports_every_component_healthy_and_ready(stack: Stack) -> None:
    report = stack.status()
    assert report["healthy"] is True
    assert report["supervisor"]["phase"] == "ready"
    rows = {c["name"]: c for c in report["components"]}
    assert set(rows) == COMPONENTS
    for name, row in rows.items():
        assert row["healthy"], name
        assert row["ready"], name
        assert row["pid"], name
        assert row["alive"], name
    assert rows["gateway"]["ports"] == {"http": stack.ports["gateway"]}


def test_status_table_names_every_component(stack: Stack) -> None:
    result = stack.trader("status")
    assert result.returncode == 0, result.stderr
    for name in COMPONENTS:
        assert name in result.stdout


async def test_streams_provisioned_twice_change_nothing(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    before = {s.name: await js.stream_info(s.name) for s in STREAMS}
    assert await ensure_streams(js, stack.settings()) == dict.fromkeys(before, "unchanged")
    assert await ensure_streams(js, stack.settings()) == dict.fromkeys(before, "unchanged")
    for name, info in before.items():
        after = await js.stream_info(name)
        assert after.config == info.config, name
        assert after.created == info.created, name


async def test_gateway_ticks_arrive_on_market_ticks(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "market.tick.>",
        stream="MARKET_TICKS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, inactive_threshold=30),
    )
    ticks, ids = [], set()
    deadline = time.monotonic() + 20
    while len(ticks) < 200 and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(100, timeout=2)
        except TimeoutError:
            continue
        for msg in msgs:
            tick = decode_tick(msg.data)
            assert msg.subject == f"market.tick.{tick.venue}.{tick.symbol}"
            assert msg.headers
            # The mock feed's venues (gateway.venues: mock, mock-b, mock-c), each its own ids.
            assert tick.venue.startswith("mock")
            assert msg.headers["Nats-Msg-Id"] == f"{tick.venue}:{tick.symbol}:{tick.trade_id}"
            ids.add(msg.headers["Nats-Msg-Id"])
            ticks.append(tick)
            await msg.ack()
    assert len(ticks) >= 200
    assert len(ids) == len(ticks)
    assert {t.symbol for t in ticks} == {"BTCUSDT", "ETHUSDT"}
    assert {t.venue for t in ticks} == {"mock", "mock-b", "mock-c"}  # the default multi-venue mode
    for instrument in {(t.venue, t.symbol) for t in ticks}:  # trade ids increase per instrument
        trade_ids = [int(t.trade_id or 0) for t in ticks if (t.venue, t.symbol) == instrument]
        assert trade_ids == sorted(trade_ids)
        assert len(set(trade_ids)) == len(trade_ids)
    assert abs(ticks[-1].timestamp - time.time() * 1000) < 10_000  # event time is now, in ms


async def test_alt_feed_publishes_alternative_data(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    await asyncio.sleep(1.5)
    for kind in ("funding_rate", "open_interest", "sentiment"):
        msg = await js.get_last_msg("ALT_DATA", f"alt.norm.{kind}")
        assert msg.data
        assert b'"kind":"' + kind.encode() in msg.data


async def test_duplicate_msg_id_is_stored_once(nc: NATS) -> None:
    js = nc.jetstream()
    subject = f"market.tick.DUP{uuid.uuid4().hex[:8].upper()}"
    headers = {"Nats-Msg-Id": f"test:{subject}:1"}
    first = await js.publish(subject, b'{"n": 1}', headers=headers)
    second = await js.publish(subject, b'{"n": 1}', headers=headers)
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    info = await js.stream_info("MARKET_TICKS", subjects_filter=subject)
    assert info.state.subjects == {subject: 1}


def test_bucket_exists_and_is_writable(stack: Stack) -> None:
    fs = s3_filesystem(stack.settings())
    assert fs.get_file_info("trader2025").type == pafs.FileType.Directory
    with fs.open_output_stream("trader2025/tests/probe.txt") as out:
        out.write(b"hello")
    with fs.open_input_stream("trader2025/tests/probe.txt") as inp:
        assert inp.read() == b"hello"


def test_services_expose_health_ready_and_metrics(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.ports['gateway']}"
    health = httpx.get(f"{base}/health").json()
    assert health["service"] == "gateway"
    assert health["nats_connected"] is True
    assert health["counts"]["out"] > 0
    ready = httpx.get(f"{base}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["nats"] is True
    metrics = httpx.get(f"{base}/metrics").text
    for name in (
        "trader_messages_out_total",
        "trader_errors_total",
        "trader_consumer_lag",
        "trader_batch_latency_seconds",
        "trader_nats_connected",
    ):
        assert name in metrics


def test_questdb_answers_sql(stack: Stack) -> None:
    response = httpx.get(
        f"http://127.0.0.1:{stack.ports['questdb_http']}/exec", params={"query": "select 1 x"}
    )
    assert response.status_code == 200
    assert response.json()["dataset"] == [[1]]


def test_questdb_logs_its_commits_to_its_own_rolling_files_not_to_its_output(stack: Stack) -> None:
    # The stack has been writing bars and PnL since it started: a few INFO lines a commit.
    rolling = list((stack.data_dir / "questdb" / "log").glob("questdb-rolling.log.*"))
    assert rolling
    assert sum(f.stat().st_size for f in rolling) > 0
    output = stack.log("questdb")
    assert " A server-main " in output  # the startup notices stay
    info = [line for line in output.splitlines() if re.match(r"\d{4}-\S+Z I ", line)]
    assert not info, info[:3]


def test_a_killed_service_is_restarted_and_counted(stack: Stack) -> None:
    before = {c["name"]: c for c in stack.status()["components"]}["gateway"]
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = {c["name"]: c for c in stack.status()["components"]}["gateway"]
        if row["restarts"] == before["restarts"] + 1 and row["ready"] and row["pid"] != before["pid"]:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"gateway was not restarted: {row}\n{stack.log('supervisor')}")
    assert stack.status()["healthy"] is True


def test_logs_command_prints_a_component_log(stack: Stack) -> None:
    result = stack.trader("logs", "gateway", "-n", "200")
    assert result.returncode == 0
    assert "service.started" in result.stdout
    missing = stack.trader("logs", "no-such-thing")
    assert missing.returncode == 1
    assert "no log" in missing.stderr


def test_second_up_is_refused_while_running(stack: Stack) -> None:
    result = stack.trader("up", "--detach")
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_services_reconnect_when_nats_drops(stack: Stack) -> None:
    """Kept last in this module: it takes the bus away from every service for a moment."""
    gateway = f"http://127.0.0.1:{stack.ports['gateway']}/health"
    rows = {c["name"]: c for c in stack.status()["components"]}
    os.kill(rows["nats"]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = {c["name"]: c for c in stack.status()["components"]}["nats"]
        if row["restarts"] == rows["nats"]["restarts"] + 1 and row["ready"]:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"nats was not restarted\n{stack.log('supervisor')}")
    out_before = httpx.get(gateway).json()["counts"]["out"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(gateway).json()
        if health["nats_connected"] and health["counts"]["out"] > out_before + 50:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"gateway did not resume publishing: {health}\n{stack.log('gateway')}")
    assert "nats.reconnected" in stack.log("gateway")
    assert stack.status()["healthy"] is True
