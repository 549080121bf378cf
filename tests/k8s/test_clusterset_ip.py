"""Answer mode clusterset-ip (issue 15, part 4): the derived Service and EndpointSlices of
each ServiceImport's VIP, against the fake API server.

A real ``KubernetesSource``, ``KubeWriter`` and the agent's routing planner
(``AnswerPlanner``) run as one replica (``tests.k8s.writeback.Replica``); other clusters'
exports arrive as the ring delivers them (catalog merges), and "dead" is the set of clusters
this agent reaches. Every check waits on the condition, with a bounded deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mesh.kube.derived import derived_name
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.modes import Answering
from tests.k8s.objects import endpoint_slice, exported_service, namespace, service
from tests.k8s.writeback import RecordingApiServer, Replica, objects, until

WEB = ServiceKey("shop", "web")
DERIVED = derived_name(WEB)
HTTP = ServicePort("http", "TCP", 80)
VIP_MODE = Answering("clusterset-ip", vips=True)
REGIONS = {"east": "us", "west": "us", "south": "eu"}

Start = Callable[..., Replica]


@pytest_asyncio.fixture
async def api() -> AsyncIterator[RecordingApiServer]:
    async with RecordingApiServer() as server:
        server.put(namespace("meshd-system"))
        yield server


@pytest_asyncio.fixture
async def start(api: RecordingApiServer, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Replica] = []

    def start(answering: Answering = VIP_MODE) -> Replica:
        started.append(Replica(api, tmp_path, "a", answering=answering))
        return started[-1]

    yield start
    for replica in started:
        await replica.stop()


def remote(
    cluster: str, version: int, *addresses: str, port: int = 9090, **notes: str
) -> ClusterState:
    annotations = tuple(sorted((f"meshd.io/{k.replace('_', '-')}", v) for k, v in notes.items()))
    svc = ExportedService(
        WEB,
        ServiceType.CLUSTER_SET_IP,
        (HTTP,),
        tuple(Endpoint((a,), zone=f"{cluster}-a") for a in addresses),
        exported_at=1.0 if cluster == "west" else 2.0,  # older than east's: annotations win
        annotations=annotations,
        endpoint_ports=(ServicePort("http", "TCP", port),),
    )
    return ClusterState(
        cluster, 7, version, REGIONS[cluster], namespaces=frozenset({"shop"}), services={WEB: svc}
    )


def slices(api: RecordingApiServer) -> dict[str, dict[str, Any]]:
    """The derived EndpointSlices, by source cluster and family: {"east/IPv4": slice}."""
    found = {}
    for obj in objects(api, "EndpointSlice").values():
        labels = obj["metadata"].get("labels", {})
        if labels.get("kubernetes.io/service-name") == DERIVED:
            found[f"{labels['multicluster.kubernetes.io/source-cluster']}/{obj['addressType']}"] = (
                obj
            )
    return found


def slice_addresses(api: RecordingApiServer) -> dict[str, set[str]]:
    return {
        where: {a for e in s["endpoints"] for a in e["addresses"]}
        for where, s in slices(api).items()
    }


def seed_east(api: RecordingApiServer, *addresses: tuple[str, bool | None], **notes: str) -> None:
    objs = exported_service("shop", "web", list(addresses))
    for obj in objs:
        if obj["kind"] == "ServiceExport" and notes:
            obj["metadata"]["annotations"] = {
                f"meshd.io/{k.replace('_', '-')}": v for k, v in notes.items()
            }
        api.put(obj)


def expected_slices(replica: Replica) -> dict[str, set[str]]:
    """What the routing policy selected, as the derived slices must hold it."""
    assert replica.planner is not None
    chosen = replica.planner.selections[WEB]
    return {
        f"{cluster}/IPv4": {a for e in svc.ready_endpoints() for a in e.addresses}
        for cluster, svc, _ in chosen
    }


@pytest.mark.asyncio
async def test_the_derived_service_and_slices_hold_what_the_policy_selects(
    api: RecordingApiServer, start: Start
) -> None:
    seed_east(api, ("10.1.0.1", True), ("10.1.0.2", True), ("10.1.0.3", False))
    east = start()
    east.merge(remote("west", 1, "10.2.0.1", "10.2.0.2"))
    # Default tiers: east (this cluster) first; its ready endpoints alone.
    await until(
        "east's slice",
        lambda: slice_addresses(api) == {"east/IPv4": {"10.1.0.1", "10.1.0.2"}},
        east,
    )
    assert slice_addresses(api) == expected_slices(east)
    imported = await until(
        "the VIP in the import",
        lambda: objects(api, "ServiceImport")["shop/web"]["spec"].get("ips"),
        east,
    )
    derived = objects(api, "Service")[f"shop/{DERIVED}"]
    assert imported == [derived["spec"]["clusterIP"]]
    assert "selector" not in derived["spec"]
    assert derived["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"]) for p in derived["spec"]["ports"]] == [("http", 80)]
    web_import = objects(api, "ServiceImport")["shop/web"]
    owner = {"kind": "ServiceImport", "name": "web", "uid": web_import["metadata"]["uid"]}
    for obj in (derived, *slices(api).values()):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert {k: ref[k] for k in owner} == owner
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshd"
        assert obj["metadata"]["labels"]["multicluster.kubernetes.io/service-name"] == "web"
    east_slice = slices(api)["east/IPv4"]
    labels = east_slice["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "meshd"
    assert labels["kubernetes.io/service-name"] == DERIVED
    # The slice carries what east's pods listen on (8080), named as the Service's port.
    assert east_slice["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert (
        web_import["metadata"]["annotations"]["multicluster.kubernetes.io/derived-service"]
        == DERIVED
    )
    # The import may carry the VIP in a pass that still saw the export Pending (the
    # conditions come from the same writer's next pass): wait for Ready, then check it.

    def ready_condition() -> tuple[str, str] | None:
        status = objects(api, "ServiceImport")["shop/web"].get("status", {})
        found = {c["type"]: c for c in status.get("conditions", [])}.get("Ready")
        return None if found is None else (found["status"], found["reason"])

    await until("the import Ready", lambda: ready_condition() == ("True", "Ready"), east)
    # DNS answers the VIP: the source read it from the derived Service, and the answer is it.
    await until("DNS answers the VIP", lambda: east.answers.get(WEB) == tuple(imported), east)


@pytest.mark.asyncio
async def test_a_failover_changes_the_derived_slices(api: RecordingApiServer, start: Start) -> None:
    seed_east(api, ("10.1.0.1", True))
    east = start()
    east.merge(remote("west", 1, "10.2.0.1", "10.2.0.2"))
    east.merge(remote("south", 1, "10.3.0.1"))
    await until("east's slice", lambda: slice_addresses(api) == {"east/IPv4": {"10.1.0.1"}}, east)
    # East's only endpoint is not ready any more (in the API): west, same region, takes over.
    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.1", False)]))
    await until(
        "west's slice",
        lambda: slice_addresses(api) == {"west/IPv4": {"10.2.0.1", "10.2.0.2"}},
        east,
    )
    assert slices(api)["west/IPv4"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 9090}]
    # West is dead (this agent cannot reach it): south.
    east.set_healthy({"east", "south"})
    await until("south's slice", lambda: slice_addresses(api) == {"south/IPv4": {"10.3.0.1"}}, east)
    assert slice_addresses(api) == expected_slices(east)
    # Everything back: east again, and the others' slices are gone.
    east.set_healthy(None)
    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.1", True)]))
    await until("east again", lambda: slice_addresses(api) == {"east/IPv4": {"10.1.0.1"}}, east)


@pytest.mark.asyncio
async def test_weights_choose_how_many_endpoints_each_cluster_lists(
    api: RecordingApiServer, start: Start
) -> None:
    seed_east(api, *((f"10.1.0.{i}", True) for i in range(1, 11)))
    east = start()
    west = [f"10.2.0.{i}" for i in range(1, 11)]
    # West's export is the oldest: its annotations are the service's policy.
    east.merge(remote("west", 1, *west, affinity="none", weights="east=70,west=30"))
    await until(
        "both clusters, 70:30 as 10:4 endpoints",
        lambda: (
            {k: len(v) for k, v in slice_addresses(api).items()}
            == {"east/IPv4": 10, "west/IPv4": 4}
        ),
        east,
    )
    assert slice_addresses(api)["west/IPv4"] == set(west[:4])


@pytest.mark.asyncio
async def test_derived_objects_go_with_the_import_or_the_mode(
    api: RecordingApiServer, start: Start
) -> None:
    seed_east(api, ("10.1.0.1", True))
    east = start()
    await until("east's slice", lambda: slices(api), east)
    await until(
        "the VIP", lambda: objects(api, "ServiceImport")["shop/web"]["spec"].get("ips"), east
    )
    # The service answers endpoints now: the derived objects go, and the import's VIP.
    api.remove("ServiceExport", "shop", "web")
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        if obj["kind"] == "ServiceExport":
            obj["metadata"]["annotations"] = {"meshd.io/answer-mode": "endpoints"}
            api.put(obj)
    await until(
        "no derived objects",
        lambda: not slices(api) and f"shop/{DERIVED}" not in objects(api, "Service"),
        east,
    )
    imported = await until(
        "the import without VIP",
        lambda: (
            (i := objects(api, "ServiceImport").get("shop/web")) and "ips" not in i["spec"] and i
        ),
        east,
    )
    assert "annotations" not in imported["metadata"]
    # Back to clusterset-ip, then the export goes: the import goes, and its derived objects.
    api.remove("ServiceExport", "shop", "web")
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        if obj["kind"] == "ServiceExport":
            api.put(obj)
    await until("slices again", lambda: slices(api), east)
    api.remove("ServiceExport", "shop", "web")
    await until(
        "nothing left",
        lambda: (
            not slices(api)
            and f"shop/{DERIVED}" not in objects(api, "Service")
            and "shop/web" not in objects(api, "ServiceImport")
        ),
        east,
    )


@pytest.mark.asyncio
async def test_nothing_meshd_did_not_create_is_touched(
    api: RecordingApiServer, start: Start
) -> None:
    theirs = service("shop", DERIVED)  # someone's Service that happens to have the name
    api.put(theirs)
    before = objects(api, "Service")[f"shop/{DERIVED}"]
    seed_east(api, ("10.1.0.1", True))
    east = start()
    await until("the import", lambda: "shop/web" in objects(api, "ServiceImport"), east)
    await until(
        "a pass with the note", lambda: any(DERIVED in note for note in east.writer._skipped), east
    )
    assert objects(api, "Service")[f"shop/{DERIVED}"] == before
    assert slices(api) == {}  # no slice names someone else's Service
    assert "ips" not in objects(api, "ServiceImport")["shop/web"]["spec"]
    assert not [r for r in api.requests if DERIVED in r.path and r.method != "GET"]
