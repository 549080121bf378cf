"""meshd's alerts in manifests/monitoring/, checked with Prometheus's own tools.

- `promtool check rules` accepts meshd.rules.yaml, and `promtool test rules` passes its unit
  tests (meshd.rules.test.yaml), which hold a firing and a not-firing case for every alert;
  a broken rule makes them fail;
- every alert has a severity, a summary, a description that names each label locating the
  problem (the labels its firing cases carry), and a runbook_url into README.md's
  "Operating meshd";
- prometheusrule.yaml is meshd.rules.yaml wrapped, and current (`make monitoring`);
- the kustomize Component adds the PodMonitor and the PrometheusRule to an overlay, and the
  PodMonitor scrapes the agents' admin port where the Deployment and the NetworkPolicy
  have it.

tests/integration/test_prometheus.py runs the rules in a real Prometheus scraping real
agents.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.meta.k8s_manifests import MANIFESTS, NAMESPACE, POD_LABELS, ROOT, container, kustomize
from tests.meta.k8s_manifests import one as one_object
from tests.meta.monitoring_rules import (
    MONITORING,
    PROMETHEUS_RULE,
    RULES,
    RULES_TESTS,
    alerts,
    load,
    promtool,
    render_prometheus_rule,
)

SEVERITIES = {"warning", "critical"}
# Labels that place a series but say nothing about the problem.
NOT_LOCATING = {"alertname", "severity", "job"}


def run_promtool(*args: str | Path, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


# --- promtool -------------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    done = run_promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in load(RULES)["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = run_promtool("test", "rules", RULES_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_not_firing_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULES_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts(load(RULES))}
    assert names - firing == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet"
    assert (firing | quiet) - names == set(), "unit tests of alerts that do not exist"


def test_the_unit_tests_catch_a_changed_rule(tmp_path: Path) -> None:
    # Fire after 1 minute instead of 5: the pending case of the unit tests must fail.
    text = RULES.read_text()
    rule = "  - alert: MeshdClusterUnreachable\n    expr: meshd_cluster_healthy == 0\n    for: 5m\n"
    assert rule in text
    (tmp_path / RULES.name).write_text(text.replace(rule, rule.replace("5m", "1m")))
    (tmp_path / RULES_TESTS.name).write_text(RULES_TESTS.read_text())
    done = run_promtool("test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert "MeshdClusterUnreachable" in done.stdout + done.stderr


# --- what each alert says -------------------------------------------------------------------


def firing_labels() -> dict[str, set[str]]:
    """alertname -> the labels its alerts carry in the unit tests' firing cases."""
    found: dict[str, set[str]] = {}
    for case in load(RULES_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                found.setdefault(check["alertname"], set()).update(alert["exp_labels"])
    return found


def test_every_alert_says_what_where_and_links_a_runbook() -> None:
    carried = firing_labels()
    for rule in alerts(load(RULES)):
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].endswith("."), name
        mentioned = set(re.findall(r"\$labels\.(\w+)", annotations["description"]))
        locating = carried[name] - NOT_LOCATING
        assert locating, f"{name}: its alerts carry no label that locates the problem"
        assert locating <= mentioned, f"{name}: the description leaves out {locating - mentioned}"
        assert re.fullmatch(r"README\.md#[a-z0-9-]+", annotations["runbook_url"]), name


def github_anchors(markdown: str) -> dict[str, str]:
    """Each heading's anchor as GitHub makes it -> the enclosing level-2 heading."""
    anchors: dict[str, str] = {}
    section = ""
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"(#{1,6}) (.+)", line)
        if heading is None:
            continue
        text = heading.group(2).strip()
        if len(heading.group(1)) <= 2:
            section = text
        anchor = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        anchors[anchor] = section
    return anchors


def test_every_runbook_url_is_a_section_of_operating_meshd() -> None:
    anchors = github_anchors((ROOT / "README.md").read_text())
    assert "operating-meshd" in anchors
    for rule in alerts(load(RULES)):
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        assert anchors.get(anchor) == "Operating meshd", f"{rule['alert']}: no #{anchor}"


def test_every_alert_is_in_the_readmes_table() -> None:
    readme = (ROOT / "README.md").read_text()
    operating = readme.split("## Operating meshd", 1)[1].split("\n## ", 1)[0]
    for name in {rule["alert"] for rule in alerts(load(RULES))}:
        assert f"| [{name}](#{name.lower()}) |" in operating, name


# --- the PrometheusRule and the Component ---------------------------------------------------


def test_the_prometheus_rule_is_the_rules_file_and_current() -> None:
    committed = PROMETHEUS_RULE.read_text()
    assert committed == render_prometheus_rule(RULES.read_text()), (
        f"{PROMETHEUS_RULE.relative_to(ROOT)} is stale: run `make monitoring`"
    )
    rule = yaml.safe_load(committed)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == load(RULES)


def with_component(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """An overlay built with the monitoring Component, as a user's kustomization adds it."""
    here = tmp_path / "with-monitoring"
    here.mkdir()
    overlay_dir = os.path.relpath(MANIFESTS / "overlays" / overlay, here)
    (here / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n- {overlay_dir}\n"
        f"components:\n- {os.path.relpath(MONITORING, here)}\n"
    )
    return kustomize(here)


def test_the_component_adds_monitoring_to_an_overlay(tmp_path: Path) -> None:
    objects = with_component(tmp_path, "east")
    rule = one_object(objects, "PrometheusRule", "meshd")
    assert rule["spec"] == load(RULES)
    monitor = one_object(objects, "PodMonitor", "meshd")
    for o in (rule, monitor):
        assert o["metadata"]["namespace"] == NAMESPACE
        # Metadata as the API server checks it (a ConfigMap carries the same ObjectMeta).
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": o["metadata"]}
        kubernetes_validate.validate(meta, "1.30.0", strict=True)
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "podMetricsEndpoints"}
    assert spec["selector"] == {"matchLabels": POD_LABELS}
    deployment = one_object(objects, "Deployment", "meshd")
    assert POD_LABELS.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["podMetricsEndpoints"]
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["path"] == "/metrics"
    ports = {p["name"]: p for p in container(objects)["ports"]}
    assert ports[endpoint["port"]]["protocol"] == "TCP"
    # The NetworkPolicy admits that port from the namespace it tells Prometheus to run in.
    policy = one_object(objects, "NetworkPolicy", "meshd")
    admin_rules = [
        r for r in policy["spec"]["ingress"] if {"port": "admin", "protocol": "TCP"} in r["ports"]
    ]
    assert admin_rules, "no ingress rule admits the admin port"
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    assert int(endpoint["scrapeTimeout"][:-1]) <= int(endpoint["interval"][:-1])
