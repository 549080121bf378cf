"""meshd's Prometheus rules (manifests/monitoring/): where they are, and their PrometheusRule.

``meshd.rules.yaml`` is the one source. ``prometheusrule.yaml`` wraps its text, comments
included, in a PrometheusRule for the Prometheus Operator; ``make monitoring`` writes it
(``python -m tests.meta.monitoring_rules``) and tests/meta/test_monitoring.py fails when the
committed copy is stale, as test_generated_code.py does for the protobuf code.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "meshd.rules.yaml"
RULES_TESTS = MONITORING / "meshd.rules.test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"

_HEADER = """\
# Generated from meshd.rules.yaml by `make monitoring`: edit that file, not this one.
# PrometheusRule (Prometheus Operator): meshd's recording and alerting rules. A Prometheus
# managed by the Operator loads it when its ruleSelector matches these labels (some
# installations select on a label such as `release`: add it in your overlay).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: meshd
  namespace: meshd-system
  labels:
    app.kubernetes.io/name: meshd
    app.kubernetes.io/part-of: meshd
spec:
"""


def promtool() -> str:
    """Debian's promtool (package `prometheus`, which `make test` installs)."""
    path = shutil.which("promtool")
    assert path is not None, "promtool missing: apt-get install prometheus (make test does)"
    return path


def render_prometheus_rule(rules_text: str) -> str:
    """The PrometheusRule holding ``rules_text``'s groups, its comments kept."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return _HEADER + body


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule(RULES.read_text()))
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}", file=sys.stderr)
