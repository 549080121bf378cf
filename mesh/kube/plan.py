"""What a write-back pass plans: API writes, and the objects it leaves alone (pure).

``mesh.kube.status`` (ServiceExport conditions), ``mesh.kube.imports`` (ServiceImports) and
``mesh.kube.derived`` (the clusterset VIP's Service and EndpointSlices) each add their
``Write``s to one ``Plan``; ``mesh.kube.writer`` performs them in order while it leads.
Objects meshd creates carry ``app.kubernetes.io/managed-by: meshd``; an object without that
label is someone else's, never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.model import ServiceKey

__all__ = ["MANAGED_BY", "MANAGED_BY_LABEL", "Obj", "Plan", "Write", "managed", "resource_version"]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshd"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One API call: ``verb`` is create, update (PUT), patch_status (merge patch of
    ``/status``) or delete; ``resource`` is serviceimports, serviceexports, services or
    endpointslices; ``key`` names the object (namespace, name)."""

    verb: str
    resource: str
    key: ServiceKey
    body: Mapping[str, Any]
    why: str

    @property
    def title(self) -> str:
        """The resource as RBAC names what this write does: ``serviceimports/status``."""
        return f"{self.resource}/status" if self.verb == "patch_status" else self.resource

    def object_path(self, api_version: str) -> str:
        """The object's URL path, its resource served as ``api_version``."""
        root = "/apis" if "/" in api_version else "/api"
        namespace, name = self.key.namespace, self.key.name
        return f"{root}/{api_version}/namespaces/{namespace}/{self.resource}/{name}"

    def path(self, api_version: str) -> str:
        """Where this write goes: the collection (create), ``/status``, or the object."""
        if self.verb == "create":
            return self.object_path(api_version).rpartition("/")[0]
        if self.verb == "patch_status":
            return f"{self.object_path(api_version)}/status"
        return self.object_path(api_version)


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # objects left alone, and why


def managed(obj: Mapping[str, Any]) -> bool:
    """True when meshd made ``obj`` (its managed-by label says so)."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def resource_version(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""
