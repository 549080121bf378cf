"""The pure MCS write-back reconciler: conflicts, conditions and ServiceImports, literal times."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from mesh.kube.status import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    LocalExport,
    Plan,
    local_exports,
    reconcile,
    rfc3339,
)
from mesh.model import ClusterState, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.view import merge_clusterset, merge_service
from mesh.sources.translate import ExportVerdict, translate_exports
from tests.k8s.objects import service, service_export

WEB = ServiceKey("shop", "web")
HTTP = ServicePort("http", "TCP", 80)
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
VALID = ExportVerdict(True, "Valid", "the Service is exported")


def svc(
    ports: tuple[ServicePort, ...] = (HTTP,),
    kind: ServiceType = ServiceType.CLUSTER_SET_IP,
    at: float = T0,
    key: ServiceKey = WEB,
) -> ExportedService:
    return ExportedService(key, kind, ports, exported_at=at)


def state(cluster: str, *services: ExportedService, version: int = 1) -> ClusterState:
    return ClusterState(
        cluster, 1, version, namespaces=frozenset({"shop"}), services={s.key: s for s in services}
    )


def export(
    verdict: ExportVerdict = VALID, conditions: tuple[Mapping[str, Any], ...] = ()
) -> dict[ServiceKey, LocalExport]:
    return {WEB: LocalExport(WEB, verdict, "42", 1, conditions)}


def conditions_of(plan: Plan) -> dict[str, dict[str, Any]]:
    (write,) = [w for w in plan.writes if w.resource == "serviceexports"]
    assert write.verb == "patch_status"
    assert write.body["metadata"] == {"resourceVersion": "42"}
    return {c["type"]: c for c in write.body["status"]["conditions"]}


def imported(plan: Plan) -> list[tuple[str, str]]:
    return [(w.verb, str(w.key)) for w in plan.writes if w.resource == "serviceimports"]


def apply(plan: Plan, imports: dict[ServiceKey, dict[str, Any]]) -> None:
    """What the API server would hold after the plan's import writes (rv left out)."""
    for write in plan.writes:
        if write.resource != "serviceimports":
            continue
        if write.verb == "create":
            imports[write.key] = dict(write.body)
        elif write.verb == "update":
            imports[write.key] = {**write.body, "status": imports[write.key].get("status", {})}
        elif write.verb == "patch_status":
            imports[write.key] = {**imports[write.key], "status": write.body["status"]}
        elif write.verb == "delete":
            del imports[write.key]


# ---------------------------------------------------------------------- merging


def test_the_oldest_export_sets_the_type_and_the_newer_disagrees() -> None:
    merged = merge_service(
        WEB,
        [("west", svc(kind=ServiceType.HEADLESS, at=T0 + 60)), ("east", svc(at=T0))],
    )
    assert merged.type is ServiceType.CLUSTER_SET_IP
    assert merged.oldest == "east"
    assert merged.type_conflicts == ("west",)
    assert merged.clusters == ("east", "west")


def test_ports_are_the_union_and_the_oldest_definition_wins_a_name() -> None:
    east = svc(ports=(HTTP, ServicePort("metrics", "TCP", 9090)), at=T0)
    west = svc(
        ports=(ServicePort("http", "TCP", 8080), ServicePort("grpc", "TCP", 9000)), at=T0 + 1
    )
    merged = merge_service(WEB, [("west", west), ("east", east)])
    assert merged.ports == (
        HTTP,
        ServicePort("metrics", "TCP", 9090),
        ServicePort("grpc", "TCP", 9000),
    )
    assert merged.port_conflicts == ("west",)
    assert '"http" TCP/8080' in merged.port_detail
    assert merged.type_conflicts == ()


def test_a_port_number_under_another_name_loses_and_extra_ports_do_not_conflict() -> None:
    east = svc(ports=(HTTP,), at=T0)
    west = svc(ports=(ServicePort("web", "TCP", 80),), at=T0 + 5)
    south = svc(ports=(HTTP, ServicePort("admin", "TCP", 81)), at=T0 + 9)
    merged = merge_service(WEB, [("east", east), ("west", west), ("south", south)])
    assert merged.ports == (HTTP, ServicePort("admin", "TCP", 81))
    assert merged.port_conflicts == ("west",)


def test_unknown_export_times_rank_last_and_ties_go_by_cluster_id() -> None:
    manifest = svc(kind=ServiceType.HEADLESS, at=0.0)
    merged = merge_service(WEB, [("aaa", manifest), ("zzz", svc(at=T0))])
    assert merged.oldest == "zzz"
    tie = merge_service(WEB, [("b", svc(kind=ServiceType.HEADLESS, at=T0)), ("a", svc(at=T0))])
    assert (tie.oldest, tie.type) == ("a", ServiceType.CLUSTER_SET_IP)


def test_one_state_per_cluster_the_newest_copy() -> None:
    old = state("east", svc(kind=ServiceType.HEADLESS), version=1)
    new = state("east", svc(), version=2)
    merged = merge_clusterset([new, old])[WEB]
    assert (merged.clusters, merged.type, merged.conflicted) == (
        ("east",),
        ServiceType.CLUSTER_SET_IP,
        False,
    )


# ---------------------------------------------------------------------- conditions


def test_conflict_conditions_on_the_newer_and_the_oldest_export() -> None:
    states = [state("east", svc(at=T0)), state("west", svc(kind=ServiceType.HEADLESS, at=T0 + 60))]
    for me in ("west", "east"):
        conditions = conditions_of(reconcile(me, export(), {"shop"}, states, {}, T0 + 100))
        assert conditions["Valid"]["status"] == "True"
        conflict = conditions["Conflict"]
        assert (conflict["status"], conflict["reason"]) == ("True", "TypeConflict")
        assert '"ClusterSetIP"' in conflict["message"]
        assert '"east"' in conflict["message"]
        assert "1/2 clusters disagree (west)" in conflict["message"]
        assert conflict["lastTransitionTime"] == "2023-11-14T22:15:00Z"
        assert conflict["observedGeneration"] == 1


def test_type_and_port_conflicts_together() -> None:
    east = svc(at=T0)
    west = svc(ports=(ServicePort("http", "UDP", 80),), kind=ServiceType.HEADLESS, at=T0 + 1)
    plan = reconcile("west", export(), {"shop"}, [state("east", east), state("west", west)], {}, T0)
    conflict = conditions_of(plan)["Conflict"]
    assert conflict["reason"] == "TypeConflict,PortConflict"
    assert "Conflicting type" in conflict["message"]
    assert "Conflicting ports" in conflict["message"]


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (ExportVerdict(False, "NoService", "there is no Service shop/web"), "NoService"),
        (ExportVerdict(False, "InvalidServiceType", "ExternalName"), "InvalidServiceType"),
    ],
)
def test_invalid_exports_get_valid_false_and_no_conflict_condition(
    verdict: ExportVerdict, reason: str
) -> None:
    stale = {"type": "Conflict", "status": "True", "reason": "TypeConflict", "message": "x"}
    plan = reconcile("east", export(verdict, (stale,)), {"shop"}, [state("east")], {}, T0)
    conditions = conditions_of(plan)
    assert set(conditions) == {"Valid", "Ready"}
    assert (conditions["Valid"]["status"], conditions["Valid"]["reason"]) == ("False", reason)
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert ready["message"] == verdict.message


def test_transition_time_moves_only_with_the_status_and_foreign_conditions_stay() -> None:
    states = [state("east", svc(at=T0)), state("west", svc(at=T0 + 1))]
    first = conditions_of(reconcile("east", export(), {"shop"}, states, {}, T0))
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Done", "message": ""}
    held = (foreign, *first.values())
    # Nothing changed, an hour later: no write at all.
    later = reconcile("east", export(conditions=held), {"shop"}, states, {}, T0 + 3600)
    assert [w for w in later.writes if w.resource == "serviceexports"] == []
    # West turns headless: Conflict flips to True with a new time; Valid keeps its time.
    states[1] = state("west", svc(kind=ServiceType.HEADLESS, at=T0 + 1), version=2)
    plan = reconcile("east", export(conditions=held), {"shop"}, states, {}, T0 + 7200)
    (write,) = [w for w in plan.writes if w.resource == "serviceexports"]
    written = write.body["status"]["conditions"]
    assert written[0] == foreign
    by_type = {c["type"]: c for c in written}
    assert by_type["Valid"]["lastTransitionTime"] == rfc3339(T0)
    assert by_type["Conflict"]["lastTransitionTime"] == rfc3339(T0 + 7200)
    assert by_type["Conflict"]["status"] == "True"


# ---------------------------------------------------------------------- imports


def test_imports_are_created_updated_and_deleted_as_exports_come_and_go() -> None:
    imports: dict[ServiceKey, dict[str, Any]] = {}
    states = [state("east", svc(at=T0))]
    plan = reconcile("east", {}, {"shop", "default"}, states, imports, T0)
    assert imported(plan) == [("create", "shop/web"), ("patch_status", "shop/web")]
    create = plan.writes[0].body
    assert create["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}
    assert create["apiVersion"] == "multicluster.x-k8s.io/v1beta1"
    assert create["spec"] == {
        "type": "ClusterSetIP",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        "sessionAffinity": "None",
    }
    status = plan.writes[1].body["status"]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "True", "Ready")
    ]
    assert "status" not in create  # a status subresource: written through /status
    apply(plan, imports)
    assert reconcile("east", {}, {"shop"}, states, imports, T0 + 1).writes == []

    # A remote cluster exports it too, with an extra port: spec and status change.
    extra = ServicePort("grpc", "TCP", 9000)
    states.append(state("west", svc(ports=(HTTP, extra), at=T0 + 5)))
    plan = reconcile("east", {}, {"shop"}, states, imports, T0 + 2)
    assert imported(plan) == [("update", "shop/web"), ("patch_status", "shop/web")]
    apply(plan, imports)
    assert imports[WEB]["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    assert reconcile("east", {}, {"shop"}, states, imports, T0 + 3).writes == []

    # West stops exporting: its extra port and its cluster leave; then east stops too: the
    # import goes.
    states[1] = state("west", version=2)
    plan = reconcile("east", {}, {"shop"}, states, imports, T0 + 4)
    assert imported(plan) == [("update", "shop/web"), ("patch_status", "shop/web")]
    apply(plan, imports)
    states[0] = state("east", version=2)
    imports[WEB]["metadata"]["resourceVersion"] = "77"
    plan = reconcile("east", {}, {"shop"}, states, imports, T0 + 5)
    assert imported(plan) == [("delete", "shop/web")]
    assert plan.writes[0].body == {"preconditions": {"resourceVersion": "77"}}
    apply(plan, imports)
    assert imports == {}


def test_imports_only_where_the_namespace_exists() -> None:
    other = svc(key=ServiceKey("billing", "api"))
    plan = reconcile("east", {}, {"shop"}, [state("west", svc(), other)], {}, T0)
    assert imported(plan) == [("create", "shop/web"), ("patch_status", "shop/web")]


def test_imports_of_someone_else_are_never_touched() -> None:
    theirs = {
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "5"},
        "spec": {"type": "Headless", "ports": []},
    }
    gone = {
        "metadata": {"name": "old", "namespace": "shop", "labels": {"team": "x"}},
        "spec": {"type": "ClusterSetIP", "ports": []},
    }
    imports = {WEB: theirs, ServiceKey("shop", "old"): gone}
    plan = reconcile("east", {}, {"shop"}, [state("east", svc())], imports, T0)
    assert plan.writes == []
    assert len(plan.skipped) == 1
    assert "shop/web" in plan.skipped[0]


# ---------------------------------------------------------------------- from objects


def test_local_exports_from_api_objects_with_translate_verdicts() -> None:
    objects: list[dict[str, Any]] = [
        service("shop", "web"),
        service("shop", "ext", kind="ExternalName"),
        service_export("shop", "web"),
        service_export("shop", "ext"),
        service_export("shop", "ghost"),
    ]
    objects[2]["metadata"].update(
        creationTimestamp="2023-11-14T22:13:20Z", generation=3, resourceVersion="9"
    )
    objects[2]["status"] = {"conditions": [{"type": "Valid", "status": "True"}]}
    exports, _, verdicts = translate_exports(("api", o) for o in objects)
    assert exports.services[WEB].exported_at == T0
    found = local_exports([o for o in objects if o["kind"] == "ServiceExport"], verdicts)
    assert found[WEB].verdict.valid
    assert (found[WEB].generation, found[WEB].resource_version) == (3, "9")
    assert found[WEB].conditions == ({"type": "Valid", "status": "True"},)
    ext = found[ServiceKey("shop", "ext")].verdict
    assert (ext.valid, ext.reason) == (False, "InvalidServiceType")
    assert "ExternalName" in ext.message
    ghost = found[ServiceKey("shop", "ghost")].verdict
    assert (ghost.valid, ghost.reason) == (False, "NoService")


# ---------------------------------------------------------------------- MCS v1beta1


def affine(
    timeout: int = 600, at: float = T0, cluster_ips: tuple[str, ...] = ()
) -> ExportedService:
    return ExportedService(
        WEB,
        ServiceType.CLUSTER_SET_IP,
        (HTTP,),
        exported_at=at,
        cluster_ips=cluster_ips,
        session_affinity="ClientIP",
        affinity_timeout_s=timeout,
    )


def test_session_affinity_and_ip_families_reach_the_import() -> None:
    states = [state("east", affine(cluster_ips=("10.96.0.1", "fd00::1")))]
    plan = reconcile("east", {}, {"shop"}, states, {}, T0)
    create = plan.writes[0].body
    assert create["spec"]["sessionAffinity"] == "ClientIP"
    assert create["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    assert create["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert "ips" not in create["spec"]  # no VIP outside answer mode clusterset-ip


def test_session_affinity_conflicts_are_reported_and_the_oldest_wins() -> None:
    states = [
        state("east", affine(timeout=600, at=T0)),
        state("west", svc(at=T0 + 1)),
        state("south", affine(timeout=60, at=T0 + 2)),
    ]
    merged = merge_clusterset(states)[WEB]
    assert (merged.session_affinity, merged.affinity_timeout_s) == ("ClientIP", 600)
    assert merged.affinity_conflicts == ("west",)
    assert merged.affinity_config_conflicts == ("south",)
    conflict = conditions_of(reconcile("east", export(), {"shop"}, states, {}, T0))["Conflict"]
    assert conflict["status"] == "True"
    assert conflict["reason"] == "SessionAffinityConflict,SessionAffinityConfigConflict"
    assert 'Conflicting session affinity: using "ClientIP, 600 s"' in conflict["message"]
    assert "(west)" in conflict["message"]
    assert "(south)" in conflict["message"]


def test_ready_says_exported_pending_or_failed() -> None:
    states = [state("east", svc())]
    ready = conditions_of(reconcile("east", export(), {"shop"}, states, {}, T0))["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Exported")
    # Valid, but this cluster's published state does not hold it yet.
    ready = conditions_of(reconcile("east", export(), {"shop"}, [state("east")], {}, T0))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Pending")
