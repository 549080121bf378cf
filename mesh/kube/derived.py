"""The clusterset VIP (answer mode ``clusterset-ip``): a derived Service and its
EndpointSlices per ServiceImport (pure; KEP-1645's "ClusterSetIP", as the upstream
mcs-api controller derives it).

For each ClusterSetIP service that answers in mode ``clusterset-ip`` and whose ServiceImport
exists (with its uid), the writing replica wants:

- a **Service without selector** named ``derived-<10 base32hex characters of
  sha256("<namespace>/<name>")>`` (the upstream controller's name), in the import's
  namespace: ``type: ClusterIP``, the clusterset view's ports (``targetPort`` = ``port``: a
  selectorless Service's endpoints come from its slices, matched by port name), its session
  affinity, and its IP families; the cluster allocates the ClusterIP, which is the VIP
  (``vips_of`` reads it back for DNS and for the import's ``spec.ips``);
- **EndpointSlices** holding the endpoints the routing policy chose
  (``mesh.routing.tiers.choose``: the first healthy tier, weights, min-healthy spill, fail
  open) from every cluster: one per chosen cluster and address family (more past 1,000
  endpoints, the API's limit per slice), labelled ``kubernetes.io/service-name: <derived>``,
  ``endpointslice.kubernetes.io/managed-by: meshd`` and
  ``multicluster.kubernetes.io/source-cluster: <cluster>``, with that cluster's endpoint
  ports (what its pods listen on, named as the Service's ports). kube-proxy (or any CNI)
  then balances the VIP over them, so the cluster's own data plane applies the policy's
  tiers.

Weights, as far as endpoint lists can express them: a proxy spreads connections evenly over
endpoints, so a cluster's share is its count of endpoints over the total. With
``meshd.io/weights``, each chosen cluster keeps a number of its ready endpoints in
proportion to its weight (the largest counts that fit every cluster's ready endpoints, at
least one per cluster), so the shares are the weights up to rounding to whole endpoints.

Every derived object carries an owner reference to its ServiceImport (so the cluster's
garbage collector deletes it with the import) and ``app.kubernetes.io/managed-by: meshd``;
meshd deletes its derived objects that are no longer wanted (the service left
``clusterset-ip``, a cluster left the choice) and never touches an object without that
label, even one that has the derived name (reported instead).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from mesh.kube.plan import MANAGED_BY, MANAGED_BY_LABEL, Obj, Plan, Write, managed
from mesh.model import Endpoint, ServiceKey
from mesh.routing.planner import Selection
from mesh.routing.view import MergedService

__all__ = [
    "SERVICE_NAME_LABEL",
    "SOURCE_CLUSTER_LABEL",
    "Choices",
    "Selection",
    "derived_name",
    "derived_writes",
    "garbage_writes",
    "held_for",
    "vips_of",
    "weighted_counts",
]

SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"  # the import's name
SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
SLICE_SERVICE_LABEL = "kubernetes.io/service-name"
SLICE_MANAGER_LABEL = "endpointslice.kubernetes.io/managed-by"
MAX_PER_SLICE = 1000  # the API server's limit on endpoints in one EndpointSlice


class Choices(Protocol):
    """What the writer reads of the agent's routing planner (``AnswerPlanner``): the
    policy's choice per service answering in mode clusterset-ip, and a version that moves
    with them."""

    @property
    def selections(self) -> Mapping[ServiceKey, Selection]: ...

    @property
    def selections_version(self) -> int: ...


@functools.lru_cache(maxsize=65536)
def derived_name(key: ServiceKey) -> str:
    """The derived Service's name: ``derived-`` and 10 characters of a hash of the key."""
    digest = hashlib.sha256(f"{key.namespace}/{key.name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().lower()[:10]


def vips_of(services: Iterable[Mapping[str, Any]]) -> dict[ServiceKey, tuple[str, ...]]:
    """The clusterset VIP of each import, from the derived Services meshd made (by key)."""
    found: dict[ServiceKey, tuple[str, ...]] = {}
    for obj in services:
        meta = obj.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        name = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
        if not managed(obj) or not isinstance(name, str) or not isinstance(meta, Mapping):
            continue
        key = ServiceKey(str(meta.get("namespace") or ""), name)
        if meta.get("name") != derived_name(key):
            continue
        spec = obj.get("spec")
        raw = spec.get("clusterIPs") or [spec.get("clusterIP")] if isinstance(spec, Mapping) else []
        ips = tuple(ip for ip in raw if isinstance(ip, str) and ip not in ("", "None"))
        if ips:
            found[key] = ips
    return found


def weighted_counts(ready: Sequence[int], weights: Sequence[int]) -> list[int]:
    """How many ready endpoints of each cluster to list so that the counts follow the
    weights (see the module docstring); all of them when the weights are equal."""
    if len(set(weights)) <= 1:
        return list(ready)
    scale = min(n / w for n, w in zip(ready, weights, strict=True) if w > 0)
    return [
        min(n, max(1, int(scale * w + 0.5))) if w > 0 else 0
        for n, w in zip(ready, weights, strict=True)
    ]


def derived_writes(
    key: ServiceKey,
    merged: MergedService,
    selection: Selection,
    imported: Mapping[str, Any],
    services: Mapping[ServiceKey, Mapping[str, Any]],
    slices: Mapping[ServiceKey, Mapping[str, Any]],
    plan: Plan,
) -> set[ServiceKey]:
    """The writes that make ``key``'s derived Service and slices what the policy chose;
    returns the (namespace, name) of every derived object wanted (``services`` and
    ``slices``: the objects held, by (namespace, name))."""
    meta = imported.get("metadata")
    uid = meta.get("uid") if isinstance(meta, Mapping) else None
    if not isinstance(uid, str) or not uid:
        return set()  # the import is not created yet: next pass
    owner = {
        "apiVersion": str(imported.get("apiVersion") or ""),
        "kind": "ServiceImport",
        "name": key.name,
        "uid": uid,
    }
    name = derived_name(key)
    held = services.get(ServiceKey(key.namespace, name))
    if held is not None and not managed(held):  # not ours: neither it nor slices naming it
        plan.skipped.append(
            f"Service {key.namespace}/{name} exists without {MANAGED_BY_LABEL}={MANAGED_BY}: "
            f"it is someone else's, so {key} gets no clusterset VIP (answer mode clusterset-ip)"
        )
        return set()
    wanted = {ServiceKey(key.namespace, name)}
    _service_write(key, name, merged, owner, held, plan)
    for slice_name, body in _slices(key, name, merged, selection, owner).items():
        at = ServiceKey(key.namespace, slice_name)
        wanted.add(at)
        _put(
            plan, "endpointslices", at, body, slices.get(at), _slice_fields, f"{key}: {body['why']}"
        )
    return wanted


def held_for(
    key: ServiceKey,
    services: Mapping[ServiceKey, Mapping[str, Any]],
    slices: Mapping[ServiceKey, Mapping[str, Any]],
) -> set[ServiceKey]:
    """The derived objects of ``key`` that meshd holds now (kept as they are while the
    policy has not chosen yet: deleting the Service would change the VIP)."""
    found = set()
    for held in (services, slices):
        for at, obj in held.items():
            meta = obj.get("metadata")
            labels = meta.get("labels") if isinstance(meta, Mapping) else None
            if (
                at.namespace == key.namespace
                and managed(obj)
                and isinstance(labels, Mapping)
                and labels.get(SERVICE_NAME_LABEL) == key.name
            ):
                found.add(at)
    return found


def garbage_writes(
    wanted: set[ServiceKey],
    services: Mapping[ServiceKey, Mapping[str, Any]],
    slices: Mapping[ServiceKey, Mapping[str, Any]],
    plan: Plan,
) -> None:
    """Delete the derived objects meshd made that are no longer wanted."""
    for resource, held in (("endpointslices", slices), ("services", services)):
        for at in sorted(held):
            obj = held[at]
            if at in wanted or not managed(obj) or not _derived(obj):
                continue
            rv = _rv(obj)
            options = {"preconditions": {"resourceVersion": rv}} if rv else {}
            why = f"derived {resource[:-1]} {at}: deleted, no longer wanted"
            plan.writes.append(Write("delete", resource, at, options, why))


# ---------------------------------------------------------------------- the Service


def _service_write(
    key: ServiceKey,
    name: str,
    merged: MergedService,
    owner: Obj,
    held: Mapping[str, Any] | None,
    plan: Plan,
) -> None:
    spec: Obj = {
        "type": "ClusterIP",
        "ports": [
            {**({"name": p.name} if p.name else {}), "protocol": p.protocol, "port": p.port,
             "targetPort": p.port}
            for p in merged.ports
        ],
        "sessionAffinity": "ClientIP" if merged.session_affinity else "None",
    }  # fmt: skip
    if merged.session_affinity:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": merged.affinity_timeout_s}}
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(key, name, owner, {}),
        "spec": spec,
    }
    if held is None and merged.ip_families:  # families are fixed once the IPs are allocated
        spec["ipFamilies"] = list(merged.ip_families)
        spec["ipFamilyPolicy"] = "PreferDualStack" if len(merged.ip_families) > 1 else "SingleStack"
    why = f"{key}: derived Service {name} (the clusterset VIP), {len(merged.ports)} port(s)"
    _put(plan, "services", ServiceKey(key.namespace, name), body, held, _service_fields, why)


def _service_fields(obj: Mapping[str, Any]) -> object:
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    ports = [
        (p.get("name") or "", p.get("protocol") or "TCP", p.get("port"), p.get("targetPort"))
        for p in spec.get("ports") or []
        if isinstance(p, Mapping)
    ]
    return (
        _owned_meta(obj),
        spec.get("type"),
        ports,
        spec.get("sessionAffinity") or "None",
        spec.get("sessionAffinityConfig") if spec.get("sessionAffinity") == "ClientIP" else None,
        spec.get("selector") or None,
    )


# ---------------------------------------------------------------------- the EndpointSlices


def _slices(
    key: ServiceKey, name: str, merged: MergedService, selection: Selection, owner: Obj
) -> dict[str, Obj]:
    counts = weighted_counts(
        [len(svc.ready_endpoints()) for _, svc, _ in selection], [w for _, _, w in selection]
    )
    wanted: dict[str, Obj] = {}
    for (cluster, svc, _), count in zip(selection, counts, strict=True):
        chosen = svc.ready_endpoints()[:count]
        ports = [
            {**({"name": p.name} if p.name else {}), "protocol": p.protocol,
             "port": svc.endpoint_port(p) or p.port}
            for p in merged.ports
        ]  # fmt: skip
        for family, endpoints in (("IPv4", _family(chosen, 4)), ("IPv6", _family(chosen, 6))):
            for start in range(0, len(endpoints), MAX_PER_SLICE):
                part = endpoints[start : start + MAX_PER_SLICE]
                suffix = f"-{start // MAX_PER_SLICE}" if start else ""
                slice_name = f"{name}-{cluster}-{family.lower()}{suffix}"
                labels = {SOURCE_CLUSTER_LABEL: cluster, SLICE_SERVICE_LABEL: name}
                labels[SLICE_MANAGER_LABEL] = MANAGED_BY
                wanted[slice_name] = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": _meta(key, slice_name, owner, labels),
                    "addressType": family,
                    "endpoints": [_endpoint(e, family) for e in part],
                    "ports": ports,
                    "why": f"{len(part)} {family} endpoint(s) of {cluster} in {slice_name}",
                }
    return wanted


def _family(endpoints: Sequence[Endpoint], version: int) -> list[Endpoint]:
    return [e for e in endpoints if (":" in e.addresses[0]) == (version == 6)]


def _endpoint(endpoint: Endpoint, family: str) -> Obj:
    addresses = [a for a in endpoint.addresses if (":" in a) == (family == "IPv6")]
    item: Obj = {
        "addresses": addresses,
        "conditions": {"ready": True, "serving": True, "terminating": False},
    }
    if endpoint.hostname:
        item["hostname"] = endpoint.hostname
    if endpoint.zone:
        item["zone"] = endpoint.zone
    return item


def _slice_fields(obj: Mapping[str, Any]) -> object:
    return (_owned_meta(obj), obj.get("addressType"), obj.get("endpoints"), obj.get("ports"))


# ---------------------------------------------------------------------- helpers


def _meta(key: ServiceKey, name: str, owner: Obj, labels: Mapping[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": key.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, SERVICE_NAME_LABEL: key.name, **labels},
        "ownerReferences": [owner],
    }


def _owned_meta(obj: Mapping[str, Any]) -> object:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    return (meta.get("labels") or {}, meta.get("ownerReferences") or [])


def _derived(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return isinstance(labels, Mapping) and SERVICE_NAME_LABEL in labels


def _rv(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""


def _put(
    plan: Plan,
    resource: str,
    at: ServiceKey,
    body: Obj,
    held: Mapping[str, Any] | None,
    fields: Any,
    why: str,
) -> None:
    """Create ``body``, or update ``held`` to it when the fields meshd owns differ."""
    body = {k: v for k, v in body.items() if k != "why"}
    if held is None:
        plan.writes.append(Write("create", resource, at, body, f"{why}: created"))
        return
    if not managed(held):
        plan.skipped.append(
            f"{resource[:-1]} {at} exists without {MANAGED_BY_LABEL}={MANAGED_BY}: "
            "it is someone else's, meshd leaves it alone (answer mode clusterset-ip needs it)"
        )
        return
    if fields(held) == fields(body):
        return
    updated = copy.deepcopy(dict(held))
    for field_name, value in body.items():
        if field_name == "metadata":
            updated["metadata"] = {**updated.get("metadata", {}), **value}
        elif field_name == "spec":
            updated["spec"] = {**updated.get("spec", {}), **value}
            if "sessionAffinityConfig" not in value:
                updated["spec"].pop("sessionAffinityConfig", None)
        else:
            updated[field_name] = value
    updated.pop("status", None)
    plan.writes.append(Write("update", resource, at, updated, f"{why}: updated"))
