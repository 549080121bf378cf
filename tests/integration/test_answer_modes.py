"""Answer modes on a real ``meshd run`` (manifests source), queried with dnspython.

- endpoint answers carry the endpoints' port in SRV (the Service says 80, its pods listen
  on 8080), and the service is reported: a metric and one log line;
- ``cluster-ip`` answers the Service's ClusterIP (per service with the annotation, for all
  with ``--answer-mode``), with the Service port in SRV, and nothing is reported;
- ``clusterset-ip`` as an annotation with the manifests source answers in the default mode
  and is reported (as a flag it exits 2: ``tests/unit/test_config.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest

from tests.integration.harness import AgentProcess, wait_until

pytestmark = pytest.mark.integration
ZONE = "svc.clusterset.local"


def service_yaml(name: str, port: int, target: int, annotations: str = "") -> str:
    notes = f"\n  annotations:\n{annotations}" if annotations else ""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  clusterIP: 10.96.0.{port % 200 + 1}
  ports: [{{name: http, protocol: TCP, port: {port}, targetPort: {target}}}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: {name}
  namespace: shop{notes}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: shop
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: {target}}}]
endpoints:
- addresses: [10.1.{port % 200}.10]
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    manifests = tmp_path / "east"
    manifests.mkdir()
    (manifests / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    (manifests / "web.yaml").write_text(service_yaml("web", 80, 8080))
    (manifests / "api.yaml").write_text(service_yaml("api", 90, 90))
    vip = "    meshd.io/answer-mode: clusterset-ip\n"
    (manifests / "cart.yaml").write_text(service_yaml("cart", 100, 8080, vip))
    by_ip = "    meshd.io/answer-mode: cluster-ip\n"
    (manifests / "search.yaml").write_text(service_yaml("search", 110, 8080, by_ip))
    process = AgentProcess("east", "us", manifests, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def srv_ports(agent: AgentProcess, name: str) -> set[int]:
    reply = agent.query(name, "SRV")
    return {rd.port for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SRV for rd in rrset}


def metric(agent: AgentProcess, name: str) -> str:
    lines = agent.admin("/metrics")[1].decode().splitlines()
    return next((line for line in lines if line.startswith(name)), "")


def test_endpoint_answers_give_the_pods_port_and_report_the_difference(
    agent: AgentProcess,
) -> None:
    agent.start([])
    agent.wait_ready()
    assert agent.addresses(f"web.shop.{ZONE}") == {"10.1.80.10"}
    assert srv_ports(agent, f"_http._tcp.web.shop.{ZONE}") == {8080}
    assert srv_ports(agent, f"web.shop.{ZONE}") == {8080}
    assert srv_ports(agent, f"_http._tcp.api.shop.{ZONE}") == {90}
    wait_until(
        "the metric",
        lambda: (
            metric(agent, "meshd_target_port_differs_services ")
            == "meshd_target_port_differs_services 2.0"  # web, and cart (endpoints: below)
        ),
    )
    lines = [line for line in agent.logs().splitlines() if "target" in line or "-> 8080" in line]
    assert len([line for line in lines if "shop/web" in line]) == 1, lines
    assert '"http" TCP/80 -> 8080' in "".join(lines)


def test_cluster_ip_answers_and_clusterset_ip_without_the_api_is_reported(
    agent: AgentProcess,
) -> None:
    agent.start([])
    agent.wait_ready()
    # The annotation: search answers its ClusterIP, with the Service port.
    assert agent.addresses(f"search.shop.{ZONE}") == {"10.96.0.111"}
    assert srv_ports(agent, f"_http._tcp.search.shop.{ZONE}") == {110}
    # clusterset-ip cannot work from manifests: cart answers endpoints, and it is reported.
    assert agent.addresses(f"cart.shop.{ZONE}") == {"10.1.100.10"}
    wait_until(
        "the problem counted",
        lambda: (
            'reason="clusterset_ip_unavailable"} 1.0'
            in metric(agent, 'meshd_policy_problems_total{reason="clusterset_ip_unavailable"}')
        ),
    )
    assert "needs the Kubernetes API source" in agent.logs()


def test_the_answer_mode_flag_sets_the_default(agent: AgentProcess) -> None:
    agent.start([], "--answer-mode", "cluster-ip")
    agent.wait_ready()
    assert agent.addresses(f"web.shop.{ZONE}") == {"10.96.0.81"}
    assert srv_ports(agent, f"_http._tcp.web.shop.{ZONE}") == {80}
    assert metric(agent, "meshd_target_port_differs_services ") == (
        "meshd_target_port_differs_services 0.0"
    )
