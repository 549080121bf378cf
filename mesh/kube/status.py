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
  ``InvalidServiceType`` for ExternalName, ``InvalidService``), ``Ready`` (MCS v1beta1:
  ``Exported``, ``Pending``, ``Failed``) and, on valid exports, the ``Conflict`` condition
  (True ``TypeConflict``/``PortConflict``/``SessionAffinityConflict``/
  ``SessionAffinityConfigConflict``, comma-joined, naming the winning cluster and who
  disagrees; False ``NoConflicts``). KEP-1645 sets it on every export of a conflicted
  service, the oldest one's included. Also on valid exports, ``meshd.io/Ports``
  (``mesh.kube.conditions``), from this cluster's own export. Conditions of other types are
  kept as they are. ``lastTransitionTime`` moves only when a condition's status changes;
  ``observedGeneration`` is the export's generation. Written with a merge patch of
  ``/status`` carrying the resourceVersion read, so a concurrent change gives a 409;
- a ServiceImport for every service exported anywhere in the clusterset, in its namespace
  when that exists here (``mesh.kube.imports``), in the MCS API version the server serves
  (``mcs_api_version``);
- for services that answer in mode ``clusterset-ip``: the derived Service and EndpointSlices
  of the VIP (``mesh.kube.derived``), once the import exists; the VIP goes to the import's
  ``spec.ips`` once the cluster has allocated it. Derived objects no longer wanted go.

Idempotent: when the API already holds what is wanted, the plan is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mesh.kube.conditions import (
    PORTS,
    READY,
    Condition,
    answer_mode,
    condition,
    export_ready,
    ports_condition,
    rfc3339,
)
from mesh.kube.derived import (
    Selection,
    derived_name,
    derived_writes,
    garbage_writes,
    held_for,
    vips_of,
)
from mesh.kube.imports import import_writes
from mesh.kube.plan import MANAGED_BY, MANAGED_BY_LABEL, Plan, Write
from mesh.model import ClusterId, ClusterState, ExportedService, ServiceKey
from mesh.routing.modes import CLUSTERSET_IP, DEFAULT_ANSWERING, Answering
from mesh.routing.view import MergedService, merge_clusterset
from mesh.sources.translate import ExportVerdict

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MCS_API_VERSION",
    "Derived",
    "LocalExport",
    "Plan",
    "Write",
    "conflict_condition",
    "local_exports",
    "reconcile",
    "rfc3339",
]

MCS_API_VERSION = "multicluster.x-k8s.io/v1beta1"  # the preferred; the writer discovers it
VALID, CONFLICT = "Valid", "Conflict"
_OURS = (VALID, READY, CONFLICT, PORTS)  # the condition types meshd owns; others stay


@dataclass(frozen=True)
class Derived:
    """What answer mode ``clusterset-ip`` plans from: the policy's choice per service
    (``mesh.routing``), and the Services and EndpointSlices in the API, by (namespace, name)."""

    selections: Mapping[ServiceKey, Selection]
    services: Mapping[ServiceKey, Mapping[str, Any]]
    slices: Mapping[ServiceKey, Mapping[str, Any]]


@dataclass(frozen=True)
class LocalExport:
    """One ServiceExport of this cluster, as the API holds it, with translate's verdict."""

    key: ServiceKey
    verdict: ExportVerdict
    resource_version: str = ""
    generation: int = 0
    conditions: tuple[Mapping[str, Any], ...] = ()


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
    mcs_api_version: str = MCS_API_VERSION,
    derived: Derived | None = None,
) -> Plan:
    """The writes that make the API hold what the MCS API expects (none when it does);
    ``answering``: the agent's default answer mode; ``mcs_api_version``: the version of the
    MCS API the server serves (what new imports are written in); ``derived``: what answer
    mode ``clusterset-ip`` needs (None: nothing derived is planned or removed)."""
    states = list(states)
    merged = merge_clusterset(states)
    mine = max(
        (s for s in states if s.cluster_id == cluster_id), key=lambda s: s.stamp, default=None
    )
    local = mine.services if mine is not None else {}
    plan = Plan()
    for key in sorted(exports):
        view = merged.get(key)
        mode = answer_mode(view, answering)
        write = _export_status(cluster_id, exports[key], view, local.get(key), mode, now)
        if write is not None:
            plan.writes.append(write)
    present = set(namespaces)
    wanted = {k: m for k, m in merged.items() if k.namespace in present}
    kept: set[ServiceKey] = set()
    for key in sorted(wanted.keys() | imports.keys()):
        view = wanted.get(key)
        mode = answer_mode(view, answering)
        vip: tuple[str, ...] = ()
        name = ""
        if derived is not None and view is not None and mode == CLUSTERSET_IP:
            name = derived_name(key)
            service = derived.services.get(ServiceKey(key.namespace, name))
            vip = vips_of([service] if service is not None else []).get(key, ())
            selection = derived.selections.get(key)
            held = imports.get(key)
            if selection is None:  # not planned yet (the agent's first rebuild): keep all
                kept |= held_for(key, derived.services, derived.slices)
            elif held is not None:
                kept |= derived_writes(
                    key, view, selection, held, derived.services, derived.slices, plan
                )
        import_writes(
            key,
            view,
            imports.get(key),
            plan,
            api_version=mcs_api_version,
            mode=mode,
            now=now,
            vip=vip,
            derived=name,
        )
    if derived is not None:
        garbage_writes(kept, derived.services, derived.slices, plan)
    return plan


# ---------------------------------------------------------------------- export status


def conflict_condition(merged: MergedService | None) -> Condition:
    """(status, reason, message) of the Conflict condition of an export of ``merged``."""
    if merged is None or not merged.conflicted:
        return (
            "False",
            "NoConflicts",
            "every exporting cluster agrees on type, ports and session affinity",
        )
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
    for losers, reason, what in (
        (merged.affinity_conflicts, "SessionAffinityConflict", "session affinity"),
        (merged.affinity_config_conflicts, "SessionAffinityConfigConflict", "ClientIP timeout"),
    ):
        if losers:
            reasons.append(reason)
            held = merged.session_affinity or "None"
            if merged.session_affinity:
                held += f", {merged.affinity_timeout_s} s"
            parts.append(
                f'Conflicting {what}: using "{held}" from the oldest export, in '
                f'"{merged.oldest}"; {len(losers)}/{total} clusters disagree '
                f"({', '.join(losers)})."
            )
    return "True", ",".join(reasons), " ".join(parts)


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

    def made(kind: str, found: Condition) -> dict[str, Any]:
        return condition(kind, found, export.conditions, export.generation, now)

    ours = [made(VALID, (valid, verdict.reason, verdict.message))]
    ours.append(made(READY, export_ready(verdict.valid, verdict.message, local, cluster_id)))
    if verdict.valid:
        ours.append(made(CONFLICT, conflict_condition(merged)))
        ours.append(made(PORTS, ports_condition(local, mode)))
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
