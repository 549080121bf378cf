"""Kubernetes objects for the tests, in the shapes ``kubectl get -o json`` shows (before the
server fills in uid, resourceVersion, creationTimestamp and defaults)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
MCS = "multicluster.x-k8s.io/v1alpha1"


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(
    ns: str,
    name: str,
    port: int = 80,
    headless: bool = False,
    kind: str | None = None,
    publish_not_ready: bool | None = None,
) -> Obj:
    spec: Obj = {
        "selector": {"app": name},
        "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}],
    }
    if headless:
        spec["clusterIP"] = "None"
    if kind is not None:
        spec["type"] = kind
        if kind == "ExternalName":
            spec = {"type": kind, "externalName": "example.com"}
    if publish_not_ready is not None:
        spec["publishNotReadyAddresses"] = publish_not_ready
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ns, name), "spec": spec}


def endpoint_slice(
    ns: str, name: str, service_name: str, endpoints: list[tuple[str, bool | None]]
) -> Obj:
    """Endpoints as (address, ready); ready None leaves ``conditions.ready`` out."""
    items = []
    for address, ready in endpoints:
        conditions: Obj = {}
        if ready is not None:
            conditions = {"ready": ready, "serving": ready, "terminating": False}
        items.append(
            {
                "addresses": [address],
                "conditions": conditions,
                "nodeName": "node-1",
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": f"{service_name}-pod"},
            }
        )
    meta = _meta(ns, name)
    meta["labels"] = {
        "kubernetes.io/service-name": service_name,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "endpoints": items,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
    }


def service_export(ns: str, name: str) -> Obj:
    return {"apiVersion": MCS, "kind": "ServiceExport", "metadata": _meta(ns, name)}


def exported_service(
    ns: str, name: str, addresses: list[tuple[str, bool | None]], **options: Any
) -> list[Obj]:
    """A Service with one EndpointSlice and its ServiceExport."""
    return [
        service(ns, name, **options),
        endpoint_slice(ns, f"{name}-abcde", name, addresses),
        service_export(ns, name),
    ]


def _meta(ns: str, name: str) -> Obj:
    return {"name": name, "namespace": ns}
