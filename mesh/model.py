"""The data model shared by every part of the agent.

What a cluster exports, in the terms of the Multi-Cluster Services API (KEP-1645):

- a ``ServiceKey`` (namespace, name) names a service across the clusterset (namespace
  sameness: the same key in two clusters is the same service);
- an ``ExportedService`` is one cluster's contribution to it: its type (ClusterSetIP or
  Headless), its ports, its endpoints (from the EndpointSlices) and when it was exported
  (the ServiceExport's creation time, which orders conflicting exports);
- a ``ClusterState`` is everything one cluster exports, with the namespaces it has, stamped
  with ``(generation, version)``. Its origin, an agent replica of that cluster, is the only
  writer of it: it bumps ``version`` on every change, and starts a new, larger ``generation``
  when it restarts, so a receiver keeps whichever copy has the larger pair. Replicas of one
  cluster each publish their own state (``replica`` tells them apart).

A cluster state also carries what its agents announce about the cluster itself: a ``Drain``
(the cluster takes no traffic; among a cluster's replicas the decision made last wins) and
the DNS and admin addresses the publishing replica advertises (``meshd drill`` reaches every
member through them).

Every value here is immutable (all but ``ClusterState`` hashable too), so states can be
shared between the catalog, the routing policy and the DNS answer builder without copies or
locks.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# The endpoints' own module (``mesh.endpoints``), re-exported: every part takes them from here.
from mesh.endpoints import (
    Endpoint,
    Endpoints,
    PackedEndpoints,
    pack_endpoints,
    pack_quads,
    plain_endpoint,
)

__all__ = [
    "Endpoint",
    "Endpoints",
    "PackedEndpoints",
    "pack_endpoints",
    "pack_quads",
    "plain_endpoint",
]

# RFC 1123 label, as Kubernetes validates names of namespaces, services and cluster ids.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


ANNOTATION_PREFIX = "meshd.io/"
MAX_ANNOTATIONS = 16  # meshd.io/ annotations kept per export; the policy knows 8
MAX_ANNOTATION_BYTES = 1024  # a value longer than this is not a routing setting


def is_dns_label(value: str) -> bool:
    """True when ``value`` is an RFC 1123 label (lower case, 1-63 chars)."""
    return bool(_DNS_LABEL.fullmatch(value))  # (match: "$" would take "web\n" too)


ClusterId = str

# How large a clusterset may be, as one agent sees it. Every table that a peer's message can
# grow (SWIM's members, the ring's peers, the record store's origins) holds at most these,
# and a message is taken up to them, the rest dropped and counted: without bounds, one
# message naming thousands of made-up agents (any peer can send one without TLS; with TLS a
# cluster can still sign made-up replicas of its own) would grow every table, and the work
# of every probe and exchange round, without end.
#
# Agents of one cluster: its replicas, and for a day the dead ones that rollouts leave
# behind (new pod names); the ones down the longest make room.
MAX_AGENTS_PER_CLUSTER = 64
# Clusters: two and a half times the largest clusterset measured (200 clusters,
# bench/RESULTS.md); past it, a new cluster is refused until one that is down is forgotten.
MAX_CLUSTERS = 512
# Agents in all: four replicas for each of 512 clusters. A full SWIM table is then a
# push-pull of about 350 KB signed (well under gRPC's message limit), and a cycle of
# probes takes 17 minutes at one probe per 0.5 s, which only bounds when a made-up member
# is found dead, not how fast a real one is (every member probes).
MAX_AGENTS = 2048


class ServiceType(enum.Enum):
    """How the clusterset answers for a service (KEP-1645 ServiceImport types)."""

    CLUSTER_SET_IP = "ClusterSetIP"
    HEADLESS = "Headless"


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, order=True)
class ServicePort:
    """A service port. ``name`` is empty for an unnamed port; ``protocol`` is TCP, UDP or SCTP."""

    name: str
    protocol: str
    port: int


_new_object = object.__new__
_set_namespace = ServiceKey.__dict__["namespace"].__set__
_set_name = ServiceKey.__dict__["name"].__set__


def new_key(namespace: str, name: str) -> ServiceKey:
    """``ServiceKey(namespace, name)``, made faster (as ``new_service``)."""
    made: ServiceKey = _new_object(ServiceKey)
    _set_namespace(made, namespace)
    _set_name(made, name)
    return made


@dataclass(frozen=True, slots=True)
class ExportedService:
    key: ServiceKey
    type: ServiceType
    ports: tuple[ServicePort, ...] = ()
    endpoints: Endpoints = ()
    # When the ServiceExport was created (its metadata.creationTimestamp, wall-clock epoch
    # seconds; 0 = unknown, as from a manifest). The MCS conflict rule: the oldest export wins.
    exported_at: float = 0.0
    # The ServiceExport's routing annotations (``meshd.io/...``), sorted by key, as written:
    # they travel as text and are read by the routing policy (``mesh.routing.annotations``),
    # so an agent that does not know an annotation still carries it unchanged.
    annotations: tuple[tuple[str, str], ...] = ()
    # What its pods listen on: the ports of its EndpointSlices (the Service's targetPort
    # resolved), one per (name, protocol); empty when no slice says (or an older agent).
    endpoint_ports: tuple[ServicePort, ...] = ()
    # The Service's ClusterIP(s) in its cluster (spec.clusterIPs, at most one per family),
    # answered in answer mode cluster-ip; empty for a headless service (or an older agent).
    cluster_ips: tuple[str, ...] = ()
    # The Service's session affinity: "ClientIP" or "" (None), and the ClientIP timeout in
    # seconds (0 when not ClientIP); the ServiceImport and the derived Service carry them.
    session_affinity: str = ""
    affinity_timeout_s: int = 0

    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)

    def endpoint_port(self, port: ServicePort) -> int | None:
        """The number the endpoints listen on for the Service port ``port`` (matched by
        name and protocol, as kube-proxy matches them), None when unknown."""
        for held in self.endpoint_ports:
            if held.name == port.name and held.protocol == port.protocol:
                return held.port
        return None


(
    _set_key,
    _set_type,
    _set_ports,
    _set_endpoints,
    _set_exported_at,
    _set_annotations,
    _set_endpoint_ports,
    _set_cluster_ips,
    _set_session_affinity,
    _set_affinity_timeout_s,
) = [getattr(ExportedService, name).__set__ for name in ExportedService.__dataclass_fields__]


def new_service(
    key: ServiceKey,
    type: ServiceType,
    ports: tuple[ServicePort, ...],
    endpoints: Endpoints,
    exported_at: float,
    annotations: tuple[tuple[str, str], ...],
    endpoint_ports: tuple[ServicePort, ...],
    cluster_ips: tuple[str, ...],
    session_affinity: str,
    affinity_timeout_s: int,
) -> ExportedService:
    """``ExportedService(...)`` with every field given, made about twice as fast: a
    catch-up decodes tens of thousands, and a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``; this sets each slot through its own setter."""
    made: ExportedService = _new_object(ExportedService)
    _set_key(made, key)
    _set_type(made, type)
    _set_ports(made, ports)
    _set_endpoints(made, endpoints)
    _set_exported_at(made, exported_at)
    _set_annotations(made, annotations)
    _set_endpoint_ports(made, endpoint_ports)
    _set_cluster_ips(made, cluster_ips)
    _set_session_affinity(made, session_affinity)
    _set_affinity_timeout_s(made, affinity_timeout_s)
    return made


MAX_DRAIN_REASON = 256  # characters of a drain's reason kept (longer ones are cut)


@dataclass(frozen=True, slots=True)
class Drain:
    """Whether a cluster takes traffic, as its agents announce it (``meshd drain``).

    ``at`` is when the operator drained or undrained it (wall-clock epoch seconds; 0: never).
    Replicas of a cluster may disagree for a moment; the decision with the latest ``at``
    stands (``newest``), so an undrain sent to one replica overrides a drain sent to another.
    """

    drained: bool = False
    reason: str = ""
    at: float = 0.0

    @staticmethod
    def newest(drains: Iterable[Drain]) -> Drain:
        """The decision made last (ties: drained wins, the safe side); ``NOT_DRAINED`` for none."""
        return max(drains, key=lambda d: (d.at, d.drained, d.reason), default=NOT_DRAINED)


NOT_DRAINED = Drain()


def _frozen_services(
    services: Mapping[ServiceKey, ExportedService],
) -> Mapping[ServiceKey, ExportedService]:
    return MappingProxyType(dict(services))


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Everything one cluster exports. Only the origin cluster creates new versions."""

    cluster_id: ClusterId
    generation: int
    version: int
    region: str = ""
    zone: str = ""
    namespaces: frozenset[str] = frozenset()
    services: Mapping[ServiceKey, ExportedService] = field(
        default_factory=lambda: MappingProxyType({})
    )
    replica: str = ""  # the agent replica that publishes this copy ("" for a lone agent)
    drain: Drain = NOT_DRAINED  # as this replica announces it
    dns_address: str = ""  # HOST:PORT this replica answers DNS at ("": not announced)
    admin_address: str = ""  # HOST:PORT of this replica's admin server ("": none)

    def __post_init__(self) -> None:
        if not isinstance(self.services, MappingProxyType):
            object.__setattr__(self, "services", _frozen_services(self.services))

    @property
    def origin(self) -> tuple[ClusterId, str]:
        """Who publishes this state: (cluster, replica). Each origin has its own stamps."""
        return (self.cluster_id, self.replica)

    @property
    def stamp(self) -> tuple[int, int]:
        """Order of copies of one origin's state: the larger stamp is the newer copy."""
        return (self.generation, self.version)

    @property
    def announced(self) -> tuple[Drain, str, str]:
        """What the replica announces about itself: its drain and its addresses."""
        return (self.drain, self.dns_address, self.admin_address)

    def same_content(self, other: ClusterState) -> bool:
        """True when ``other`` exports the same things (stamps aside)."""
        return (
            self.region == other.region
            and self.zone == other.zone
            and self.namespaces == other.namespaces
            and self.announced == other.announced
            and dict(self.services) == dict(other.services)
        )


@dataclass(frozen=True, slots=True)
class LocalExports:
    """What a source reports about its own cluster: no stamps, the agent adds those."""

    namespaces: frozenset[str]
    services: Mapping[ServiceKey, ExportedService]
