"""deploy/prometheus alert rules: parsed and checked against the metrics the edge really exports.

Always (pure Python): the rule file's structure, every expression parsed as PromQL
(promql-parser), every `inspection_*` series and label it selects exported by `PipelineMetrics`,
the `up` job the one prometheus.yml scrapes, and the alerts the issue asks for all present.
Where Prometheus's own `promtool` is installed (Debian package `prometheus`; .ci/run installs it):
`promtool check rules` and the rule unit tests of alerts.test.yml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from inspection.metrics import PipelineMetrics
from inspection.signal.outbox import OutboxMetrics

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
REQUIRED = {
    "InspectionConsumerDown",
    "InspectionDeadlineMisses",
    "InspectionCarsOverdue",
    "InspectionConsumerLagGrowing",
    "InspectionNoProgress",
    "InspectionDeadLetterRate",
    "InspectionLineSignalBehind",
}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Series names the edge exports (counters with _total, histograms with _bucket/_sum/_count) -> label names."""
    series: dict[str, set[str]] = {}
    every = [*vars(PipelineMetrics()).values(), *vars(OutboxMetrics()).values()]  # the edge's and the line signal's
    for metric in every:
        if not hasattr(metric, "describe"):
            continue
        labels = set(getattr(metric, "_labelnames", ()))  # prometheus_client keeps them on the metric object
        for family in metric.describe():
            for suffix in SUFFIXES[family.type]:
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector of a parsed PromQL expression."""
    if type(node).__name__ == "VectorSelector":
        yield node
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from selectors(child)
    for child in getattr(node, "args", None) or []:
        yield from selectors(child)


def test_rule_file_structure() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert set(data) == {"groups"}
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) and REQUIRED <= set(names), names
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert re.fullmatch(r"Inspection[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert DURATION.fullmatch(rule["for"]), rule["for"]


def test_expressions_parse_and_select_what_the_edge_exports() -> None:
    series = exported()
    assert "inspection_consumer_lag" in series and series["inspection_cars_completed_total"] == {"deadline"}
    scrape_jobs = {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    for rule in rules():
        expression = promql_parser.parse(rule["expr"])
        found = list(selectors(expression))
        assert found, rule["alert"]
        for selector in found:
            matchers = {m.name: m.value for m in selector.matchers.matchers}
            if selector.name == "up":
                assert matchers.get("job") in scrape_jobs, (rule["alert"], matchers)
                continue
            assert selector.name in series, f"{rule['alert']}: {selector.name} is not exported by the edge"
            unknown = set(matchers) - series[selector.name] - {"job", "instance"}
            assert not unknown, f"{rule['alert']}: {selector.name} has no label(s) {unknown}"
    # The checker itself refuses what it should (guards against a check that cannot fail).
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(inspection_frames_parked_total[5m])")
    assert "inspection_frames_parked" not in series  # a counter is selected with its _total suffix


def test_prometheus_loads_the_rule_file() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    compose = yaml.safe_load((PROMETHEUS.parent / "docker-compose.yml").read_text())
    assert f"./prometheus/{RULES.name}:/etc/prometheus/{RULES.name}:ro" in compose["services"]["prometheus"]["volumes"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; .ci/run does)")
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules())} rules found" in check.stdout + check.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert REQUIRED - {"InspectionCarsOverdue"} <= tested_alerts
