"""The storage behind the fake Kubernetes API server: objects, resourceVersions, history.

It behaves like kube-apiserver over etcd, as far as a client can tell:

- one resourceVersion counter (etcd's revision) for every resource; every write bumps it,
  stamps the object with it and appends a ``StoredEvent`` to the history;
- a write that changes nothing is a no-op: no new resourceVersion, no event;
- ``compact()`` forgets the history up to the current revision; a watch or an exact list
  from before it gets ``410 Gone`` (reason ``Expired``);
- ``snapshot(resource, rv)`` rebuilds a collection as it was at ``rv`` from the history
  (for consistent ``limit``/``continue`` pages);
- the garbage collector: deleting an object deletes the objects whose ``ownerReferences``
  name it, at once (background propagation, without its delay);
- create, update (PUT), patch (merge, JSON, strategic without lists, apply) and delete,
  with optimistic concurrency: a stale ``metadata.resourceVersion`` (or a delete
  precondition) gives ``409 Conflict``; the ``status`` subresource writes only ``status``,
  and the main resource keeps ``status`` unchanged;
- server-set fields as the real API returns them: ``uid``, ``resourceVersion``,
  ``creationTimestamp``, ``generation`` (for kinds that have one) and the defaults of
  Namespace and Service (type, clusterIP allocation, port protocol and targetPort, status).

Errors raise ``ApiError``, which carries the ``Status`` object the real server would send.
Approximations, stated: server-side apply merges the applied configuration like a merge
patch (no field ownership, so re-applying without a field does not remove it); a strategic
merge patch that contains a list is refused with 415 rather than merged by merge keys.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" when cluster-scoped
Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    custom: bool = False  # a CRD: list items keep kind/apiVersion; PUT needs resourceVersion
    subresources: tuple[str, ...] = ()
    has_generation: bool = False
    create_on_update: bool = False  # PUT of a missing object creates it (leases)
    short_names: tuple[str, ...] = ()
    # Versions served besides ``version`` (the storage version), converted as a CRD with
    # conversion strategy None converts: the same object, its apiVersion rewritten.
    also_served: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version served, the storage version first."""
        return (self.version, *self.also_served)

    def api_version_of(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def served_as(self, obj: Obj, version: str) -> Obj:
        """``obj`` (as stored) as a client of ``version`` reads it."""
        if version == self.version or obj.get("apiVersion") != self.api_version:
            return obj
        return {**obj, "apiVersion": self.api_version_of(version)}

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """As messages name it: ``services``, ``leases.coordination.k8s.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


MCS = "multicluster.x-k8s.io"


def mcs_resources(
    storage: str = "v1beta1", served: tuple[str, ...] = ("v1alpha1",)
) -> tuple[ResourceType, ...]:
    """ServiceExport and ServiceImport as the upstream CRDs serve them: now v1beta1 stored and
    v1alpha1 served too; ``mcs_resources("v1alpha1", ())`` is an installation of the old CRDs."""
    return (
        ResourceType(MCS, storage, "serviceexports", "ServiceExport", True, custom=True,
                     subresources=("status",), has_generation=True, short_names=("svcex",),
                     also_served=served),
        ResourceType(MCS, storage, "serviceimports", "ServiceImport", True, custom=True,
                     subresources=("status",), has_generation=True, short_names=("svcim",),
                     also_served=served),
    )  # fmt: skip


def resources(mcs: tuple[ResourceType, ...] | None = None) -> tuple[ResourceType, ...]:
    """Every resource type the fake serves, with ``mcs`` for the MCS CRDs (default: both
    versions)."""
    core = [r for r in RESOURCES if r.group != MCS]
    return (*core[:3], *(mcs if mcs is not None else mcs_resources()), *core[3:])


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, subresources=("status",),
                 short_names=("ns",)),
    ResourceType("", "v1", "services", "Service", True, subresources=("status",),
                 short_names=("svc",)),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True,
                 has_generation=True),
    *mcs_resources(),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, create_on_update=True),
)  # fmt: skip


class ApiError(Exception):
    """A failed request, as the ``Status`` object the API server answers with."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(res: ResourceType, name: str) -> ApiError:
    details = {"name": name, "group": res.group, "kind": res.plural}
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _clean(details))


def conflict(res: ResourceType, name: str, why: str) -> ApiError:
    details = {"name": name, "group": res.group, "kind": res.plural}
    message = f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}'
    return ApiError(409, "Conflict", message, _clean(details))


def invalid(res: ResourceType, name: str, causes: str) -> ApiError:
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    details = {"name": name, "group": res.group, "kind": res.kind}
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {causes}', _clean(details))


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def _clean(details: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in details.items() if v not in ("", None)}


@dataclass(frozen=True)
class StoredEvent:
    """One change: ``obj`` is the object after it (for DELETED, as deleted)."""

    rv: int
    resource: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    prev: Obj | None


MODIFIED_ELSEWHERE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class Store:
    """Every object of every resource type, with one revision counter and a history."""

    def __init__(self, resources: Iterable[ResourceType] = RESOURCES, first_rv: int = 1000):
        self.resources = {r.plural: r for r in resources}
        self.rv = first_rv
        self.compacted = first_rv  # watches from before this get 410
        self.objects: dict[str, dict[ObjectKey, Obj]] = {p: {} for p in self.resources}
        self.history: list[StoredEvent] = []
        self.listeners: list[Callable[[StoredEvent], None]] = []
        self._ips = itertools.count(10)

    # ------------------------------------------------------------------ lookup

    def resource(self, kind_or_plural: str) -> ResourceType:
        for res in self.resources.values():
            if kind_or_plural in (res.kind, res.plural, res.singular, *res.short_names):
                return res
        raise KeyError(f"unknown resource {kind_or_plural!r}")

    def get(self, res: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.objects[res.plural].get((namespace if res.namespaced else "", name))
        if obj is None:
            raise not_found(res, name)
        return copy.deepcopy(obj)

    def items(self, res: ResourceType, at_rv: int | None = None) -> list[Obj]:
        """The objects of ``res`` in key order, now or as they were at ``at_rv``."""
        objects = self.objects[res.plural] if at_rv is None else self.snapshot(res, at_rv)
        return [copy.deepcopy(objects[k]) for k in sorted(objects)]

    def snapshot(self, res: ResourceType, at_rv: int) -> dict[ObjectKey, Obj]:
        if at_rv < self.compacted:
            raise expired(f"too old resource version: {at_rv} ({self.compacted})")
        objects = dict(self.objects[res.plural])
        for event in reversed(self.history):
            if event.rv <= at_rv:
                break
            if event.resource is res:
                key = _key(event.obj)
                if event.prev is None:
                    objects.pop(key, None)
                else:
                    objects[key] = event.prev
        return objects

    def events_since(self, res: ResourceType, rv: int) -> list[StoredEvent]:
        if rv < self.compacted:
            raise expired(f"too old resource version: {rv} ({self.compacted})")
        return [e for e in self.history if e.rv > rv and e.resource is res]

    def compact(self) -> int:
        """Forget the history up to now, as etcd compaction does; returns the revision."""
        self.history.clear()
        self.compacted = self.rv
        return self.rv

    # ------------------------------------------------------------------ writes

    def create(self, res: ResourceType, namespace: str, body: Any) -> Obj:
        obj = self._check_body(res, namespace, body)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise ApiError(
                400, "BadRequest", "resourceVersion should not be set on objects to be created"
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise invalid(
                res, "", "metadata.name: Required value: name or generateName is required"
            )
        key = _key(obj)
        if res.namespaced and ("", key[0]) not in self.objects["namespaces"]:
            raise not_found(self.resource("namespaces"), key[0])
        if key in self.objects[res.plural]:
            details = {"name": key[1], "group": res.group, "kind": res.plural}
            raise ApiError(
                409, "AlreadyExists", f'{res.qualified} "{key[1]}" already exists', _clean(details)
            )
        meta.pop("deletionTimestamp", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if res.has_generation:
            meta["generation"] = 1
        self._default(res, obj, None)
        return self._commit(res, "ADDED", obj, None)

    def update(
        self, res: ResourceType, namespace: str, name: str, body: Any, subresource: str = ""
    ) -> Obj:
        obj = self._check_body(res, namespace, body)
        if obj["metadata"].get("name") != name:
            given = obj["metadata"].get("name")
            message = (
                f"the name of the object ({given}) does not match the name on the URL ({name})"
            )
            raise ApiError(400, "BadRequest", message)
        key = _key(obj)
        old = self.objects[res.plural].get(key)
        if old is None:
            if res.create_on_update and not subresource:
                obj["metadata"].pop("resourceVersion", None)
                return self.create(res, namespace, obj)
            raise not_found(res, name)
        wanted = obj["metadata"].get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(res, name, MODIFIED_ELSEWHERE)
        if not wanted and res.custom:
            raise invalid(
                res,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            )
        return self._replace(res, old, obj, subresource)

    def patch(
        self,
        res: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
        field_manager: str | None = None,
    ) -> Obj:
        key = (namespace if res.namespaced else "", name)
        old = self.objects[res.plural].get(key)
        if content_type == "application/apply-patch+yaml":
            if not field_manager:
                raise invalid_patch("fieldManager: Required value: is required for apply patch")
            if old is None and not subresource:
                return self.create(res, namespace, patch)
        if old is None:
            raise not_found(res, name)
        target = apply_patch(res, copy.deepcopy(old), content_type, patch)
        wanted = (
            patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else None
        )
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(res, name, MODIFIED_ELSEWHERE)
        target.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        if target.get("metadata", {}).get("name") != name:
            raise invalid(res, name, "metadata.name: Invalid value: field is immutable")
        return self._replace(res, old, self._check_body(res, namespace, target), subresource)

    def delete(self, res: ResourceType, namespace: str, name: str, options: Any = None) -> Obj:
        key = (namespace if res.namespaced else "", name)
        old = self.objects[res.plural].get(key)
        if old is None:
            raise not_found(res, name)
        pre = options.get("preconditions") if isinstance(options, dict) else None
        if isinstance(pre, dict):
            want_rv, have_rv = pre.get("resourceVersion"), old["metadata"]["resourceVersion"]
            if want_rv and want_rv != have_rv:
                why = (
                    f"the ResourceVersion in the precondition ({want_rv}) does not match the "
                    f"ResourceVersion in record ({have_rv}). The object might have been modified"
                )
                raise conflict(res, name, why)
            want_uid, have_uid = pre.get("uid"), old["metadata"]["uid"]
            if want_uid and want_uid != have_uid:
                why = (
                    f"the UID in the precondition ({want_uid}) does not match the UID in record "
                    f"({have_uid}). The object might have been deleted and then recreated"
                )
                raise conflict(res, name, why)
        if res.plural == "namespaces":  # the namespace controller, done at once
            for other in self.resources.values():
                if other.namespaced:
                    for key2 in sorted(k for k in self.objects[other.plural] if k[0] == name):
                        self._commit(
                            other, "DELETED", copy.deepcopy(self.objects[other.plural][key2]), None
                        )
        deleted = self._commit(res, "DELETED", copy.deepcopy(old), None)
        self._collect_garbage(str(old["metadata"].get("uid")))
        return deleted

    def _collect_garbage(self, uid: str) -> None:
        """The garbage collector, done at once (background propagation): objects whose
        ``ownerReferences`` name the deleted object's uid are deleted, and theirs in turn."""
        for other in self.resources.values():
            for key in sorted(self.objects[other.plural]):
                obj = self.objects[other.plural].get(key)
                owners = (obj or {}).get("metadata", {}).get("ownerReferences") or []
                if any(isinstance(o, dict) and o.get("uid") == uid for o in owners):
                    self.delete(other, key[0], key[1])

    # ------------------------------------------------------------------ test helpers

    def put(self, obj: Mapping[str, Any]) -> Obj:
        """Create or replace ``obj`` (by its kind), ignoring resourceVersions."""
        res = self.resource(str(obj.get("kind")))
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace", "default") if res.namespaced else ""
        meta.pop("resourceVersion", None)
        if res.namespaced and ("", namespace) not in self.objects["namespaces"]:
            self.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        if (namespace, meta.get("name")) in self.objects[res.plural]:
            return self._replace(
                res,
                self.objects[res.plural][(namespace, meta["name"])],
                self._check_body(res, namespace, body),
                "",
                force_status=True,
            )
        return self.create(res, namespace, body)

    def remove(self, kind: str, namespace: str, name: str) -> Obj:
        return self.delete(self.resource(kind), namespace, name)

    # ------------------------------------------------------------------ internals

    def _check_body(self, res: ResourceType, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        served = {res.api_version_of(v) for v in res.versions}
        if obj.get("kind") not in (None, res.kind) or obj.get("apiVersion") not in (
            None,
            *served,
        ):
            message = (
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({res.api_version})"
                if obj.get("kind") == res.kind
                else f"{obj.get('kind')} in version {obj.get('apiVersion')!r} cannot be handled "
                f"as a {res.kind}"
            )
            raise ApiError(400, "BadRequest", message)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        meta.pop("managedFields", None)
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _replace(
        self, res: ResourceType, old: Obj, new: Obj, subresource: str, force_status: bool = False
    ) -> Obj:
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif "status" in res.subresources and not force_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new["metadata"], old["metadata"]
        for fixed in ("uid", "creationTimestamp", "generation"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        self._default(res, new, old)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write: no new revision, no event
        if res.has_generation and _spec(new) != _spec(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return self._commit(res, "MODIFIED", new, old)

    def _commit(self, res: ResourceType, kind: str, obj: Obj, prev: Obj | None) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = _key(obj)
        if kind == "DELETED":
            prev = self.objects[res.plural].pop(key)
        else:
            self.objects[res.plural][key] = obj
        event = StoredEvent(self.rv, res, kind, copy.deepcopy(obj), prev)
        self.history.append(event)
        for listener in list(self.listeners):
            listener(event)
        return copy.deepcopy(obj)

    def _default(self, res: ResourceType, obj: Obj, old: Obj | None) -> None:
        if res.plural == "namespaces":
            name = obj["metadata"]["name"]
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
        elif res.plural == "services":
            self._default_service(obj, old)

    def _default_service(self, obj: Obj, old: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if spec["type"] != "ExternalName":
                    port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            old_ip = (old or {}).get("spec", {}).get("clusterIP")
            ip = (
                spec.get("clusterIP")
                or old_ip
                or f"10.96.{next(self._ips) // 250}.{next(self._ips) % 250 + 1}"
            )
            spec["clusterIP"] = ip
            spec.setdefault("clusterIPs", [ip])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("sessionAffinity", "None")
        obj.setdefault("status", {"loadBalancer": {}})


def invalid_patch(message: str) -> ApiError:
    return ApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {message}')


def apply_patch(res: ResourceType, target: Obj, content_type: str, patch: Any) -> Obj:
    if content_type == "application/json-patch+json":
        return json_patch(target, patch)
    if content_type == "application/strategic-merge-patch+json":
        if res.custom:
            message = (
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, application/merge-patch+json, "
                f"application/apply-patch+yaml (strategic merge patch is not supported for "
                f"{res.qualified})"
            )
            raise ApiError(415, "UnsupportedMediaType", message)
        if _has_list(patch):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "fake apiserver: strategic merge patch with lists is not implemented; use a "
                "merge patch",
            )
    elif content_type not in ("application/merge-patch+json", "application/apply-patch+yaml"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            f"application/apply-patch+yaml (got {content_type})",
        )
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "the patch must be a JSON object")
    result = merge_patch(target, patch)
    assert isinstance(result, dict)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Obj, ops: Any) -> Obj:
    """RFC 6902 JSON Patch: add, remove, replace, test, move, copy."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc: Any = target
    for op in ops:
        if not isinstance(op, dict) or "path" not in op:
            raise ApiError(422, "Invalid", f"invalid JSON patch operation {op!r}")
        name, path = op.get("op"), _pointer(op["path"])
        if name == "test":
            if _resolve(doc, path) != op.get("value"):
                raise ApiError(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request: "
                    f"testing value {op['path']} failed",
                )
        elif name == "remove":
            doc = _set(doc, path, None, remove=True)
        elif name in ("add", "replace"):
            if name == "replace":
                _resolve(doc, path)
            doc = _set(doc, path, copy.deepcopy(op.get("value")), insert=name == "add")
        elif name in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            value = copy.deepcopy(_resolve(doc, source))
            if name == "move":
                doc = _set(doc, source, None, remove=True)
            doc = _set(doc, path, value, insert=True)
        else:
            raise ApiError(422, "Invalid", f"unknown JSON patch operation {name!r}")
    if not isinstance(doc, dict):
        raise ApiError(422, "Invalid", "the patched document is not an object")
    return doc


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _resolve(doc: Any, path: list[str]) -> Any:
    for part in path:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"the path /{'/'.join(path)} does not exist") from None
    return doc


def _set(doc: Any, path: list[str], value: Any, insert: bool = False, remove: bool = False) -> Any:
    if not path:
        return value
    parent = _resolve(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if remove:
            parent.pop(index)
        elif insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        if remove:
            if last not in parent:
                raise ApiError(422, "Invalid", f"the path /{'/'.join(path)} does not exist")
            del parent[last]
        else:
            parent[last] = value
    else:
        raise ApiError(422, "Invalid", f"the path /{'/'.join(path)} does not exist")
    return doc


def _has_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_has_list(v) for v in value.values())


def _spec(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- list helpers


def encode_continue(rv: int, last_key: str) -> str:
    """A continue token shaped like the real one: base64 of {"v","rv","start"}."""
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(
            400,
            "BadRequest",
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)",
        ) from None


def object_path_key(obj: Mapping[str, Any]) -> str:
    ns, name = _key(obj)
    return f"{ns}/{name}" if ns else name
