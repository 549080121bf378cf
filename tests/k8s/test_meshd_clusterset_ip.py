"""Answer mode clusterset-ip on real ``meshd run`` processes (issue 15, part 4).

East reads the fake API server (``--kubeconfig``, ``--answer-mode clusterset-ip``); west
(region us) and south (region eu) read manifests. All three gossip on loopback. East derives
a Service and EndpointSlices for the ServiceImport and answers DNS (dnspython) with the VIP
the cluster allocated; as east's endpoints stop being ready, and then west dies (SIGKILL),
the derived EndpointSlices follow the routing policy: east, then west, then south. Every
step waits on its condition with a bounded deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.kube.derived import derived_name
from mesh.model import ServiceKey
from tests.integration.harness import AgentProcess, wait_until
from tests.k8s.fake_apiserver import ThreadedApiServer
from tests.k8s.objects import endpoint_slice, exported_service, namespace

pytestmark = pytest.mark.integration
DERIVED = derived_name(ServiceKey("shop", "web"))
WEB = "web.shop.svc.clusterset.local"

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: 10.9{octet}.0.10
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {{name: web, namespace: shop}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- addresses: [10.{octet}.0.10]
"""


@pytest.fixture
def api() -> Iterator[ThreadedApiServer]:
    with ThreadedApiServer() as server:
        yield server


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    started = {}
    for cluster, region, octet in (("west", "us", 2), ("south", "eu", 3)):
        folder = tmp_path / cluster
        folder.mkdir()
        (folder / "web.yaml").write_text(MANIFEST.format(octet=octet))
        started[cluster] = AgentProcess(cluster, region, folder, tmp_path)
    started["east"] = AgentProcess("east", "us", None, tmp_path)
    try:
        yield started
    finally:
        for agent in started.values():
            agent.stop()


def derived_slices(api: ThreadedApiServer) -> dict[str, set[str]]:
    def find() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for obj in api.server.store.objects["endpointslices"].values():
            labels = obj["metadata"].get("labels", {})
            if labels.get("kubernetes.io/service-name") == DERIVED:
                cluster = labels["multicluster.kubernetes.io/source-cluster"]
                found[cluster] = {a for e in obj["endpoints"] for a in e["addresses"]}
        return found

    return api.call(find)


def stored(api: ThreadedApiServer, plural: str, name: str) -> dict[str, Any] | None:
    return api.call(lambda: api.server.store.objects[plural].get(("shop", name)))


def test_clusterset_ip_answers_the_vip_and_its_slices_follow_failover(
    api: ThreadedApiServer, agents: dict[str, AgentProcess], tmp_path: Path
) -> None:
    api.call(api.server.put, namespace("meshd-system"))
    for obj in exported_service("shop", "web", [("10.1.0.10", True)]):
        api.call(api.server.put, obj)
    kubeconfig = api.call(api.server.kubeconfig, tmp_path / "kubeconfig")
    east, west, south = agents["east"], agents["west"], agents["south"]
    seeds = [a.grpc for a in agents.values()]
    for agent in (west, south):
        agent.start([s for s in seeds if s != agent.grpc])
    east.start(
        [west.grpc, south.grpc],
        "--kubeconfig",
        str(kubeconfig),
        "--lease-namespace",
        "meshd-system",
        "--answer-mode",
        "clusterset-ip",
    )
    for agent in agents.values():
        agent.wait_ready()

    wait_until(
        "east's own endpoints derived", lambda: derived_slices(api) == {"east": {"10.1.0.10"}}
    )
    vip = wait_until(
        "the VIP in the import",
        lambda: ((stored(api, "serviceimports", "web") or {}).get("spec") or {}).get("ips"),
    )
    service = stored(api, "services", DERIVED)
    assert service is not None
    assert vip == [service["spec"]["clusterIP"]]
    wait_until("DNS answers the VIP", lambda: east.addresses(WEB) == set(vip))
    # West answers with endpoints (its default mode), as before.
    assert west.addresses(WEB) == {"10.2.0.10"}

    # East's endpoint is not ready: west, in the same region, takes over the VIP's slices.
    api.call(api.server.put, endpoint_slice("shop", "web-abcde", "web", [("10.1.0.10", False)]))
    wait_until("west's endpoints derived", lambda: derived_slices(api) == {"west": {"10.2.0.10"}})
    assert east.addresses(WEB) == set(vip)  # clients keep the one address
    # West dies: south.
    west.kill()
    wait_until("south's endpoints derived", lambda: derived_slices(api) == {"south": {"10.3.0.10"}})
    metrics = east.admin("/metrics")[1].decode()
    assert (
        'meshd_kube_writes_total{outcome="ok",resource="endpointslices",verb="create"}' in metrics
    )
    assert east.stop() == 0, east.logs()
