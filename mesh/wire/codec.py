"""Translation between the model and the gossip protocol's protobuf messages (v1).

The pieces the ring sends: one service (the body of a service record, framed and sealed by
``mesh.wire.record_codec``) and a digest. Everything decoded here comes from a peer and is
untrusted: names must be RFC 1123 labels, addresses must parse, ports must be in range, and
a service that breaks any rule is rejected whole with a ``CodecError`` naming the field, so
the caller (``ChunkOpener``) can drop and count the chunk that carried it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from mesh.address import ip_version, valid_host_port
from mesh.model import (
    ANNOTATION_PREFIX,
    MAX_ANNOTATION_BYTES,
    MAX_ANNOTATIONS,
    MAX_DRAIN_REASON,
    ClusterState,
    Drain,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
    is_dns_label,
)
from mesh.ring.catalog import Digest
from mesh.ring.record_plan import HEAD_HASH_BYTES
from mesh.ring.records import ClusterInfo
from mesh.wire.v1 import gossip_pb2 as pb

PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
MAX_AFFINITY_TIMEOUT_S = 86400  # Kubernetes' limit on sessionAffinityConfig.clientIP
_TYPE_TO_PB = {ServiceType.CLUSTER_SET_IP: pb.CLUSTER_SET_IP, ServiceType.HEADLESS: pb.HEADLESS}
_TYPE_FROM_PB = {v: k for k, v in _TYPE_TO_PB.items()}


class CodecError(ValueError):
    """A peer sent a message that breaks the protocol's rules."""


def service_to_pb(svc: ExportedService) -> pb.Service:
    return pb.Service(
        namespace=svc.key.namespace,
        name=svc.key.name,
        type=_TYPE_TO_PB[svc.type],
        ports=_ports_to_pb(svc.ports),
        endpoints=[
            pb.Endpoint(
                addresses=list(e.addresses),
                ready=e.ready,
                hostname=e.hostname or "",
                zone=e.zone or "",
            )
            for e in svc.endpoints
        ],
        exported_at=svc.exported_at,
        annotations=[pb.Annotation(key=k, value=v) for k, v in svc.annotations],
        endpoint_ports=_ports_to_pb(svc.endpoint_ports),
        cluster_ips=list(svc.cluster_ips),
        session_affinity=svc.session_affinity,
        affinity_timeout_seconds=svc.affinity_timeout_s,
    )


def _ports_to_pb(ports: Iterable[ServicePort]) -> list[pb.Port]:
    return [pb.Port(name=p.name, protocol=p.protocol, port=p.port) for p in ports]


def label(value: str, what: str) -> str:
    """``value`` when it is an RFC 1123 label, else ``CodecError``."""
    if not is_dns_label(value):
        raise CodecError(f"{what} {value!r} is not an RFC 1123 label")
    return value


_T = TypeVar("_T")
_SHARED: dict[object, object] = {}
MAX_SHARED = 65536


def _shared(value: _T) -> _T:
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


class _Where:
    """Where in a peer's message a problem is, as text only when it is reported: a
    catch-up decodes hundreds of thousands of services that have none."""

    __slots__ = ("cluster_id", "key")

    def __init__(self, cluster_id: str, key: ServiceKey) -> None:
        self.cluster_id, self.key = cluster_id, key

    def __str__(self) -> str:
        return f"cluster {self.cluster_id} service {self.key}"


def _endpoint(msg: pb.Endpoint, where: _Where) -> Endpoint:
    # Each field read once, and repeated fields sliced (a list in one C call; iterating
    # them is several times slower): this runs once per endpoint of a catch-up.
    addresses = tuple(msg.addresses[:])
    if not addresses:
        raise CodecError(f"{where}: endpoint without addresses")
    for address in addresses:
        try:
            ip_version(address)
        except ValueError:
            raise CodecError(f"{where}: bad address {address!r}") from None
    hostname = msg.hostname
    if hostname:
        label(hostname, f"{where}: hostname")
    zone = msg.zone
    return Endpoint(addresses, msg.ready, hostname or None, _shared(zone) if zone else None)


def service_from_pb(msg: pb.Service, cluster_id: str) -> ExportedService:
    namespace = _shared(label(msg.namespace, "namespace"))
    key = ServiceKey(namespace, label(msg.name, "service name"))
    where = _Where(cluster_id, key)
    if msg.type not in _TYPE_FROM_PB:
        raise CodecError(f"{where}: unknown service type {msg.type}")
    if msg.session_affinity not in ("", "ClientIP") or (
        msg.affinity_timeout_seconds > MAX_AFFINITY_TIMEOUT_S
        or bool(msg.session_affinity) != bool(msg.affinity_timeout_seconds)
    ):
        raise CodecError(
            f"{where}: bad session affinity {msg.session_affinity!r} "
            f"({msg.affinity_timeout_seconds} s)"
        )
    if not (math.isfinite(msg.exported_at) and msg.exported_at >= 0):
        raise CodecError(f"{where}: bad exported_at {msg.exported_at!r}")
    return ExportedService(
        key=key,
        type=_TYPE_FROM_PB[msg.type],
        ports=_ports_from_pb(msg.ports, where),
        endpoints=tuple([_endpoint(e, where) for e in msg.endpoints[:]]),
        # 0.0 (unknown, as from a manifest) as the one shared float, not a new one each
        exported_at=msg.exported_at or 0.0,
        annotations=_annotations(msg.annotations),
        endpoint_ports=_ports_from_pb(msg.endpoint_ports, where),
        cluster_ips=_cluster_ips(msg.cluster_ips, where),
        session_affinity=_shared(msg.session_affinity),
        affinity_timeout_s=msg.affinity_timeout_seconds,
    )


def _cluster_ips(items: Iterable[str], where: _Where) -> tuple[str, ...]:
    """At most one address per family, as Kubernetes allows (spec.clusterIPs)."""
    families = []
    for address in items:
        try:
            families.append(ip_version(address))
        except ValueError:
            raise CodecError(f"{where}: bad cluster IP {address!r}") from None
    if len(set(families)) != len(families):
        raise CodecError(f"{where}: two cluster IPs of one family")
    return tuple(items)


_PORTS: dict[tuple[str, str, int], ServicePort] = {}  # valid ports seen, for reuse


def _ports_from_pb(items: Iterable[pb.Port], where: _Where) -> tuple[ServicePort, ...]:
    """Ports, each checked once per distinct (name, protocol, number): they recur across
    services, and a checked one is reused as is (bounded like ``_shared``)."""
    ports = []
    for p in items:
        seen = (p.name, p.protocol, p.port)
        port = _PORTS.get(seen)
        if port is None:
            port = _port(*seen, where)
            if len(_PORTS) >= MAX_SHARED:
                _PORTS.clear()
            _PORTS[seen] = port
        ports.append(port)
    return _shared(tuple(ports))


def _port(name: str, protocol: str, number: int, where: _Where) -> ServicePort:
    if protocol not in PROTOCOLS or not 0 < number < 65536:
        raise CodecError(f"{where}: bad port {protocol}/{number}")
    if name:
        label(name, f"{where}: port name")
    return ServicePort(_shared(name), _shared(protocol), number)


def _annotations(items: Iterable[pb.Annotation]) -> tuple[tuple[str, str], ...]:
    """The routing annotations a record carries, as the source keeps them: ``meshd.io/``
    keys, short values, at most ``MAX_ANNOTATIONS``. Anything else is left out (not an
    error: a newer agent may send more, and a bad one must not cost the whole service)."""
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
    return _shared(tuple(sorted(kept.items())))


def info_of(state: ClusterState) -> ClusterInfo:
    """The cluster record of ``state``: its locality, namespaces, drain and addresses."""
    return ClusterInfo(
        state.region,
        state.zone,
        state.namespaces,
        state.drain,
        state.dns_address,
        state.admin_address,
    )


def info_to_pb(info: ClusterInfo) -> pb.ClusterInfo:
    return pb.ClusterInfo(
        region=info.region,
        zone=info.zone,
        namespaces=sorted(info.namespaces),
        drained=info.drain.drained,
        drain_reason=info.drain.reason,
        drain_at=info.drain.at,
        dns_address=info.dns_address,
        admin_address=info.admin_address,
    )


def info_from_pb(msg: pb.ClusterInfo) -> ClusterInfo:
    """A peer's cluster record. Namespaces must be labels (``CodecError`` otherwise); the
    drain and the addresses are announcements, read leniently so that a bad one never costs
    the cluster its services: a drain time that is not a finite positive number counts as
    never, a reason is cut to ``MAX_DRAIN_REASON`` printable characters, and an address that
    is not HOST:PORT is left out."""
    namespaces = frozenset(label(n, "namespace") for n in msg.namespaces)
    at = msg.drain_at if math.isfinite(msg.drain_at) and msg.drain_at > 0 else 0.0
    reason = "".join(c if c.isprintable() else " " for c in msg.drain_reason[:MAX_DRAIN_REASON])
    return ClusterInfo(
        msg.region,
        msg.zone,
        namespaces,
        Drain(msg.drained, reason, at),
        msg.dns_address if valid_host_port(msg.dns_address) else "",
        msg.admin_address if valid_host_port(msg.admin_address) else "",
    )


def replica_of(value: str) -> str:
    """A replica id: empty or an RFC 1123 label, else ``CodecError``."""
    if value and not is_dns_label(value):
        raise CodecError(f"replica {value!r} is not an RFC 1123 label")
    return value


def digest_to_pb(d: Digest) -> pb.Digest:
    return pb.Digest(
        cluster_id=d.cluster_id,
        generation=d.generation,
        version=d.version,
        replica=d.replica,
        partial=d.partial,
        checked=d.checked,
        target=d.target,
        head_hash=d.head_hash,
    )


def digest_from_pb(msg: pb.Digest) -> Digest:
    cluster_id = label(msg.cluster_id, "cluster id")
    replica = replica_of(msg.replica)
    if len(msg.head_hash) not in (0, HEAD_HASH_BYTES):
        raise CodecError(f"digest of {cluster_id}: a head hash of {len(msg.head_hash)} bytes")
    return Digest(
        cluster_id,
        msg.generation,
        msg.version,
        replica,
        msg.partial,
        msg.checked,
        msg.target,
        msg.head_hash,
    )
