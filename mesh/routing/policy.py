"""Routing policy: which endpoints the zone answers for each service, in which order.

Called whenever the catalog or cluster health changes; its output feeds the DNS zone
builder. Pure: the catalog's states, this cluster's locality and the set of healthy
clusters in, ``ServiceRecords`` out.

Rules (DESIGN.md "Answers: health, locality, failover", KEP-1645 for the rest):

- namespace sameness: a service is only answered when its namespace exists in this
  cluster; it is answered when at least one cluster exports it;
- only ready endpoints are ever answered;
- clusters this agent considers unhealthy are left out; when no healthy cluster has a ready
  endpoint of a service but an unhealthy one has, the unhealthy clusters' last-known ready
  endpoints are answered instead (fail open: an answer that may work beats none), and the
  service is reported in ``PolicyResult.failed_open``;
- ClusterSetIP services: locality tiers, this cluster first, then clusters of the same
  region, then the rest; the answer comes from the first tier that has ready endpoints,
  interleaved across the tier's clusters so that each gets its share; the zone shows
  ``max_addresses`` of them per family and rotates through all of them;
- headless services: every ready endpoint of every (healthy) cluster, without duplicates;
- type and ports: the clusterset's one view of the service (``mesh.routing.view``: the
  oldest export's type wins, ports are merged with the older definition winning), the same
  view the ServiceImport write-back publishes, so DNS and the MCS API never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from dnsserver.zone import HeadlessEndpoint, ServiceRecords
from mesh.model import ClusterId, ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.routing.view import merge_service

DEFAULT_MAX_ADDRESSES = 8


@dataclass(frozen=True, slots=True)
class Locality:
    cluster_id: ClusterId
    region: str
    zone: str = ""


@dataclass(slots=True)
class PolicyResult:
    records: list[ServiceRecords] = field(default_factory=list)
    failed_open: list[ServiceKey] = field(default_factory=list)


def _tier(locality: Locality, state: ClusterState) -> int:
    if state.cluster_id == locality.cluster_id:
        return 0
    if locality.region and state.region == locality.region:
        return 1
    return 2


def _interleave(columns: list[list[str]]) -> list[str]:
    """Round-robin across clusters, so a cluster with many endpoints cannot crowd out others."""
    out: list[str] = []
    seen: set[str] = set()
    depth = max((len(c) for c in columns), default=0)
    for i in range(depth):
        for column in columns:
            if i < len(column) and column[i] not in seen:
                seen.add(column[i])
                out.append(column[i])
    return out


def _ready_addresses(svc: ExportedService) -> list[str]:
    return [a for e in svc.endpoints if e.ready for a in e.addresses]


def _cluster_set_ip(
    exporters: list[tuple[ClusterState, ExportedService]], locality: Locality
) -> tuple[str, ...]:
    tiers: dict[int, list[list[str]]] = {}
    for state, svc in exporters:
        ready = _ready_addresses(svc)
        if ready:
            tiers.setdefault(_tier(locality, state), []).append(ready)
    for tier in sorted(tiers):
        return tuple(_interleave(tiers[tier]))
    return ()


def _headless(
    exporters: list[tuple[ClusterState, ExportedService]],
) -> tuple[tuple[str, ...], tuple[HeadlessEndpoint, ...]]:
    endpoints: list[HeadlessEndpoint] = []
    addresses: list[str] = []
    seen: set[str] = set()
    for state, svc in exporters:
        for ep in svc.endpoints:
            fresh = _fresh(ep, seen)
            if ep.ready and fresh:
                addresses.extend(fresh)
                endpoints.append(HeadlessEndpoint(state.cluster_id, tuple(fresh), ep.hostname))
    return tuple(addresses), tuple(endpoints)


def _fresh(ep: Endpoint, seen: set[str]) -> list[str]:
    if not ep.ready:
        return []
    fresh = [a for a in ep.addresses if a not in seen]
    seen.update(fresh)
    return fresh


def decide_service(
    key: ServiceKey,
    exporters: list[tuple[ClusterState, ExportedService]],
    locality: Locality,
    healthy: Set[ClusterId],
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
) -> tuple[ServiceRecords, bool]:
    """The records of one service from its exporters (local first, then by cluster id);
    the flag is True when the answer fails open."""
    live = [(st, svc) for st, svc in exporters if st.cluster_id in healthy]
    failed_open = False
    if not any(_ready_addresses(svc) for _, svc in live) and any(
        _ready_addresses(svc) for _, svc in exporters
    ):
        live, failed_open = exporters, True
    view = merge_service(key, [(state.cluster_id, svc) for state, svc in exporters])
    ports = tuple((p.name, p.protocol, p.port) for p in view.ports)
    if view.type is ServiceType.HEADLESS:
        addresses, endpoints = _headless(live)
        return ServiceRecords(
            key.namespace, key.name, True, addresses, ports, endpoints
        ), failed_open
    addresses = _cluster_set_ip(live, locality)
    records = ServiceRecords(key.namespace, key.name, False, addresses, ports, (), max_addresses)
    return records, failed_open


def exporters_of(
    key: ServiceKey, states: Iterable[ClusterState], local_cluster: ClusterId
) -> list[tuple[ClusterState, ExportedService]]:
    """The clusters exporting ``key``, this cluster first, then by cluster id."""
    found = [(s, s.services[key]) for s in states if key in s.services]
    found.sort(key=lambda pair: (pair[0].cluster_id != local_cluster, pair[0].cluster_id))
    return found


def decide(
    states: Iterable[ClusterState],
    locality: Locality,
    local_namespaces: Set[str],
    healthy: Set[ClusterId],
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
) -> PolicyResult:
    """The zone's records for every service exported anywhere in the clusterset."""
    ordered = sorted(states, key=lambda s: (s.cluster_id != locality.cluster_id, s.cluster_id))
    by_key: dict[ServiceKey, list[tuple[ClusterState, ExportedService]]] = {}
    for state in ordered:
        for key, svc in state.services.items():
            if key.namespace in local_namespaces:
                by_key.setdefault(key, []).append((state, svc))
    result = PolicyResult()
    for key in sorted(by_key):
        records, failed_open = decide_service(key, by_key[key], locality, healthy, max_addresses)
        result.records.append(records)
        if failed_open:
            result.failed_open.append(key)
    return result
