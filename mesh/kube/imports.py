"""The ServiceImports meshd writes: one per service exported anywhere in the clusterset, in
its namespace when that namespace exists in this cluster (pure; KEP-1645, MCS v1beta1).

What an import holds, from the clusterset's one view of the service
(``mesh.routing.view.MergedService``, the same DNS answers from):

- ``spec``: ``type``, ``ports`` (merged), ``sessionAffinity`` and ``sessionAffinityConfig``
  (the oldest export's Service), ``ipFamilies``, and ``ips``: the clusterset VIP when the
  service answers in mode ``clusterset-ip`` and the cluster has allocated it
  (``mesh.kube.derived``); with the annotation ``multicluster.kubernetes.io/derived-service``
  naming the Service that holds it, as the upstream controller names it;
- ``status``: ``clusters`` (every exporting cluster) and the ``Ready`` condition
  (``mesh.kube.conditions.import_ready``); conditions of other types are kept.

meshd labels its imports ``app.kubernetes.io/managed-by: meshd``, creates them (in the
version of the MCS API the server serves, ``api_version``), updates them (PUT with the
resourceVersion read, then ``/status``) and deletes them (with a resourceVersion
precondition) when no cluster exports the service any more. An import without that label
belongs to someone else: it is never touched, and reported in ``Plan.skipped``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.kube.conditions import READY, condition, import_ready
from mesh.kube.plan import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Obj,
    Plan,
    Write,
    managed,
    resource_version,
)
from mesh.model import ServiceKey, ServicePort
from mesh.routing.view import MergedService

__all__ = ["DERIVED_ANNOTATION", "import_writes"]

DERIVED_ANNOTATION = "multicluster.kubernetes.io/derived-service"
# The spec fields meshd owns on its imports (everything else in spec is left as it is).
_OWNED = ("type", "ports", "ips", "sessionAffinity", "sessionAffinityConfig", "ipFamilies")


def import_writes(
    key: ServiceKey,
    merged: MergedService | None,
    existing: Mapping[str, Any] | None,
    plan: Plan,
    *,
    api_version: str,
    mode: str,
    now: float,
    vip: Sequence[str] = (),
    derived: str = "",
) -> None:
    """The writes that make the import of ``key`` what ``merged`` says (none if it is)."""
    if existing is not None and not managed(existing):
        if merged is not None:
            plan.skipped.append(
                f"ServiceImport {key} exists without {MANAGED_BY_LABEL}={MANAGED_BY}: "
                "it is someone else's, meshd leaves it alone"
            )
        return
    if merged is None:
        if existing is not None:
            rv = resource_version(existing)
            options = {"preconditions": {"resourceVersion": rv}} if rv else {}
            why = f"ServiceImport {key}: deleted, no cluster exports it any more"
            plan.writes.append(Write("delete", "serviceimports", key, options, why))
        return
    spec = _spec(merged, vip)
    held = _held_conditions(existing)
    ready = condition(READY, import_ready(mode, vip, derived), held, 0, now)
    others = [dict(c) for c in held if c.get("type") != READY]
    status = {"status": {"clusters": _clusters(merged), "conditions": [*others, ready]}}
    annotations = {DERIVED_ANNOTATION: derived} if derived else {}
    if existing is None:
        meta: Obj = {
            "name": key.name,
            "namespace": key.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        }
        if annotations:
            meta["annotations"] = annotations
        body: Obj = {"apiVersion": api_version, "kind": "ServiceImport", "metadata": meta}
        body["spec"] = spec
        why = f"ServiceImport {key}: created ({_describe(merged, vip)})"
        plan.writes.append(Write("create", "serviceimports", key, body, why))
        plan.writes.append(Write("patch_status", "serviceimports", key, status, why))
        return
    if not _spec_matches(existing, spec) or _derived_of(existing) != derived:
        updated = copy.deepcopy(dict(existing))
        old = updated.get("spec")
        kept = {k: v for k, v in old.items() if k not in _OWNED} if isinstance(old, dict) else {}
        updated["spec"] = {**kept, **spec}
        _set_derived(updated, derived)
        updated.pop("status", None)
        why = f"ServiceImport {key}: updated ({_describe(merged, vip)})"
        plan.writes.append(Write("update", "serviceimports", key, updated, why))
    held_status = existing.get("status")
    held_status = held_status if isinstance(held_status, Mapping) else {}
    if held_status.get("clusters") != status["status"]["clusters"] or held != tuple(
        status["status"]["conditions"]
    ):
        why = f"ServiceImport {key}: exported by {', '.join(merged.clusters)}; {ready['reason']}"
        plan.writes.append(Write("patch_status", "serviceimports", key, status, why))


def _spec(merged: MergedService, vip: Sequence[str]) -> Obj:
    spec: Obj = {
        "type": merged.type.value,
        "ports": [_port(p) for p in merged.ports],
        "sessionAffinity": "ClientIP" if merged.session_affinity else "None",
    }
    if merged.session_affinity:
        timeout = {"timeoutSeconds": merged.affinity_timeout_s}
        spec["sessionAffinityConfig"] = {"clientIP": timeout}
    if merged.ip_families:
        spec["ipFamilies"] = list(merged.ip_families)
    if vip:
        spec["ips"] = list(vip)
    return spec


def _port(port: ServicePort) -> Obj:
    item: Obj = {"name": port.name} if port.name else {}
    item.update(protocol=port.protocol, port=port.port)
    return item


def _port_key(item: Any) -> tuple[str, str, Any]:
    if not isinstance(item, Mapping):
        return ("", "", item)
    return (item.get("name") or "", item.get("protocol") or "TCP", item.get("port"))


def _spec_matches(existing: Mapping[str, Any], wanted: Obj) -> bool:
    spec = existing.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    for name in _OWNED:
        held, want = spec.get(name), wanted.get(name)
        if name == "ports":
            held = [_port_key(p) for p in held] if isinstance(held, list) else []
            want = [_port_key(p) for p in want or ()]
        if held != want:
            return False
    return True


def _derived_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = notes.get(DERIVED_ANNOTATION) if isinstance(notes, Mapping) else None
    return value if isinstance(value, str) else ""


def _set_derived(obj: Obj, derived: str) -> None:
    meta = obj.setdefault("metadata", {})
    notes = dict(meta.get("annotations") or {})
    if derived:
        notes[DERIVED_ANNOTATION] = derived
    else:
        notes.pop(DERIVED_ANNOTATION, None)
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)


def _clusters(merged: MergedService) -> list[Obj]:
    return [{"cluster": c} for c in merged.clusters]


def _held_conditions(obj: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], ...]:
    status = obj.get("status") if obj is not None else None
    raw = status.get("conditions") if isinstance(status, Mapping) else None
    return tuple(c for c in raw if isinstance(c, Mapping)) if isinstance(raw, list) else ()


def _describe(merged: MergedService, vip: Sequence[str]) -> str:
    ports = ", ".join(f"{p.protocol}/{p.port}" for p in merged.ports) or "no ports"
    at = f" at {', '.join(vip)}" if vip else ""
    return f"{merged.type.value}{at}, {ports}, from {', '.join(merged.clusters)}"
