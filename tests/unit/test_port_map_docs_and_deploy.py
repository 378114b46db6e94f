"""The port map, its documentation and the production compose file say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from trader.config import PortMap, Settings
from trader.services import REGISTRY
from trader.stack.supervisor import infra_servers, service_component

ROOT = Path(__file__).resolve().parents[2]


def test_docs_table_lists_every_port_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", (ROOT / "docs/ports.md").read_text(), re.M))
    assert {k: int(v) for k, v in rows.items()} == PortMap().model_dump()


def _compose() -> dict:
    return yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())


def _published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def _expected_components() -> dict[str, set[int]]:
    settings = Settings()
    expected = {server.name: set(server.ports().values()) for server in infra_servers(settings)}
    for name in REGISTRY:
        expected[name] = set(service_component(settings, name).ports.values())
    return expected


def test_compose_names_every_component_with_its_ports_and_a_health_check() -> None:
    services = _compose()["services"]
    for name, ports in _expected_components().items():
        assert name in services, f"compose lacks {name}"
        assert _published(services[name]) == ports, name
        assert "healthcheck" in services[name], name


def test_compose_publishes_no_port_outside_the_map() -> None:
    allowed = set(PortMap().model_dump().values())
    for name, service in _compose()["services"].items():
        assert _published(service) <= allowed, name


def test_compose_services_run_their_registered_service_on_the_right_networks() -> None:
    compose = _compose()
    assert set(compose["networks"]) == {"frontend", "lowlatency", "backend"}
    for name, spec in REGISTRY.items():
        service = compose["services"][name]
        assert service["command"] == ["service", "run", name]
        assert spec.network in service["networks"]
        port = getattr(PortMap(), spec.port_field)
        assert f"localhost:{port}/ready" in " ".join(service["healthcheck"]["test"])
