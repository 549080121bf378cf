"""Answer modes on a real ``meshd run`` (manifests source), queried with dnspython.

- endpoint answers carry the endpoints' port in SRV (the Service says 80, its pods listen
  on 8080), and the service is reported: a metric and one log line;
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
            == ("meshd_target_port_differs_services 1.0")
        ),
    )
    lines = [line for line in agent.logs().splitlines() if "target" in line or "-> 8080" in line]
    assert len([line for line in lines if "shop/web" in line]) == 1, lines
    assert '"http" TCP/80 -> 8080' in "".join(lines)
