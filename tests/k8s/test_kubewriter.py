"""Write-back against the fake API server: conditions, imports, leader hand-over, denials.

Every test runs real replicas (``KubernetesSource`` -> ``Catalog`` -> ``KubeWriter``)
configured from a kubeconfig, and checks what the API server ends up holding and which
replica wrote it (the fake records each request's User-Agent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from mesh.kube.writer import PERMISSIONS
from mesh.model import ClusterState, ExportedService, ServiceKey, ServicePort, ServiceType
from tests.k8s.fake_apiserver import REPO
from tests.k8s.fake_rbac import Rbac, Rule
from tests.k8s.fake_store import ApiError
from tests.k8s.objects import exported_service, namespace, service_export
from tests.k8s.writeback import (
    RecordingApiServer,
    Replica,
    conditions,
    objects,
    until,
)

Start = Callable[..., Replica]
WEB = ServiceKey("shop", "web")
# The condition types meshd sets on a valid export.
OURS = {"Valid", "Ready", "Conflict", "meshd.io/Ports"}
MANAGED = {"app.kubernetes.io/managed-by": "meshd"}


@pytest_asyncio.fixture
async def api() -> AsyncIterator[RecordingApiServer]:
    async with RecordingApiServer() as server:
        server.put(namespace("meshd-system"))
        yield server


@pytest_asyncio.fixture
async def start(api: RecordingApiServer, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Replica] = []

    def start(identity: str = "a", server: RecordingApiServer | None = None) -> Replica:
        started.append(Replica(server or api, tmp_path, identity))
        return started[-1]

    yield start
    for replica in started:
        await replica.stop()


def remote(
    cluster: str,
    version: int,
    *services: ExportedService,
    namespaces: frozenset[str] = frozenset({"shop"}),
) -> ClusterState:
    return ClusterState(
        cluster, 7, version, namespaces=namespaces, services={s.key: s for s in services}
    )


def seed(api: RecordingApiServer, *items: Any) -> None:
    for item in items:
        for obj in item if isinstance(item, list) else [item]:
            api.put(obj)


async def leading(replica: Replica) -> None:
    await until(f"{replica.identity} leads", replica.writer.is_leader, replica)


def local_export(replica: Replica) -> ExportedService:
    return replica.catalog.local.services[WEB]


# ---------------------------------------------------------------------- conflicts


@pytest.mark.asyncio
async def test_conflict_between_two_clusters_the_oldest_wins(
    api: RecordingApiServer, start: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    east = start()
    await until("east exports web", lambda: WEB in east.catalog.local.services, east)
    at = local_export(east).exported_at
    assert at > 0  # from the ServiceExport's creationTimestamp
    await until(
        "Valid, Conflict and a known meshd.io/Ports",
        lambda: (
            {"Valid", "Conflict", "meshd.io/Ports"} <= set(conditions(api, "shop/web"))
            and conditions(api, "shop/web")["meshd.io/Ports"]["status"] != "Unknown"
        ),
        east,
    )
    assert conditions(api, "shop/web")["Conflict"]["status"] == "False"
    # The Service listens on 80, its pods on 8080: endpoint answers cannot use 80.
    ports = conditions(api, "shop/web")["meshd.io/Ports"]
    assert (ports["status"], ports["reason"]) == ("False", "TargetPortDiffers")
    assert '"http" TCP/80 -> 8080' in ports["message"]

    # West exported web earlier, headless, with port "http" on 8080: west wins both.
    west_ports = (ServicePort("http", "TCP", 8080), ServicePort("admin", "TCP", 9000))
    west = ExportedService(WEB, ServiceType.HEADLESS, west_ports, exported_at=at - 100)
    east.merge(remote("west", 1, west))
    await until(
        "Conflict=True on east's export",
        lambda: conditions(api, "shop/web")["Conflict"]["status"] == "True",
        east,
    )
    conflict = conditions(api, "shop/web")["Conflict"]
    assert conflict["reason"] == "TypeConflict,PortConflict"
    assert '"Headless" from the oldest export, in "west"' in conflict["message"]
    assert "1/2 clusters disagree (east)" in conflict["message"]
    assert conditions(api, "shop/web")["Valid"]["status"] == "True"
    imported = await until(
        "the import takes west's type and lists both clusters",
        lambda: (
            (found := objects(api, "ServiceImport").get("shop/web", {}))
            and found["spec"]["type"] == "Headless"
            and len(found.get("status", {}).get("clusters", [])) == 2
            and found
        ),
        east,
    )
    assert imported["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080},
        {"name": "admin", "protocol": "TCP", "port": 9000},
    ]
    assert imported["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]

    # West re-exports later than east, matching it: no conflict any more; the condition's
    # time moves with its status.
    before = conflict["lastTransitionTime"]
    http = (ServicePort("http", "TCP", 80),)
    east.merge(
        remote("west", 2, ExportedService(WEB, ServiceType.CLUSTER_SET_IP, http, (), at + 5))
    )
    await until(
        "no conflict",
        lambda: conditions(api, "shop/web")["Conflict"]["status"] == "False",
        east,
    )
    assert conditions(api, "shop/web")["Conflict"]["reason"] == "NoConflicts"
    assert conditions(api, "shop/web")["Conflict"]["lastTransitionTime"] >= before


@pytest.mark.asyncio
async def test_invalid_exports_get_valid_false(api: RecordingApiServer, start: Start) -> None:
    seed(api, exported_service("shop", "ext", [("10.2.0.9", True)], kind="ExternalName"))
    seed(api, service_export("shop", "ghost"))
    east = start()
    await until("Valid on both", lambda: conditions(api, "shop/ghost"), east)
    await until("Valid on ext", lambda: conditions(api, "shop/ext"), east)
    ext, ghost = conditions(api, "shop/ext"), conditions(api, "shop/ghost")
    assert (ext["Valid"]["status"], ext["Valid"]["reason"]) == ("False", "InvalidServiceType")
    assert "ExternalName" in ext["Valid"]["message"]
    assert (ghost["Valid"]["status"], ghost["Valid"]["reason"]) == ("False", "NoService")
    assert "Conflict" not in ext
    assert objects(api, "ServiceImport") == {}


# ---------------------------------------------------------------------- imports


@pytest.mark.asyncio
async def test_imports_come_and_go_with_exports_and_nothing_is_left(
    api: RecordingApiServer, start: Start
) -> None:
    seed(api, namespace("billing"), exported_service("shop", "web", [("10.1.0.1", True)]))
    foreign = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": "legacy", "namespace": "shop"},
        "spec": {"type": "ClusterSetIP", "ports": []},
    }
    api.put(foreign)
    east = start()
    web = await until(
        "the web import, with its status",
        lambda: (
            (found := objects(api, "ServiceImport").get("shop/web")) and "status" in found and found
        ),
        east,
    )
    assert web["metadata"]["labels"] == MANAGED
    assert web["apiVersion"] == "multicluster.x-k8s.io/v1beta1"  # stored as the CRD says
    assert web["spec"] == {
        "type": "ClusterSetIP",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
    }
    assert web["status"]["clusters"] == [{"cluster": "east"}]
    (ready,) = web["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Ready")
    # The writer discovered v1beta1 and wrote in it.
    posts = [r.path for r in api.requests if r.method == "POST" and "serviceimports" in r.path]
    assert posts
    assert all("/multicluster.x-k8s.io/v1beta1/" in p for p in posts)

    # A remote cluster's exports arrive by a catalog merge: one in a namespace that exists
    # here (billing), one in a namespace that does not (payroll).
    api_svc = ExportedService(ServiceKey("billing", "api"), ServiceType.HEADLESS, exported_at=1.0)
    payroll = ExportedService(ServiceKey("payroll", "run"), ServiceType.CLUSTER_SET_IP)
    also_web = ExportedService(WEB, ServiceType.CLUSTER_SET_IP, (ServicePort("http", "TCP", 80),))
    east.merge(remote("west", 1, api_svc, payroll, also_web, namespaces=frozenset({"billing"})))
    await until(
        "billing/api imported", lambda: "billing/api" in objects(api, "ServiceImport"), east
    )
    await until(
        "web from both clusters",
        lambda: (
            objects(api, "ServiceImport")["shop/web"]["status"]["clusters"]
            == [{"cluster": "east"}, {"cluster": "west"}]
        ),
        east,
    )
    assert objects(api, "ServiceImport")["billing/api"]["spec"]["type"] == "Headless"
    assert "payroll/run" not in objects(api, "ServiceImport")

    # Unexport here, and west stops exporting: every managed import goes; the foreign stays.
    api.remove("ServiceExport", "shop", "web")
    east.merge(remote("west", 2))
    await until(
        "only the foreign import left",
        lambda: set(objects(api, "ServiceImport")) == {"shop/legacy"},
        east,
    )
    assert objects(api, "ServiceImport")["shop/legacy"]["spec"] == foreign["spec"]
    assert not [r for r in api.requests if "legacy" in r.path and r.method != "GET"]
    # Every call the writer made is one it declares, and RBAC granted each of them.
    made = [r for r in api.requests if api.agents.get(id(r), "").startswith("meshd/")]
    # Discovery (/apis/GROUP/VERSION) is a non-resource URL every authenticated user may
    # read (the system:discovery role): no RBAC of ours.
    assert any(r.path == "/apis/multicluster.x-k8s.io/v1beta1" for r in made)
    made = [r for r in made if r.resource]
    assert {(r.group, r.resource, r.verb) for r in made} <= PERMISSIONS
    assert [r for r in made if r.status == 403] == []


def test_the_shipped_rbac_grants_every_call_of_the_writer() -> None:
    rbac = Rbac.from_manifests(REPO / "manifests")
    missing = [
        (group, resource, verb)
        for group, resource, verb in sorted(PERMISSIONS)
        if not rbac.allows(verb, group, resource, "meshd-system" if resource == "leases" else "")
    ]
    assert missing == []
    assert not rbac.allows("update", "coordination.k8s.io", "leases", "shop")  # one namespace


# ---------------------------------------------------------------------- leadership


@pytest.mark.asyncio
async def test_leader_hand_over_between_two_replicas_without_double_writes(
    api: RecordingApiServer, start: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    a = start("a")
    await leading(a)
    b = start("b")
    await until(
        "a wrote the import and the conditions",
        lambda: (
            objects(api, "ServiceImport").get("shop/web", {}).get("status")
            and set(conditions(api, "shop/web")) == OURS
        ),
        a,
        b,
    )
    await until("b follows the lease", lambda: b.writer.keeper.election.record is not None, b)
    await until("a's views caught up", lambda: not a.writer.plan().writes, a)
    writes_of_a = len(api.mcs_writes("a"))
    # Create, import status, export status; one more export status when a's first pass ran
    # before its own export reached the catalog (Ready: Pending, then Exported).
    assert writes_of_a in (3, 4), api.mcs_writes("a")
    assert api.mcs_writes("b") == []

    await a.stop_writer()  # a clean stop releases the Lease
    await leading(b)
    lease = objects(api, "Lease")["meshd-system/meshd-east"]
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    await until("b ran a pass", lambda: b.writer.passes > 0, b)
    # b plans from the same objects as a did: there is nothing left to write.
    assert b.writer.plan().writes == []
    assert api.mcs_writes("b") == []

    seed(api, exported_service("shop", "cart", [("10.1.0.2", True)]))
    await until("b wrote cart's import and conditions", lambda: len(api.mcs_writes("b")) >= 3, b)
    await until("b's views caught up", lambda: not b.writer.plan().writes, b)
    # As for a above: one more export status when cart's first pass saw it Pending.
    assert len(api.mcs_writes("b")) in (3, 4), api.mcs_writes("b")
    assert len(api.mcs_writes("a")) == writes_of_a
    creates = [r for r in api.writes(kind="serviceimports") if r.method == "POST"]
    assert len(creates) == 2  # one per import, whoever led


@pytest.mark.asyncio
async def test_a_replica_whose_renewals_fail_stops_writing_and_the_other_takes_over(
    api: RecordingApiServer, start: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    a = start("a")
    await leading(a)
    b = start("b")
    await until("a wrote", lambda: len(api.mcs_writes("a")) >= 3, a, b)
    await until("a's views caught up", lambda: not a.writer.plan().writes, a, b)
    written = len(api.mcs_writes("a"))  # 3, or 4 when its first pass saw the export Pending

    def cut_a(request: web.Request, agent: str) -> ApiError | None:
        if agent == "meshd/a" and "/leases" in request.path:
            return ApiError(503, "ServiceUnavailable", "etcdserver: request timed out")
        return None

    api.faults.append(cut_a)
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    await until("a stops leading", lambda: not a.writer.is_leader(), a, b)
    assert loop.time() - cut_at < 0.6 + 0.4  # the renew deadline, and a little
    await leading(b)
    assert loop.time() - cut_at < 1.0 + 1.5  # a lease duration after the last renewal

    seed(api, exported_service("shop", "cart", [("10.1.0.2", True)]))
    await until("b wrote cart's import and conditions", lambda: len(api.mcs_writes("b")) >= 3, b)
    await until("b's views caught up", lambda: not b.writer.plan().writes, b)
    assert "shop/cart" in objects(api, "ServiceImport")
    assert len(api.mcs_writes("a")) == written
    assert len(api.mcs_writes("b")) in (3, 4), api.mcs_writes("b")


@pytest.mark.asyncio
async def test_a_leader_that_finds_another_holder_stops_at_once(
    api: RecordingApiServer, start: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    a = start("a")
    await leading(a)
    await until("a wrote", lambda: len(api.mcs_writes("a")) >= 3, a)
    await until("a's views caught up", lambda: not a.writer.plan().writes, a)
    written = len(api.mcs_writes("a"))  # 3, or 4 when its first pass saw the export Pending

    stop = asyncio.Event()

    async def intruder() -> None:  # another holder, renewing every 0.2 s
        renewals = 0
        while not stop.is_set():
            renewals += 1
            api.put(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": "meshd-east", "namespace": "meshd-system"},
                    "spec": {
                        "holderIdentity": "intruder",
                        "leaseDurationSeconds": 1,
                        "renewTime": f"2030-01-01T00:00:00.{renewals:06d}Z",
                    },
                }
            )
            await asyncio.sleep(0.2)

    task = asyncio.create_task(intruder())
    try:
        await until("a stops leading", lambda: not a.writer.is_leader(), a, timeout_s=1.0)
        seed(api, exported_service("shop", "cart", [("10.1.0.2", True)]))
        exports = a.writer.source.state.stores["ServiceExport"]
        await until(
            "a's source sees the cart export", lambda: ("shop", "cart") in exports.objects, a
        )
        await asyncio.sleep(1.5)  # longer than a lease: the intruder keeps it
        assert "shop/cart" not in objects(api, "ServiceImport")
        assert len(api.mcs_writes("a")) == written
    finally:
        stop.set()
        await task
    await leading(a)  # the intruder is gone: a takes the lease back, and catches up
    await until("a imports cart", lambda: "shop/cart" in objects(api, "ServiceImport"), a)


@pytest.mark.asyncio
async def test_api_server_down_and_back(api: RecordingApiServer, start: Start) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    a = start("a")
    await leading(a)
    await until("a wrote", lambda: len(api.mcs_writes("a")) >= 3, a)
    await until("a's views caught up", lambda: not a.writer.plan().writes, a)

    await api.stop()
    await until("a stops leading", lambda: not a.writer.is_leader(), a, timeout_s=3.0)
    seed(api, exported_service("shop", "cart", [("10.1.0.2", True)]))  # while it is away
    api.remove("ServiceExport", "shop", "web")
    await api.start()

    await leading(a)  # its own record: it renews at once
    await until(
        "cart in, web out",
        lambda: set(objects(api, "ServiceImport")) == {"shop/cart"},
        a,
        timeout_s=10.0,
    )
    await until("cart's conditions", lambda: set(conditions(api, "shop/cart")) == OURS, a)
    creates = [r for r in api.writes(kind="serviceimports") if r.method == "POST"]
    assert len(creates) == 2  # web once, cart once: nothing written twice


# ---------------------------------------------------------------------- denials


def without(rbac: Rbac, resource: str, verb: str) -> Rbac:
    rules = tuple(
        Rule(r.api_groups, r.resources, r.verbs - {verb}, r.resource_names, r.namespace, r.origin)
        if resource in r.resources
        else r
        for r in rbac.rules
    )
    return Rbac(rules, present=True, user=rbac.user)


@pytest.mark.asyncio
async def test_denied_and_invalid_writes_are_logged_counted_and_survived(
    api: RecordingApiServer, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshd")
    shipped = api.rbac
    api.rbac = without(shipped, "serviceimports", "create")

    def invalid_cart(request: web.Request, agent: str) -> ApiError | None:
        if request.method == "PATCH" and request.path.endswith("/serviceexports/cart/status"):
            message = (
                'ServiceExport.multicluster.x-k8s.io "cart" is invalid: status.conditions[0]'
                ".message: Too long: may not be longer than 32768"
            )
            return ApiError(422, "Invalid", message)
        return None

    api.faults.append(invalid_cart)
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    seed(api, exported_service("shop", "cart", [("10.1.0.2", True)]))
    east = start()
    await until("web's conditions", lambda: set(conditions(api, "shop/web")) == OURS, east)
    stats = east.writer.stats

    def logged(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    denied = await until("web's denial logged", lambda: logged("serviceimports shop/web"), east)
    invalid = await until("cart's 422 logged", lambda: logged("status shop/cart"), east)
    assert stats.total("forbidden", "serviceimports") >= 2  # web and cart
    assert stats.total("invalid", "serviceexports/status") >= 1
    assert objects(api, "ServiceImport") == {}
    assert conditions(api, "shop/cart") == {}
    assert "cannot create serviceimports shop/web" in denied[0].getMessage()
    assert "forbidden" in denied[0].getMessage()
    assert "RBAC does not grant it" in denied[0].getMessage()
    assert "cannot patch serviceexports/status shop/cart" in invalid[0].getMessage()
    assert "Too long" in invalid[0].getMessage()
    assert len(denied) == 1  # once while it lasts, not once per retry
    assert east.writer.is_leader()

    api.rbac = shipped  # the operator fixes the role: the writer catches up by itself
    api.faults.clear()
    await until(
        "both imports",
        lambda: set(objects(api, "ServiceImport")) == {"shop/web", "shop/cart"},
        east,
    )
    await until("cart's conditions", lambda: set(conditions(api, "shop/cart")) == OURS, east)
    assert stats.writes[("create", "serviceimports", "ok")] == 2


@pytest.mark.asyncio
async def test_a_new_leader_waits_for_the_ring_before_deleting_remote_imports(
    api: RecordingApiServer, start: Start
) -> None:
    """A restarted replica knows only its own cluster until the ring syncs: if it wrote then,
    it would delete every import that only other clusters export, and recreate it later."""
    seed(api, namespace("billing"))
    a = start("a")
    await leading(a)
    api_svc = ExportedService(ServiceKey("billing", "api"), ServiceType.HEADLESS, exported_at=1.0)
    a.merge(remote("west", 1, api_svc, namespaces=frozenset({"billing"})))
    await until("billing/api imported", lambda: "billing/api" in objects(api, "ServiceImport"), a)
    uid = objects(api, "ServiceImport")["billing/api"]["metadata"]["uid"]
    await a.stop()
    b = start("b")
    b.ring_synced = False
    await until("b leads", b.writer.is_leader, b, timeout_s=5.0)
    await until("b's source listed", lambda: b.source.state.synced, b)
    await asyncio.sleep(0.5)  # many writer periods: b must still not plan from half a view
    assert "billing/api" in objects(api, "ServiceImport")
    assert [r for r in api.writes("b", "serviceimports") if r.method == "DELETE"] == []
    b.merge(remote("west", 1, api_svc, namespaces=frozenset({"billing"})))
    b.ring_synced = True
    await until("b ran a pass", lambda: b.writer.passes > 0, b)
    assert objects(api, "ServiceImport")["billing/api"]["metadata"]["uid"] == uid
    assert [r for r in api.writes("b", "serviceimports") if r.method == "DELETE"] == []
