"""What meshd writes back to its cluster's Kubernetes API, as the MCS API expects (KEP-1645).

Pure: the local view and the clusterset's states in, the API writes that are needed out.
The adapter (``mesh.kube.writer``) reads the objects, calls ``reconcile`` and, only
while this replica holds the leader Lease, performs the writes.

Inputs:

- ``exports``: every ServiceExport of this cluster as the API holds it (``LocalExport``:
  resourceVersion, generation, current ``status.conditions``), with the verdict of
  ``mesh.sources.translate.translate_exports`` on it, valid or not;
- ``namespaces``: the namespaces that exist (and are not terminating) in this cluster;
- ``states``: every cluster's ``ClusterState`` (this one's included), merged by
  ``mesh.routing.view.merge_clusterset``;
- ``imports``: every ServiceImport in the API, by key, managed by meshd or not;
- ``now``: wall-clock epoch seconds, for ``lastTransitionTime``.

Outputs (``Write``):

- on each ServiceExport, the ``Valid`` condition (True ``Valid``; False ``NoService``,
  ``InvalidServiceType`` for ExternalName, ``InvalidService``) and, on valid exports, the
  ``Conflict`` condition (True ``TypeConflict``/``PortConflict``, comma-joined when both,
  naming the winning cluster and who disagrees; False ``NoConflicts``). KEP-1645 sets it on
  every export of a conflicted service, the oldest one's included. Also on valid exports,
  ``meshd.io/Ports`` (``mesh.kube.conditions``), from this cluster's own export. Conditions of other
  types are kept as they are. ``lastTransitionTime`` moves only when a condition's status
  changes; ``observedGeneration`` is the export's generation. Written with a merge patch of
  ``/status`` carrying the resourceVersion read, so a concurrent change gives a 409;
- a ServiceImport (``spec.type``, ``spec.ports``; ``status.clusters``) for every service
  exported anywhere in the clusterset, in its namespace when that exists here. meshd labels
  its imports ``app.kubernetes.io/managed-by: meshd``; it creates them, updates them (PUT
  with the resourceVersion read, then ``/status``) and deletes them (with a resourceVersion
  precondition) when no cluster exports the service any more. A ServiceImport without that
  label belongs to someone else: it is never touched, and reported in ``Plan.skipped``.

Idempotent: when the API already holds what is wanted, the plan is empty.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mesh.kube.conditions import PORTS, answer_mode, ports_condition
from mesh.model import ClusterId, ClusterState, ExportedService, ServiceKey, ServicePort
from mesh.routing.modes import DEFAULT_ANSWERING, Answering
from mesh.routing.view import MergedService, merge_clusterset
from mesh.sources.translate import ExportVerdict

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MCS_API_VERSION",
    "LocalExport",
    "Plan",
    "Write",
    "conflict_condition",
    "local_exports",
    "reconcile",
    "rfc3339",
]

MCS_API_VERSION = "multicluster.x-k8s.io/v1alpha1"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshd"
VALID, CONFLICT = "Valid", "Conflict"
_OURS = (VALID, CONFLICT, PORTS)  # the condition types meshd owns; others are left alone
Obj = dict[str, Any]


@dataclass(frozen=True)
class LocalExport:
    """One ServiceExport of this cluster, as the API holds it, with translate's verdict."""

    key: ServiceKey
    verdict: ExportVerdict
    resource_version: str = ""
    generation: int = 0
    conditions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Write:
    """One API call: ``verb`` is create, update (PUT), patch_status (merge patch of
    ``/status``) or delete; ``resource`` is serviceimports or serviceexports."""

    verb: str
    resource: str
    key: ServiceKey
    body: Mapping[str, Any]
    why: str


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # objects left alone, and why


def rfc3339(epoch_s: float) -> str:
    """A metav1.Time: seconds precision, UTC."""
    return datetime.fromtimestamp(int(epoch_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_exports(
    objects: Iterable[Mapping[str, Any]], verdicts: Mapping[ServiceKey, ExportVerdict]
) -> dict[ServiceKey, LocalExport]:
    """The ServiceExport objects (as listed) that have a verdict, as ``LocalExport``s."""
    found: dict[ServiceKey, LocalExport] = {}
    for obj in objects:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        name, namespace = meta.get("name"), meta.get("namespace") or "default"
        if not isinstance(name, str) or not isinstance(namespace, str):
            continue
        key = ServiceKey(namespace, name)
        verdict = verdicts.get(key)
        if verdict is None:
            continue
        status = obj.get("status")
        raw = status.get("conditions") if isinstance(status, Mapping) else None
        raw = raw if isinstance(raw, list) else []
        conditions = tuple(c for c in raw if isinstance(c, Mapping))
        generation = meta.get("generation")
        found[key] = LocalExport(
            key,
            verdict,
            str(meta.get("resourceVersion") or ""),
            generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
            conditions,
        )
    return found


def reconcile(
    cluster_id: ClusterId,
    exports: Mapping[ServiceKey, LocalExport],
    namespaces: Iterable[str],
    states: Iterable[ClusterState],
    imports: Mapping[ServiceKey, Mapping[str, Any]],
    now: float,
    answering: Answering = DEFAULT_ANSWERING,
) -> Plan:
    """The writes that make the API hold what the MCS API expects (none when it does);
    ``answering``: the agent's default answer mode (for ``meshd.io/Ports``)."""
    states = list(states)
    merged = merge_clusterset(states)
    mine = max(
        (s for s in states if s.cluster_id == cluster_id), key=lambda s: s.stamp, default=None
    )
    local = mine.services if mine is not None else {}
    plan = Plan()
    for key in sorted(exports):
        mode = answer_mode(merged.get(key), answering)
        write = _export_status(cluster_id, exports[key], merged.get(key), local.get(key), mode, now)
        if write is not None:
            plan.writes.append(write)
    present = set(namespaces)
    wanted = {k: m for k, m in merged.items() if k.namespace in present}
    for key in sorted(wanted.keys() | imports.keys()):
        _import_writes(key, wanted.get(key), imports.get(key), plan)
    return plan


# ---------------------------------------------------------------------- export status


def conflict_condition(merged: MergedService | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Conflict condition of an export of ``merged``."""
    if merged is None or not merged.conflicted:
        return "False", "NoConflicts", "every exporting cluster agrees on type and ports"
    total = len(merged.clusters)
    reasons, parts = [], []
    if merged.type_conflicts:
        reasons.append("TypeConflict")
        parts.append(
            f'Conflicting type: using "{merged.type.value}" from the oldest export, in '
            f'"{merged.oldest}"; {len(merged.type_conflicts)}/{total} clusters disagree '
            f"({', '.join(merged.type_conflicts)})."
        )
    if merged.port_conflicts:
        reasons.append("PortConflict")
        parts.append(
            f"Conflicting ports: {merged.port_detail}; the older definition is used. "
            f"{len(merged.port_conflicts)}/{total} clusters disagree "
            f"({', '.join(merged.port_conflicts)})."
        )
    return "True", ",".join(reasons), " ".join(parts)


def _condition(
    kind: str, status: str, reason: str, message: str, export: LocalExport, now: float
) -> Obj:
    old = next((c for c in export.conditions if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old is not None else None
    if old is None or old.get("status") != status or not isinstance(since, str):
        since = rfc3339(now)
    condition: Obj = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if export.generation:
        condition["observedGeneration"] = export.generation
    return condition


def _export_status(
    cluster_id: ClusterId,
    export: LocalExport,
    merged: MergedService | None,
    local: ExportedService | None,
    mode: str,
    now: float,
) -> Write | None:
    verdict = export.verdict
    valid = "True" if verdict.valid else "False"
    ours = [_condition(VALID, valid, verdict.reason, verdict.message, export, now)]
    if verdict.valid:
        ours.append(_condition(CONFLICT, *conflict_condition(merged), export, now))
        ours.append(_condition(PORTS, *ports_condition(local, mode), export, now))
    others = [dict(c) for c in export.conditions if c.get("type") not in _OURS]
    conditions = others + ours
    if conditions == [dict(c) for c in export.conditions]:
        return None
    summary = ", ".join(f"{c['type']}={c['status']} ({c['reason']})" for c in ours)
    body = {
        "metadata": {"resourceVersion": export.resource_version},
        "status": {"conditions": conditions},
    }
    why = f"ServiceExport {export.key} in cluster {cluster_id}: {summary}"
    return Write("patch_status", "serviceexports", export.key, body, why)


# ---------------------------------------------------------------------- imports


def _port(port: ServicePort) -> Obj:
    item: Obj = {"name": port.name} if port.name else {}
    item.update(protocol=port.protocol, port=port.port)
    return item


def _port_key(item: Any) -> tuple[str, str, Any]:
    if not isinstance(item, Mapping):
        return ("", "", item)
    return (item.get("name") or "", item.get("protocol") or "TCP", item.get("port"))


def _spec_matches(existing: Mapping[str, Any], merged: MergedService) -> bool:
    spec = existing.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    ports = spec.get("ports")
    ports = ports if isinstance(ports, list) else []
    return spec.get("type") == merged.type.value and [_port_key(p) for p in ports] == [
        _port_key(_port(p)) for p in merged.ports
    ]


def _clusters(merged: MergedService) -> list[Obj]:
    return [{"cluster": c} for c in merged.clusters]


def _managed(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def _describe(merged: MergedService) -> str:
    ports = ", ".join(f"{p.protocol}/{p.port}" for p in merged.ports) or "no ports"
    return f"{merged.type.value}, {ports}, from {', '.join(merged.clusters)}"


def _import_writes(
    key: ServiceKey,
    merged: MergedService | None,
    existing: Mapping[str, Any] | None,
    plan: Plan,
) -> None:
    if existing is not None and not _managed(existing):
        if merged is not None:
            plan.skipped.append(
                f"ServiceImport {key} exists without {MANAGED_BY_LABEL}={MANAGED_BY}: "
                "it is someone else's, meshd leaves it alone"
            )
        return
    if merged is None:
        if existing is not None:
            rv = _resource_version(existing)
            options = {"preconditions": {"resourceVersion": rv}} if rv else {}
            why = f"ServiceImport {key}: deleted, no cluster exports it any more"
            plan.writes.append(Write("delete", "serviceimports", key, options, why))
        return
    status = {"status": {"clusters": _clusters(merged)}}
    if existing is None:
        body: Obj = {
            "apiVersion": MCS_API_VERSION,
            "kind": "ServiceImport",
            "metadata": {
                "name": key.name,
                "namespace": key.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "spec": {"type": merged.type.value, "ports": [_port(p) for p in merged.ports]},
        }
        why = f"ServiceImport {key}: created ({_describe(merged)})"
        plan.writes.append(Write("create", "serviceimports", key, body, why))
        plan.writes.append(Write("patch_status", "serviceimports", key, status, why))
        return
    if not _spec_matches(existing, merged):
        updated = copy.deepcopy(dict(existing))
        spec = updated.get("spec")
        updated["spec"] = dict(spec) if isinstance(spec, Mapping) else {}
        updated["spec"].update(type=merged.type.value, ports=[_port(p) for p in merged.ports])
        updated.pop("status", None)
        why = f"ServiceImport {key}: updated ({_describe(merged)})"
        plan.writes.append(Write("update", "serviceimports", key, updated, why))
    if _held_clusters(existing) != _clusters(merged):
        why = f"ServiceImport {key}: exported by {', '.join(merged.clusters)}"
        plan.writes.append(Write("patch_status", "serviceimports", key, status, why))


def _held_clusters(obj: Mapping[str, Any]) -> Sequence[Any]:
    status = obj.get("status")
    clusters = status.get("clusters") if isinstance(status, Mapping) else None
    return clusters if isinstance(clusters, list) else []


def _resource_version(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""
