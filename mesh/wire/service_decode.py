"""Decoding a peer's ``Service`` message into the model, at catch-up speed.

A newcomer decodes every service of the clusterset (a hundred thousand endpoints in tens of
thousands of services). The codec's rules are kept here (``mesh.wire.codec`` takes them
from this module): names must be RFC 1123 labels, addresses must parse, ports must be in
range, and a service that breaks any rule is rejected whole with a ``CodecError`` naming
the field. This module applies them with as few calls into protobuf as it can, because
those calls are what decoding costs:

- each message's fields are read with one ``ListFields()`` (the fields that are set, with
  their values, in field-number order) instead of one attribute read per field (each
  ``msg.field`` looks the field up by name and, for a repeated or message field, makes a
  new wrapper: several times the cost);
- an endpoint that is ready, with one address and no hostname or zone (nearly all of them)
  is recognised from that list alone and made without ``Endpoint.__new__``'s general path
  (``plain_endpoint``); every address is checked as before (``ip_version``); when every
  endpoint of the service is such, with a canonical dotted quad, they are held packed
  (``PackedEndpoints``, equal to the tuple);
- ports recur across services: a list of them is checked once per distinct set of fields
  and the same tuple of ``ServicePort`` reused (a bounded table, like ``shared`` values).

What comes out is equal, attribute by attribute, to what the decoder it replaced made
(``tests/unit/test_record_fast.py`` checks both on seeded random services). The common
record is read faster still, from its bytes, by ``mesh.wire.record_fast``; this is the
path for every other record, and the reference for that one.

Pure: a message in, a model value or a ``CodecError`` out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from mesh.address import ip_version, is_dotted_quad
from mesh.model import (
    ANNOTATION_PREFIX,
    MAX_ANNOTATION_BYTES,
    MAX_ANNOTATIONS,
    Endpoint,
    Endpoints,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
    is_dns_label,
    new_service,
    pack_quads,
    plain_endpoint,
)
from mesh.wire.v1 import gossip_pb2 as pb

PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
MAX_AFFINITY_TIMEOUT_S = 86400  # Kubernetes' limit on sessionAffinityConfig.clientIP
TYPE_TO_PB = {ServiceType.CLUSTER_SET_IP: pb.CLUSTER_SET_IP, ServiceType.HEADLESS: pb.HEADLESS}
_TYPE_FROM_PB = {v: k for k, v in TYPE_TO_PB.items()}


class CodecError(ValueError):
    """A peer sent a message that breaks the protocol's rules."""


def label(value: str, what: str) -> str:
    """``value`` when it is an RFC 1123 label, else ``CodecError``."""
    if not is_dns_label(value):
        raise CodecError(f"{what} {value!r} is not an RFC 1123 label")
    return value


_T = TypeVar("_T")
_SHARED: dict[object, object] = {}
MAX_SHARED = 65536


def shared(value: _T) -> _T:
    """One object for equal values that recur across services (namespaces, zones, port
    lists): a large clusterset holds hundreds of thousands of copies otherwise. Bounded:
    past ``MAX_SHARED`` distinct values the table starts afresh."""
    held = _SHARED.get(value)
    if held is not None:
        return held  # type: ignore[return-value]
    if len(_SHARED) >= MAX_SHARED:
        _SHARED.clear()
    _SHARED[value] = value
    return value


_SERVICE = pb.Service.DESCRIPTOR.fields_by_name
_ENDPOINT = pb.Endpoint.DESCRIPTOR.fields_by_name
_PORT = pb.Port.DESCRIPTOR.fields_by_name
_ADDRESSES, _READY = _ENDPOINT["addresses"], _ENDPOINT["ready"]
_HOSTNAME, _ZONE = _ENDPOINT["hostname"], _ENDPOINT["zone"]

# A service's fields by descriptor: the name ``ExportedService`` gives each (the fields it
# reads as they come; the others are turned by ``_decode``).
_SERVICE_NAMES: dict[Any, str] = {_SERVICE[n]: n for n in _SERVICE}

# Valid lists of ports seen, by their fields (each port's set fields and values).
_PORTS: dict[tuple[object, ...], tuple[ServicePort, ...]] = {}


def service_from_pb(msg: pb.Service, cluster_id: str) -> ExportedService:
    """The service ``msg`` describes (``CodecError`` if it breaks a rule)."""
    got: dict[str, Any] = {_SERVICE_NAMES[fd]: value for fd, value in msg.ListFields()}
    namespace = shared(label(got.get("namespace", ""), "namespace"))
    key = ServiceKey(namespace, label(got.get("name", ""), "service name"))
    where = _Where(cluster_id, key)
    kind = _TYPE_FROM_PB.get(got.get("type", 0))
    if kind is None:
        raise CodecError(f"{where}: unknown service type {got.get('type', 0)}")
    affinity = got.get("session_affinity", "")
    timeout = got.get("affinity_timeout_seconds", 0)
    if affinity not in ("", "ClientIP") or (
        timeout > MAX_AFFINITY_TIMEOUT_S or bool(affinity) != bool(timeout)
    ):
        raise CodecError(f"{where}: bad session affinity {affinity!r} ({timeout} s)")
    exported_at = got.get("exported_at", 0.0)
    if not (math.isfinite(exported_at) and exported_at >= 0):
        raise CodecError(f"{where}: bad exported_at {exported_at!r}")
    return new_service(
        key,
        kind,
        _ports(got.get("ports", ()), where),
        _endpoints(got.get("endpoints", ()), where),
        # 0.0 (unknown, as from a manifest) as the one shared float, not a new one each
        exported_at or 0.0,
        _annotations(got.get("annotations", ())),
        _ports(got.get("endpoint_ports", ()), where),
        _cluster_ips(got.get("cluster_ips", ()), where),
        shared(affinity),
        timeout,
    )


class _Where:
    """Where in a peer's message a problem is, as text only when it is reported: a
    catch-up decodes hundreds of thousands of services that have none."""

    __slots__ = ("cluster_id", "key")

    def __init__(self, cluster_id: str, key: ServiceKey) -> None:
        self.cluster_id, self.key = cluster_id, key

    def __str__(self) -> str:
        return f"cluster {self.cluster_id} service {self.key}"


def _endpoints(items: Sequence[pb.Endpoint], where: _Where) -> Endpoints:
    """The endpoints, packed when all are plain IPv4 (``PackedEndpoints``): a plain one is
    held as its address text until the end, so packed ones never become objects."""
    out: list[str | Endpoint] = []
    quad = is_dotted_quad
    for item in items:
        fields = item.ListFields()
        # Plain: exactly the addresses (one of them) and ready (set: True), in that order.
        if len(fields) == 2 and fields[0][0] is _ADDRESSES and fields[1][0] is _READY:
            addresses = fields[0][1]
            if len(addresses) == 1:
                address = addresses[0]
                if quad(address) is None:  # not a dotted quad: the general check
                    _check_address(address, where)
                out.append(address)
                continue
        out.append(_endpoint(fields, where))
    if not out:
        return ()
    if all([type(e) is str for e in out]):
        packed = pack_quads(out)  # type: ignore[arg-type]  # all str, checked above
        if packed is not None:
            return packed
    return tuple([e if isinstance(e, Endpoint) else plain_endpoint(e) for e in out])


def _endpoint(fields: list[tuple[Any, Any]], where: _Where) -> Endpoint:
    got = dict(fields)
    addresses = tuple(got.get(_ADDRESSES, ()))
    if not addresses:
        raise CodecError(f"{where}: endpoint without addresses")
    for address in addresses:
        _check_address(address, where)
    hostname = got.get(_HOSTNAME, "")
    if hostname:
        label(hostname, f"{where}: hostname")
    zone = got.get(_ZONE, "")
    return Endpoint(
        addresses, got.get(_READY, False), hostname or None, shared(zone) if zone else None
    )


def _check_address(address: str, where: _Where) -> None:
    try:
        ip_version(address)
    except ValueError:
        raise CodecError(f"{where}: bad address {address!r}") from None


def _ports(items: Sequence[pb.Port], where: _Where) -> tuple[ServicePort, ...]:
    """Ports, checked once per distinct list of them: they recur across services, and a
    checked list is reused as is (bounded like ``shared``)."""
    if not items:
        return ()
    seen = tuple([tuple(item.ListFields()) for item in items])
    ports = _PORTS.get(seen)
    if ports is None:
        ports = shared(tuple([_port(item, where) for item in items]))
        if len(_PORTS) >= MAX_SHARED:
            _PORTS.clear()
        _PORTS[seen] = ports
    return ports


def port_list(items: Sequence[pb.Port]) -> tuple[ServicePort, ...]:
    """The ports ``items`` (``CodecError`` for a bad one), as ``service_from_pb`` takes them."""
    return shared(tuple([_port(item, "a peer's service") for item in items]))


def _port(item: pb.Port, where: object) -> ServicePort:
    name, protocol, number = item.name, item.protocol, item.port
    if protocol not in PROTOCOLS or not 0 < number < 65536:
        raise CodecError(f"{where}: bad port {protocol}/{number}")
    if name:
        label(name, f"{where}: port name")
    return ServicePort(shared(name), shared(protocol), number)


def _cluster_ips(items: Sequence[str], where: _Where) -> tuple[str, ...]:
    """At most one address per family, as Kubernetes allows (spec.clusterIPs)."""
    if not items:
        return ()
    families = []
    for address in items:
        try:
            families.append(ip_version(address))
        except ValueError:
            raise CodecError(f"{where}: bad cluster IP {address!r}") from None
    if len(set(families)) != len(families):
        raise CodecError(f"{where}: two cluster IPs of one family")
    return tuple(items)


def _annotations(items: Sequence[pb.Annotation]) -> tuple[tuple[str, str], ...]:
    """The routing annotations a record carries, as the source keeps them: ``meshd.io/``
    keys, short values, at most ``MAX_ANNOTATIONS``. Anything else is left out (not an
    error: a newer agent may send more, and a bad one must not cost the whole service)."""
    if not items:
        return ()
    kept: dict[str, str] = {}
    for item in items:
        key, value = item.key, item.value
        if (
            key.startswith(ANNOTATION_PREFIX)
            and len(key) <= 253
            and len(value.encode()) <= MAX_ANNOTATION_BYTES
            and len(kept) < MAX_ANNOTATIONS
        ):
            kept[key] = value
    return shared(tuple(sorted(kept.items())))
