"""meshd's alerts in a real Prometheus, scraping real agents (Debian's `prometheus`).

- `promtool check metrics` accepts what a running agent (with mutual TLS, so that the
  certificate gauges are there) serves on /metrics, and every series the rules read is
  there, with the not-after times of the agent's certificate files;
- a real Prometheus on loopback, loaded with manifests/monitoring/meshd.rules.yaml (a copy
  whose `for:` durations are cut to seconds; tests/meta/test_monitoring.py unit-tests the
  shipped ones), scrapes a three-agent clusterset every second. When south is killed,
  MeshdClusterUnreachable for south goes pending, then firing on east and west, and
  MeshdAgentDown fires for south; when south returns, both resolve.

Every wait polls with a deadline; Prometheus and the agents are stopped even when a test
fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.integration.harness import MESHD, REPO, AgentProcess, free_port, http_get, wait_until
from tests.meta.monitoring_rules import RULES, alerts, load, promtool

pytestmark = pytest.mark.integration
REGIONS = {"east": "us", "west": "us", "south": "eu"}
# Long enough to see an alert pending at 1 s evaluations, short enough for a test.
SHORT_FOR = "3s"
# Series that only an agent with the Kubernetes API source has (tests/k8s covers them).
KUBE_ONLY = {"meshd_kube_writes_total", "meshd_kube_leader"}


def meshd_certs(*args: str | Path) -> None:
    done = subprocess.run([*MESHD, "certs", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def tls_flags(directory: Path) -> tuple[str, ...]:
    return (
        *("--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")),
        *("--tls-ca", str(directory / "ca.crt"), "--sync-timeout", "1"),
    )


@pytest.fixture
def clusterset(tmp_path: Path) -> Iterator[Callable[[str], AgentProcess]]:
    """Makes agents of clusterset `prod` (mutual TLS, files from `meshd certs`), not started;
    stops them all at the end."""
    meshd_certs("init", "--clusterset", "prod", "--out", tmp_path / "ca")
    made: list[AgentProcess] = []

    def agent(cluster: str) -> AgentProcess:
        files = tmp_path / cluster
        meshd_certs("issue", "--cluster-id", cluster, "--ca", tmp_path / "ca", "--out", files)
        shutil.copytree(REPO / "examples" / cluster, files / "manifests")
        made.append(AgentProcess(cluster, REGIONS[cluster], files / "manifests", tmp_path))
        return made[-1]

    try:
        yield agent
    finally:
        for proc in made:
            proc.stop()


def start(agent: AgentProcess, peers: list[AgentProcess]) -> None:
    files = agent.log_path.parent / agent.cluster
    agent.start([p.grpc for p in peers if p is not agent], *tls_flags(files), insecure=False)


def exposed_series(exposition: str) -> set[str]:
    """Series names a text exposition declares (``# TYPE``; a histogram's ``_bucket``,
    ``_sum`` and ``_count``): a labelled counter with no child yet has no sample line."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def rule_series(rules: dict[str, Any]) -> set[str]:
    """The meshd_* series the rules read."""
    found: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            found |= set(re.findall(r"\bmeshd_\w+", rule["expr"]))
    return found


def not_after(path: Path) -> float:
    """The earliest not-after of the certificates in a PEM file, in Unix seconds."""
    return min(
        c.not_valid_after_utc.timestamp()
        for c in x509.load_pem_x509_certificates(path.read_bytes())
    )


def test_promtool_checks_a_running_agents_metrics(
    clusterset: Callable[[str], AgentProcess],
) -> None:
    east = clusterset("east")
    start(east, [])
    east.wait_ready()
    status, body = east.admin("/metrics")
    assert status == 200
    done = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert done.stdout + done.stderr == b"", (done.stdout + done.stderr).decode()
    exposed = exposed_series(body.decode())
    missing = rule_series(load(RULES)) - KUBE_ONLY - exposed
    assert missing == set(), f"the rules read series the agent does not expose: {missing}"
    # The membership's own health: a lone agent has no evidence that it is the slow one.
    assert re.search(r"^meshd_swim_awareness 0\.0$", body.decode(), re.M)
    assert {"meshd_swim_failed_probes_total", "meshd_swim_late_timers_total"} <= exposed
    # The certificate gauges hold the not-after times of the files the agent was given.
    files = east.log_path.parent / "east"
    for cert, name in (("tls", "tls.crt"), ("signing", "signing.crt"), ("ca", "ca.crt")):
        found = re.search(
            rf'^meshd_certificate_expiry_timestamp_seconds{{cert="{cert}"}} (\S+)$',
            body.decode(),
            re.M,
        )
        assert found, cert
        assert float(found.group(1)) == not_after(files / name), cert


# --- a real Prometheus ------------------------------------------------------------------------


class PrometheusProcess:
    """Debian's ``prometheus`` on 127.0.0.1, its storage in ``directory``."""

    def __init__(self, directory: Path, rules: dict[str, Any], targets: list[str]) -> None:
        self.directory = directory
        directory.mkdir()
        (directory / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(directory / "rules.yaml")],
            "scrape_configs": [{"job_name": "meshd", "static_configs": [{"targets": targets}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = directory / "prometheus.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prometheus = shutil.which("prometheus")
        assert prometheus is not None, "prometheus missing: apt-get install prometheus"
        for _ in range(3):
            self.port = free_port()
            log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it until it exits)
            self.proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            wait_until(
                "Prometheus ready",
                lambda: (
                    self.proc is not None
                    and (self.proc.poll() is not None or http_get(self.url("/-/ready"))[0] == 200)
                ),
                timeout_s=30,
            )
            if self.proc.poll() is None:
                return
            if "address already in use" not in self.logs():
                break
        raise AssertionError(f"Prometheus did not start:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(self.url(f"/api/v1/{path}{query}"))
        assert status == 200, (path, status, body[:500])
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        return list(data["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts named ``name``."""
        found = self.api("alerts")["alerts"]
        return [a for a in found if a["labels"]["alertname"] == name]


def shortened(rules: dict[str, Any]) -> dict[str, Any]:
    """The shipped rules with every ``for:`` cut to SHORT_FOR."""
    rules = json.loads(json.dumps(rules))
    for rule in alerts(rules):
        if "for" in rule:
            rule["for"] = SHORT_FOR
    return rules


def states_until_firing(
    prometheus: PrometheusProcess, name: str, match: dict[str, str], instances: set[str]
) -> dict[str, list[str]]:
    """Poll until the alert fires for each of ``instances``; the states seen, in order."""
    seen: dict[str, list[str]] = {i: [] for i in instances}

    def firing_everywhere() -> bool:
        for alert in prometheus.alerts(name):
            labels = alert["labels"]
            if labels.get("instance") in seen and match.items() <= labels.items():
                states = seen[labels["instance"]]
                if not states or states[-1] != alert["state"]:
                    states.append(alert["state"])
        return all(states and states[-1] == "firing" for states in seen.values())

    try:
        wait_until(f"{name} {match} firing on {sorted(instances)}", firing_everywhere, 30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; states seen: {seen}") from None
    return seen


def test_a_killed_agent_fires_cluster_unreachable_and_it_resolves(
    clusterset: Callable[[str], AgentProcess], tmp_path: Path
) -> None:
    by_cluster = {cluster: clusterset(cluster) for cluster in REGIONS}
    agents = list(by_cluster.values())
    for agent in agents:
        start(agent, agents)
    for agent in agents:
        agent.wait_ready()
    instance = {c: f"127.0.0.1:{a.admin_port}" for c, a in by_cluster.items()}
    prometheus = PrometheusProcess(
        tmp_path / "prometheus", shortened(load(RULES)), sorted(instance.values())
    )
    try:
        prometheus.start()
        # Every agent scraped, every cluster in every agent's answers, no alert about it.
        wait_until(
            "every agent to see every cluster healthy, in Prometheus",
            lambda: len(prometheus.query("meshd_cluster_healthy == 1")) == 9,
            30,
        )
        assert len(prometheus.query("meshd_certificate_expiry_timestamp_seconds")) == 9
        assert prometheus.alerts("MeshdClusterUnreachable") == []

        by_cluster["south"].kill()
        survivors = {instance["east"], instance["west"]}
        seen = states_until_firing(
            prometheus, "MeshdClusterUnreachable", {"cluster": "south"}, survivors
        )
        for states in seen.values():
            assert states == ["pending", "firing"], seen
        [down] = states_until_firing(
            prometheus, "MeshdAgentDown", {"job": "meshd"}, {instance["south"]}
        ).values()
        assert down[-1] == "firing"
        east_alert = next(
            a
            for a in prometheus.alerts("MeshdClusterUnreachable")
            if a["labels"]["instance"] == instance["east"]
        )
        assert east_alert["labels"]["severity"] == "critical"
        description = east_alert["annotations"]["description"]
        assert f"agent {instance['east']} has had cluster south out" in description
        assert east_alert["annotations"]["runbook_url"] == "README.md#meshdclusterunreachable"
        # Only south is out: no alert about east or west.
        assert {a["labels"]["cluster"] for a in prometheus.alerts("MeshdClusterUnreachable")} == {
            "south"
        }

        start(by_cluster["south"], agents)
        by_cluster["south"].wait_ready()
        wait_until(
            "MeshdClusterUnreachable and MeshdAgentDown to resolve",
            lambda: (
                prometheus.alerts("MeshdClusterUnreachable") == []
                and prometheus.alerts("MeshdAgentDown") == []
            ),
            30,
        )
        groups = prometheus.api("rules", type="alert")["groups"]
        states = {r["name"]: r["state"] for g in groups for r in g["rules"]}
        assert states["MeshdClusterUnreachable"] == "inactive"
        assert states["MeshdAgentDown"] == "inactive"
    except AssertionError:
        print(prometheus.logs())
        raise
    finally:
        prometheus.stop()
