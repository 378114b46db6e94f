"""deploy/prometheus and deploy/grafana say what the code does: every service of the registry is scraped
at its port, and every metric the Grafana dashboard plots is one that the services export.

The exported names are read from the metric definitions in the source (every ``Counter``, ``Gauge``,
``Histogram``, ... of ``prometheus_client`` under ``src/trader``, with the series names the client makes
of each: ``_total`` for a counter, ``_bucket``/``_sum``/``_count`` for a histogram), and checked against
a live registry of the runtime's own metrics, so that the reading of the source cannot drift from what
the client really exposes.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from trader.config import PortMap
from trader.runtime.collector import CollectorWatch
from trader.runtime.metrics import ServiceMetrics
from trader.services import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana/dashboards/trader.json"
PROMETHEUS = {
    "compose": DEPLOY / "prometheus/prometheus.yml",
    "local": DEPLOY / "prometheus/prometheus-local.yml",
}
# Series Prometheus makes itself for every target, not exported by anyone.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# Series names prometheus_client exposes for a metric of each kind.
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}


# The names the services export -----------------------------------------------------------------------


def _prometheus_kinds(tree: ast.Module) -> dict[str, str]:
    """Local name -> kind, for the metric classes a module imports from prometheus_client."""
    kinds = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
            for alias in node.names:
                if alias.name in SUFFIXES:
                    kinds[alias.asname or alias.name] = alias.name
    return kinds


def _constant(call: ast.Call, position: int, keyword: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "?"
    if len(call.args) > position:
        arg = call.args[position]
        return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "?"
    return None


def _full_name(call: ast.Call, kind: str) -> str:
    """The metric's name as prometheus_client builds it: namespace_subsystem_name_unit."""
    # The client's positional order: name, documentation, labelnames, namespace, subsystem, unit.
    parts = [_constant(call, 3, "namespace"), _constant(call, 4, "subsystem"), _constant(call, 0, "name")]
    unit = _constant(call, 5, "unit")
    if "?" in (*parts, unit):
        raise AssertionError(
            f"a {kind} whose name is not written out (line {call.lineno}): name it literally"
        )
    name = "_".join(p for p in parts if p)
    if unit and not name.endswith(f"_{unit}"):
        name += f"_{unit}"
    if kind == "Counter" and name.endswith("_total"):
        name = name.removesuffix("_total")  # the client adds it back
    return name


def metric_definitions(root: Path = ROOT / "src/trader") -> dict[str, str]:
    """Every metric defined under ``root``: its name -> its kind."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        kinds = _prometheus_kinds(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds:
                kind = kinds[node.func.id]
                found[_full_name(node, kind)] = kind
    return found


@functools.cache
def exported_series() -> frozenset[str]:
    return frozenset(
        name + suffix for name, kind in metric_definitions().items() for suffix in SUFFIXES[kind]
    )


def _registry_series() -> set[str]:
    metrics = ServiceMetrics("probe")
    CollectorWatch(metrics)  # its metrics are registered when it is made
    metrics.count_error("probe")
    metrics.count_dead_letter("probe")
    metrics.set_lag("probe", 0)
    metrics.set_ready(True)
    metrics.observe_delay("probe", 0.1)
    text = metrics.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


# The names a PromQL expression reads -----------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers, groupings,
    ranges, functions, keywords and numbers are taken out."""
    text = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _GROUPING, _RANGES):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def unknown_metrics(expr: str, known: frozenset[str]) -> set[str]:
    return metric_names(expr) - known - PROMETHEUS_OWN


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) of every panel's query and every query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']}", re.sub(r"^label_values\((.*), *\w+\)$", r"\1", query)


# Tests ------------------------------------------------------------------------------------------------


def test_the_reading_of_the_source_finds_every_series_the_runtime_exposes() -> None:
    series = _registry_series()
    assert {"trader_messages_in_total", "trader_batch_latency_seconds_bucket", "trader_ready"} <= series
    assert series - {"python_gc_objects_collected_total"} <= exported_series()


def test_the_expression_reader_finds_the_metrics_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (service, le) (rate(trader_batch_latency_seconds_bucket"
        '{service=~"a|b", le!="+Inf"}[$__rate_interval]))) / on(service) group_left max(up offset 5m)'
        " * 1e3 > bool 2"
    )
    assert metric_names(expr) == {"trader_batch_latency_seconds_bucket", "up"}
    assert ("variable service", "trader_ready") in set(_expressions(_dashboard()))  # label_values(m, l)


@pytest.mark.parametrize(
    "expr",
    [
        "rate(trader_no_such_thing_total[5m])",
        "rate(trader_messages_in[5m])",  # a counter's series ends in _total
        "trader_ready_total",  # a gauge's does not
        "histogram_quantile(0.5, rate(trader_batch_latency_seconds[5m]))",  # a histogram's are _bucket, ...
    ],
)
def test_a_metric_the_services_do_not_export_is_caught(expr: str) -> None:
    assert unknown_metrics(expr, exported_series()), expr


def test_every_metric_the_dashboard_plots_is_exported() -> None:
    known = exported_series()
    expressions = list(_expressions(_dashboard()))
    assert len(expressions) > 10
    for where, expr in expressions:
        assert metric_names(expr), f"{where}: no metric in {expr!r}"
        assert not unknown_metrics(expr, known), f"{where}: {expr!r} reads metrics no service exports"


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    plotted = set().union(*(metric_names(expr) for _, expr in _expressions(_dashboard())))
    assert {
        "trader_ready",
        "up",
        "trader_messages_in_total",
        "trader_messages_out_total",
        "trader_consumer_lag",
        "trader_errors_total",
        "trader_dead_letters_total",
        "trader_batch_latency_seconds_bucket",
        "trader_intake_delay_seconds_bucket",
    } <= plotted
    titles = {panel["title"] for panel in _dashboard()["panels"]}
    assert any(title.startswith("Order path") for title in titles)


def test_every_panel_reads_the_chosen_prometheus() -> None:
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def _targets(config: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """component -> (host, port, its job)."""
    found = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                component = static["labels"]["component"]
                assert component not in found, f"{component} is scraped twice"
                found[component] = (host, port, job)
    return found


@pytest.mark.parametrize("where", sorted(PROMETHEUS))
def test_every_service_of_the_registry_is_scraped_at_its_port(where: str) -> None:
    config = yaml.safe_load(PROMETHEUS[where].read_text())
    targets = _targets(config)
    ports = PortMap()
    assert set(targets) == {*REGISTRY, "questdb"}
    for name, spec in REGISTRY.items():
        host, port, job = targets[name]
        assert int(port) == getattr(ports, spec.metrics_port_field or spec.port_field), name
        assert host == (name if where == "compose" else "127.0.0.1"), name
        assert job.get("metrics_path", "/metrics") == "/metrics", name
    assert int(targets["questdb"][1]) == ports.questdb_health
    api_job = targets["api"][2]
    assert api_job["authorization"]["type"] == "Bearer"  # the api's /metrics needs a read token
    assert api_job["authorization"]["credentials_file"] == "secrets/api-read-token"


def test_the_local_configuration_is_the_compose_one_on_loopback() -> None:
    compose = yaml.safe_load(PROMETHEUS["compose"].read_text())
    for job in compose["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [f"127.0.0.1:{t.rsplit(':', 1)[1]}" for t in static["targets"]]
    assert yaml.safe_load(PROMETHEUS["local"].read_text()) == compose


def test_the_api_token_for_the_scrape_is_never_committed() -> None:
    ignore = (DEPLOY / "prometheus/secrets/.gitignore").read_text().split()
    assert "*" in ignore
    assert "!.gitignore" in ignore


def test_grafana_is_provisioned_with_the_dashboard_and_questdb_exports_metrics() -> None:
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/trader.yaml").read_text())
    monitoring = yaml.safe_load((DEPLOY / "monitoring.compose.yaml").read_text())
    mounts = dict(
        v.split(":")[:2] for v in monitoring["services"]["grafana"]["volumes"] if v.startswith("./")
    )
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "./prometheus:/etc/prometheus:ro" in monitoring["services"]["prometheus"]["volumes"]
    questdb = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["questdb"]
    assert questdb["environment"]["QDB_METRICS_ENABLED"] == "true"
