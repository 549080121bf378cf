"""Routing policy: which endpoints the zone answers for each service, in which order.

Called whenever the catalog or cluster health changes; its output feeds the DNS zone
builder. Pure: the catalog's states, this cluster's locality and the set of healthy
clusters in, ``ServiceRecords`` out.

Rules (DESIGN.md "Answers: health, locality, failover", KEP-1645 for the rest):

- namespace sameness: a service is only answered when its namespace exists in this
  cluster; it is answered when at least one cluster exports it;
- only ready endpoints are ever answered;
- clusters this agent considers unhealthy are left out; when every cluster that exports a
  service is unhealthy, their last-known ready endpoints are answered instead (fail open),
  and the service is reported in ``PolicyResult.failed_open``;
- ClusterSetIP services: locality tiers, this cluster first, then clusters of the same
  region, then the rest; the answer comes from the first tier that has ready endpoints,
  interleaved across the tier's clusters so that each gets its share, at most
  ``max_addresses`` records per address family;
- headless services: every ready endpoint of every (healthy) cluster, without duplicates;
- type and ports: clusters may disagree; until conflict resolution arrives with the
  Kubernetes issue, the type of the first exporting cluster in (local, then cluster id)
  order wins and ports are the union of all clusters' ports, in that order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from dnsserver.zone import HeadlessEndpoint, ServiceRecords
from mesh.model import ClusterId, ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType

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


def _cap_per_family(addresses: Iterable[str], cap: int) -> tuple[str, ...]:
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4][:cap]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6][:cap]
    return (*v4, *v6)


def _cluster_set_ip(
    exporters: list[tuple[ClusterState, ExportedService]], locality: Locality, cap: int
) -> tuple[str, ...]:
    tiers: dict[int, list[list[str]]] = {}
    for state, svc in exporters:
        ready = _ready_addresses(svc)
        if ready:
            tiers.setdefault(_tier(locality, state), []).append(ready)
    for tier in sorted(tiers):
        return _cap_per_family(_interleave(tiers[tier]), cap)
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


def _merged_ports(
    exporters: list[tuple[ClusterState, ExportedService]],
) -> tuple[tuple[str, str, int], ...]:
    ports: list[tuple[str, str, int]] = []
    for _, svc in exporters:
        for p in svc.ports:
            entry = (p.name, p.protocol, p.port)
            if entry not in ports:
                ports.append(entry)
    return tuple(ports)


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
        exporters = by_key[key]
        live = [(st, svc) for st, svc in exporters if st.cluster_id in healthy]
        has_ready = any(_ready_addresses(svc) for _, svc in live)
        if not has_ready and any(_ready_addresses(svc) for _, svc in exporters):
            live = exporters
            result.failed_open.append(key)
        headless = exporters[0][1].type is ServiceType.HEADLESS
        ports = _merged_ports(exporters)
        if headless:
            addresses, endpoints = _headless(live)
            result.records.append(
                ServiceRecords(key.namespace, key.name, True, addresses, ports, endpoints)
            )
        else:
            addresses = _cluster_set_ip(live, locality, max_addresses)
            result.records.append(ServiceRecords(key.namespace, key.name, False, addresses, ports))
    return result
