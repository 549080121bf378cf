"""Translation between the model and the gossip protocol's protobuf messages (v1).

The pieces the ring sends: one service (the body of a service record, framed and sealed by
``mesh.wire.record_codec``) and a digest. Everything decoded here comes from a peer and is
untrusted: names must be RFC 1123 labels, addresses must parse, ports must be in range, and
a service that breaks any rule is rejected whole with a ``CodecError`` naming the field, so
the caller (``ChunkOpener``) can drop and count the chunk that carried it. Decoding a
service is the hot path of a catch-up and lives in ``mesh.wire.service_decode``, with the
rules it shares with this module (labels, protocols, shared values).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mesh.address import valid_host_port
from mesh.model import (
    MAX_DRAIN_REASON,
    ClusterState,
    Drain,
    ExportedService,
    ServicePort,
    is_dns_label,
)
from mesh.ring.catalog import Digest
from mesh.ring.record_plan import HEAD_HASH_BYTES
from mesh.ring.records import ClusterInfo
from mesh.wire.service_decode import (
    MAX_AFFINITY_TIMEOUT_S,
    MAX_SHARED,
    PROTOCOLS,
    TYPE_TO_PB,
    CodecError,
    label,
    service_from_pb,
    shared,
)
from mesh.wire.v1 import gossip_pb2 as pb

__all__ = [
    "MAX_AFFINITY_TIMEOUT_S",
    "MAX_SHARED",
    "PROTOCOLS",
    "CodecError",
    "digest_from_pb",
    "digest_to_pb",
    "info_from_pb",
    "info_of",
    "info_to_pb",
    "label",
    "replica_of",
    "service_from_pb",
    "service_to_pb",
    "shared",
]


def service_to_pb(svc: ExportedService) -> pb.Service:
    return pb.Service(
        namespace=svc.key.namespace,
        name=svc.key.name,
        type=TYPE_TO_PB[svc.type],
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
