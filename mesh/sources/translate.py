"""Pure translation of Kubernetes manifests into what this cluster exports (MCS API, KEP-1645).

No IO and no clock: text in, objects and problems out; objects in, ``LocalExports`` and
problems out. The manifests adapter (``mesh.sources.manifests``) owns the files and calls
this; any other source that has Kubernetes objects as dicts can call ``translate`` too.

Two steps:

1. ``parse_documents`` (in ``mesh.sources.documents``, re-exported here) turns the text of
   one file into Kubernetes objects, with a problem per bad document.
2. ``translate`` reads the objects of every file together, as the API server would hold them:
   ``Namespace`` (v1), ``Service`` (v1), ``ServiceExport`` (multicluster.x-k8s.io/v1beta1,
   or v1alpha1) and ``EndpointSlice`` (discovery.k8s.io/v1). Other kinds are ignored. A Service is
   exported when a ServiceExport of the same namespace and name exists; its endpoints come
   from the EndpointSlices labelled ``kubernetes.io/service-name: <service>``, and its
   ``exported_at`` from the ServiceExport's ``metadata.creationTimestamp`` (0 when absent).
   ``translate_exports`` also gives each ServiceExport its verdict (``ExportVerdict``): valid,
   or why not, with the reasons of the MCS API's ``Valid`` condition (``NoService``,
   ``InvalidServiceType`` for ExternalName, ``InvalidService`` for a Service the API server
   would reject).

Invalid input never raises. Whatever the API server would reject is reported as a
``SourceProblem`` (one line naming the file and the object) and skipped at the smallest
sensible grain: a bad endpoint drops that endpoint, a bad Service field drops that Service,
a bad document drops that document. Problems about Services and EndpointSlices that nobody
exports are not reported: they change nothing. The same (kind, namespace, name) in two
places is a problem; the copy from the origin that sorts first wins, so the result does not
depend on the order of the input.

``mesh.sources.incremental.IncrementalTranslation`` gives what ``translate_exports`` gives,
kept file by file so that an edit costs what it touches (the manifests scanner uses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, NamedTuple

from mesh.model import (
    Endpoint,
    ExportedService,
    LocalExports,
    ServiceKey,
    ServicePort,
    is_dns_label,
    pack_endpoints,
)
from mesh.sources.documents import (
    ManifestSyntaxError,
    SourceProblem,
    check_documents,
    describe,
    load_stream,
    parse_documents,
)
from mesh.sources.fields import (
    InvalidFieldError,
    cluster_ips,
    created_at,
    endpoint,
    routing_annotations,
    service_ports,
    service_type,
    session_affinity,
    slice_ports,
)
from mesh.sources.identity import (
    API_VERSIONS,
    SERVICE_NAME_LABEL,
    api_group,
    identity_error,
)

__all__ = [
    "API_VERSIONS",
    "SERVICE_NAME_LABEL",
    "ExportVerdict",
    "ManifestSyntaxError",
    "SourceProblem",
    "Translation",
    "check_documents",
    "load_stream",
    "parse_documents",
    "translate",
    "translate_exports",
]


@dataclass(frozen=True)
class ExportVerdict:
    """Whether a ServiceExport exports its Service: ``reason`` as the MCS ``Valid`` condition
    gives it (``Valid``, ``NoService``, ``InvalidServiceType``, ``InvalidService``)."""

    valid: bool
    reason: str
    message: str


class Translation(NamedTuple):
    """What ``translate_exports`` returns."""

    exports: LocalExports
    problems: list[SourceProblem]
    verdicts: dict[ServiceKey, ExportVerdict]  # every ServiceExport with a valid identity


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class _Object:
    origin: str
    kind: str
    namespace: str  # "" for the cluster-scoped Namespace kind
    name: str
    body: Mapping[str, Any]

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def problem(self, reason: str) -> SourceProblem:
        return SourceProblem(self.origin, f"{self.ref}: {reason}")


# A service's outcome: its export (None: not exported), its verdict, the problems found.
_Outcome = tuple[ExportedService | None, ExportVerdict, tuple[SourceProblem, ...]]


def translate(
    objects: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[LocalExports, list[SourceProblem]]:
    """What the objects export, given as ``(origin, object)``; deterministic in any order."""
    exports, problems, _ = translate_exports(objects)
    return exports, problems


def translate_exports(objects: Iterable[tuple[str, Mapping[str, Any]]]) -> Translation:
    """``translate``, plus the verdict on every ServiceExport, by its key."""
    problems: list[SourceProblem] = []
    namespaces = {"default"}
    index: dict[tuple[str, str, str], _Object] = {}
    for origin, body in sorted(objects, key=lambda item: item[0]):
        obj = _identify(origin, body, namespaces, problems)
        if obj is None:
            continue
        kept = index.setdefault((obj.kind, obj.namespace, obj.name), obj)
        if kept is not obj:
            problems.append(obj.problem(f"also defined in {kept.origin}; this copy is ignored"))
        elif obj.kind == "Namespace":
            namespaces.add(obj.name)
    verdicts: dict[ServiceKey, ExportVerdict] = {}
    services = _export(list(index.values()), problems, verdicts)
    exports = LocalExports(namespaces=frozenset(namespaces), services=MappingProxyType(services))
    return Translation(exports, sorted(problems), verdicts)


def _identify(
    origin: str, body: Any, namespaces: set[str], problems: list[SourceProblem]
) -> _Object | None:
    """The object of a recognised kind with a valid identity, else None (maybe a problem)."""
    if not isinstance(body, Mapping):
        problems.append(SourceProblem(origin, f"expected an object, got {describe(body)}"))
        return None
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and is_dns_label(namespace):
        namespaces.add(namespace)  # the API holds no object in a namespace that is missing
    kind, name = body.get("kind"), metadata.get("name")
    if not isinstance(kind, str) or kind not in API_VERSIONS:
        return None
    if api_group(body.get("apiVersion")) != api_group(API_VERSIONS[kind]):
        return None  # the same kind name in another API group (a Knative Service, say)
    if kind == "Namespace":
        namespace = ""
    elif namespace in (None, ""):
        namespace = "default"
    shown = name if isinstance(name, str) and name else "<unnamed>"
    obj = _Object(origin, kind, str(namespace), shown, body)
    reason = identity_error(obj.kind, body.get("apiVersion"), namespace, name)
    if reason is not None:
        problems.append(obj.problem(reason))
        return None
    return obj


def _export(
    objects: Sequence[_Object],
    problems: list[SourceProblem],
    verdicts: dict[ServiceKey, ExportVerdict],
) -> dict[ServiceKey, ExportedService]:
    """The exported services, in key order."""
    services = {(o.namespace, o.name): o for o in objects if o.kind == "Service"}
    exports = {(o.namespace, o.name): o for o in objects if o.kind == "ServiceExport"}
    slices: dict[tuple[str, str], list[_Object]] = {}
    for obj in objects:
        if obj.kind == "EndpointSlice":
            owner = _slice_owner(obj, problems)
            if owner is not None:
                slices.setdefault((obj.namespace, owner), []).append(obj)
    result: dict[ServiceKey, ExportedService] = {}
    for key in sorted(exports):
        service, export = services.get(key), exports[key]
        if service is None:
            problems.append(SourceProblem(export.origin, f"{export.ref} has no Service"))
            message = f"there is no Service {key[0]}/{key[1]} in this cluster"
            verdicts[ServiceKey(*key)] = ExportVerdict(False, "NoService", message)
            continue
        exported, verdict, found = _export_one([service, export, *slices.get(key, [])])
        problems.extend(found)
        verdicts[ServiceKey(*key)] = verdict
        if exported is not None:
            result[exported.key] = exported
    return result


def _export_one(inputs: list[_Object]) -> _Outcome:
    """One exported service from its Service, ServiceExport and slices (``inputs``)."""
    service, export, *slices = inputs
    found: list[SourceProblem] = []
    exported = _service(service, slices, found, created_at(export.body.get("metadata")))
    if exported is None:
        external = isinstance(service.body.get("spec"), Mapping) and (
            service.body["spec"].get("type") == "ExternalName"
        )
        reason = "InvalidServiceType" if external else "InvalidService"
        return None, ExportVerdict(False, reason, found[-1].reason), tuple(found)
    annotations = routing_annotations(export.body.get("metadata"), export.problem, found)
    if annotations:
        exported = replace(exported, annotations=annotations)
    return exported, ExportVerdict(True, "Valid", "the Service is exported"), tuple(found)


def _slice_owner(obj: _Object, problems: list[SourceProblem]) -> str | None:
    metadata = obj.body.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    owner = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
    if isinstance(owner, str) and owner:
        return owner
    problems.append(obj.problem(f"missing label {SERVICE_NAME_LABEL} (the name of its Service)"))
    return None


def _service(
    obj: _Object, slices: list[_Object], problems: list[SourceProblem], exported_at: float
) -> ExportedService | None:
    """The exported form of a Service with its slices, or None (and a problem)."""
    spec = obj.body.get("spec")
    try:
        if spec is None:
            spec = {}
        elif not isinstance(spec, Mapping):
            raise InvalidFieldError(f"spec must be a mapping, got {describe(spec)}")
        kind = service_type(spec)
        addresses = cluster_ips(spec)
        affinity = session_affinity(spec)
        ports = service_ports(spec.get("ports"))
        publish = spec.get("publishNotReadyAddresses")
        if publish is not None and not isinstance(publish, bool):
            raise InvalidFieldError(
                f"spec.publishNotReadyAddresses must be true or false, got {publish!r}"
            )
    except InvalidFieldError as exc:
        problems.append(obj.problem(str(exc)))
        return None
    endpoints: list[Endpoint] = []
    # (name, protocol) -> (ready endpoints of the slice, its port): slices may disagree
    # mid-rollout (a changed targetPort); the port most ready endpoints listen on wins.
    listening: dict[tuple[str, str], tuple[int, ServicePort]] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.name):
        found = _slice_endpoints(endpoint_slice, bool(publish), problems)
        endpoints.extend(found)
        ready = sum(1 for e in found if e.ready)
        for port in _ports_of(endpoint_slice, problems):
            held = listening.get((port.name, port.protocol))
            if held is None or ready > held[0]:
                listening[(port.name, port.protocol)] = (ready, port)
    key = ServiceKey(obj.namespace, obj.name)
    endpoint_ports = tuple(port for _, port in sorted(listening.values(), key=lambda v: v[1]))
    return ExportedService(
        key,
        kind,
        ports,
        pack_endpoints(endpoints),  # packed when all plain IPv4 (as a peer's decoder holds them)
        exported_at,
        endpoint_ports=endpoint_ports,
        cluster_ips=addresses,
        session_affinity=affinity[0],
        affinity_timeout_s=affinity[1],
    )


def _ports_of(obj: _Object, problems: list[SourceProblem]) -> tuple[ServicePort, ...]:
    try:
        return slice_ports(obj.body.get("ports"))
    except InvalidFieldError as exc:
        problems.append(obj.problem(f"{exc}; its ports are ignored"))
        return ()


def _slice_endpoints(
    obj: _Object, publish_not_ready: bool, problems: list[SourceProblem]
) -> list[Endpoint]:
    """The valid endpoints of one slice, in order; FQDN slices have none."""
    address_type = obj.body.get("addressType")
    if address_type == "FQDN":
        return []
    if address_type not in ("IPv4", "IPv6"):
        problems.append(
            obj.problem(f"addressType must be IPv4, IPv6 or FQDN, got {address_type!r}")
        )
        return []
    raw = obj.body.get("endpoints")
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(obj.problem(f"endpoints must be a list, got {describe(raw)}"))
        return []
    version = 4 if address_type == "IPv4" else 6
    endpoints = []
    for position, item in enumerate(raw):
        try:
            endpoints.append(endpoint(f"endpoints[{position}]", item, version, publish_not_ready))
        except InvalidFieldError as exc:
            problems.append(obj.problem(str(exc)))
    return endpoints
