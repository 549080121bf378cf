"""The pure planning of answer mode clusterset-ip's derived objects (``mesh.kube.derived``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mesh.kube.derived import derived_name, derived_writes, garbage_writes, vips_of, weighted_counts
from mesh.kube.plan import Plan
from mesh.kube.status import Derived, reconcile
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.modes import Answering
from mesh.routing.view import merge_service

WEB = ServiceKey("shop", "web")
HTTP = ServicePort("http", "TCP", 80)
IMPORT = {
    "apiVersion": "multicluster.x-k8s.io/v1beta1",
    "kind": "ServiceImport",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
}


def export(*addresses: str, port: int = 8080) -> ExportedService:
    return ExportedService(
        WEB,
        ServiceType.CLUSTER_SET_IP,
        (HTTP,),
        tuple(Endpoint((a,)) for a in addresses),
        endpoint_ports=(ServicePort("http", "TCP", port),),
    )


def plan_for(
    selection: Any,
    services: dict[ServiceKey, Any] | None = None,
    slices: dict[ServiceKey, Any] | None = None,
) -> tuple[Plan, set[ServiceKey]]:
    merged = merge_service(WEB, [(c, s) for c, s, _ in selection])
    plan = Plan()
    wanted = derived_writes(WEB, merged, selection, IMPORT, services or {}, slices or {}, plan)
    return plan, wanted


def test_the_derived_name_is_the_upstream_one() -> None:
    name = derived_name(WEB)
    assert re.fullmatch(r"derived-[0-9a-v]{10}", name)
    assert name == derived_name(ServiceKey("shop", "web"))
    assert name != derived_name(ServiceKey("web", "shop"))


@pytest.mark.parametrize(
    ("ready", "weights", "expected"),
    [
        ([10, 10], [1, 1], [10, 10]),
        ([10, 10], [70, 30], [10, 4]),
        ([2, 10], [70, 30], [2, 1]),
        ([5, 5, 5], [1, 1, 2], [3, 3, 5]),
        ([100, 1], [1, 99], [1, 1]),
    ],
)
def test_weighted_counts(ready: list[int], weights: list[int], expected: list[int]) -> None:
    assert weighted_counts(ready, weights) == expected


def test_one_slice_per_cluster_and_family_and_no_more_than_a_thousand_each() -> None:
    many = [f"10.2.{i // 250}.{i % 250}" for i in range(1500)]
    dual = export("10.1.0.1", "fd00::1")
    plan, wanted = plan_for((("east", dual, 1), ("west", export(*many, port=9090), 1)))
    names = sorted(k.name for k in wanted)
    base = derived_name(WEB)
    assert names == sorted(
        [base, f"{base}-east-ipv4", f"{base}-east-ipv6", f"{base}-west-ipv4", f"{base}-west-ipv4-1"]
    )
    bodies = {w.key.name: w.body for w in plan.writes if w.resource == "endpointslices"}
    assert len(bodies[f"{base}-west-ipv4"]["endpoints"]) == 1000
    assert len(bodies[f"{base}-west-ipv4-1"]["endpoints"]) == 500
    assert bodies[f"{base}-east-ipv6"]["endpoints"] == [
        {
            "addresses": ["fd00::1"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
        }
    ]
    assert bodies[f"{base}-west-ipv4"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 9090}
    ]
    assert all(w.verb == "create" for w in plan.writes)


def test_nothing_is_written_when_the_api_holds_what_is_wanted() -> None:
    selection = (("east", export("10.1.0.1"), 1),)
    plan, _ = plan_for(selection)
    held = {
        w.key: {**w.body, "metadata": {**w.body["metadata"], "resourceVersion": "9"}}
        for w in plan.writes
    }
    services = {k: v for k, v in held.items() if v["kind"] == "Service"}
    slices = {k: v for k, v in held.items() if v["kind"] == "EndpointSlice"}
    again, _ = plan_for(selection, services, slices)
    assert again.writes == []
    # An endpoint changes: that slice alone is updated (PUT with its resourceVersion).
    changed, _ = plan_for((("east", export("10.1.0.2"), 1),), services, slices)
    assert [(w.verb, w.resource) for w in changed.writes] == [("update", "endpointslices")]
    assert changed.writes[0].body["metadata"]["resourceVersion"] == "9"


def test_no_uid_no_derived_objects_yet() -> None:
    merged = merge_service(WEB, [("east", export("10.1.0.1"))])
    plan = Plan()
    no_uid = {**IMPORT, "metadata": {"name": "web", "namespace": "shop"}}
    assert (
        derived_writes(WEB, merged, (("east", export("10.1.0.1"), 1),), no_uid, {}, {}, plan)
        == set()
    )
    assert plan.writes == []


def test_garbage_is_only_what_meshd_derived() -> None:
    ours = {
        "metadata": {
            "name": "derived-x-west-ipv4",
            "namespace": "shop",
            "resourceVersion": "4",
            "labels": {
                "app.kubernetes.io/managed-by": "meshd",
                "multicluster.kubernetes.io/service-name": "web",
            },
        }
    }
    theirs = {"metadata": {"name": "other", "namespace": "shop", "labels": {"app": "x"}}}
    a, b = ServiceKey("shop", "derived-x-west-ipv4"), ServiceKey("shop", "other")
    plan = Plan()
    garbage_writes(set(), {}, {a: ours, b: theirs}, plan)
    assert [(w.verb, w.key, w.body) for w in plan.writes] == [
        ("delete", a, {"preconditions": {"resourceVersion": "4"}})
    ]


def test_vips_come_from_meshds_derived_services_only() -> None:
    name = derived_name(WEB)
    labels = {
        "app.kubernetes.io/managed-by": "meshd",
        "multicluster.kubernetes.io/service-name": "web",
    }
    ours = {
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"clusterIPs": ["10.96.0.9"]},
    }
    unlabelled = {
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.8"},
    }
    misnamed = {
        "metadata": {"name": "x", "namespace": "shop", "labels": labels},
        "spec": {"clusterIP": "10.96.0.7"},
    }
    pending = {"metadata": {"name": name, "namespace": "shop", "labels": labels}, "spec": {}}
    assert vips_of([ours, unlabelled, misnamed]) == {WEB: ("10.96.0.9",)}
    assert vips_of([pending]) == {}


def test_nothing_derived_is_deleted_before_the_policy_has_chosen() -> None:
    """The writer may pass before the agent's first rebuild: the VIP's Service must stay
    (deleting it would change the VIP), and so must its slices."""
    name = derived_name(WEB)
    labels = {
        "app.kubernetes.io/managed-by": "meshd",
        "multicluster.kubernetes.io/service-name": "web",
    }
    service = {
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"clusterIP": "10.96.0.9"},
    }
    held_slice = {"metadata": {"name": f"{name}-east-ipv4", "namespace": "shop", "labels": labels}}
    services = {ServiceKey("shop", name): service}
    slices = {ServiceKey("shop", f"{name}-east-ipv4"): held_slice}
    state = ClusterState(
        "east", 1, 1, namespaces=frozenset({"shop"}), services={WEB: export("10.1.0.1")}
    )
    imports = {
        WEB: {
            **IMPORT,
            "metadata": {**IMPORT["metadata"], "labels": {"app.kubernetes.io/managed-by": "meshd"}},
        }
    }
    mode = Answering("clusterset-ip", vips=True)
    plan = reconcile(
        "east", {}, {"shop"}, [state], imports, 0.0, mode, derived=Derived({}, services, slices)
    )
    assert [w for w in plan.writes if w.verb == "delete"] == []
    # Once it has chosen nothing at all (no endpoint anywhere), the slices go; the VIP stays.
    plan = reconcile(
        "east",
        {},
        {"shop"},
        [state],
        imports,
        0.0,
        mode,
        derived=Derived({WEB: ()}, services, slices),
    )
    assert [(w.verb, w.resource) for w in plan.writes if w.verb == "delete"] == [
        ("delete", "endpointslices")
    ]
