"""How the clusterset sees one service: the exports of every cluster merged (KEP-1645).

Pure: cluster states in, one ``MergedService`` per exported service out.

The rules are KEP-1645's "Constraints and Conflict Resolution":

- the exports of one service are ranked by their ServiceExport's ``creationTimestamp``
  (``ExportedService.exported_at``), oldest first; an unknown time (0, e.g. a manifest)
  ranks after every known one, and equal times rank by cluster id, so every agent ranks
  them alike;
- the *type* (ClusterSetIP or Headless) is the oldest export's; every cluster whose export
  has another type disagrees (``TypeConflict``);
- the *routing annotations* (``meshd.io/...``) are the oldest export's, whole;
- the *session affinity* (``ClientIP`` or none, and its timeout) is the oldest export's;
  every cluster whose Service has another affinity disagrees (``SessionAffinityConflict``),
  and one with ClientIP and another timeout too (``SessionAffinityConfigConflict``);
- the *IP families* are those of every export: its ClusterIPs, or for a headless one its
  endpoints' addresses (IPv4 first);
- the *ports* are the union of every export's ports, merged first by name, then by
  (protocol, port): a port whose name is taken by a different definition, or whose
  (protocol, port) is taken under another name, loses to the older export's, and its
  cluster disagrees (``PortConflict``). A cluster that merely lacks or adds a port does not.

A cluster that runs several agent replicas may appear more than once; the copy with the
largest ``(generation, version)`` stands for it (each replica reads the same API).

Most services are exported by one cluster, and a catch-up merges every one of them: such a
service with distinct ports is merged by a shortcut (``_alone``) that gives what the general
rules give for one export (a property test holds the two together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.model import (
    ClusterId,
    ClusterState,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)

__all__ = ["MergedService", "distinct_ports", "merge_clusterset", "merge_service", "port_text"]


@dataclass(frozen=True)
class MergedService:
    """One service as the clusterset exposes it, and who disagrees with that."""

    key: ServiceKey
    type: ServiceType
    ports: tuple[ServicePort, ...]
    clusters: tuple[ClusterId, ...]  # every exporting cluster, sorted
    oldest: ClusterId  # whose export wins conflicts
    type_conflicts: tuple[ClusterId, ...] = ()  # clusters whose type lost
    port_conflicts: tuple[ClusterId, ...] = ()  # clusters with a port that lost
    port_detail: str = ""  # the first port that lost, for the condition message
    annotations: tuple[tuple[str, str], ...] = ()  # the oldest export's routing annotations
    session_affinity: str = ""  # "ClientIP" or "" (None): the oldest export's
    affinity_timeout_s: int = 0
    affinity_conflicts: tuple[ClusterId, ...] = ()  # another affinity than the oldest's
    affinity_config_conflicts: tuple[ClusterId, ...] = ()  # ClientIP with another timeout
    ip_families: tuple[str, ...] = ()  # "IPv4", "IPv6": of every export

    @property
    def conflicted(self) -> bool:
        return bool(
            self.type_conflicts
            or self.port_conflicts
            or self.affinity_conflicts
            or self.affinity_config_conflicts
        )


def port_text(port: ServicePort) -> str:
    """``"http" TCP/80``, or ``unnamed TCP/80``."""
    name = f'"{port.name}"' if port.name else "unnamed"
    return f"{name} {port.protocol}/{port.port}"


def _rank(item: tuple[ClusterId, ExportedService]) -> tuple[float, ClusterId]:
    cluster, service = item
    known = math.isfinite(service.exported_at) and service.exported_at > 0
    return (service.exported_at if known else math.inf, cluster)


def merge_service(
    key: ServiceKey, exports: Iterable[tuple[ClusterId, ExportedService]]
) -> MergedService:
    """Merge the exports of one service, given as ``(cluster, export)``; at least one."""
    ranked = sorted(exports, key=_rank)
    if not ranked:
        raise ValueError(f"no export of {key} to merge")
    if len(ranked) == 1 and distinct_ports(ranked[0][1].ports):
        return _alone(key, *ranked[0])
    return _merge(key, ranked)


def _merge(key: ServiceKey, ranked: list[tuple[ClusterId, ExportedService]]) -> MergedService:
    """``merge_service`` of exports ranked oldest first (at least one), the general way."""
    oldest, first = ranked[0]
    type_conflicts = [c for c, s in ranked[1:] if s.type is not first.type]
    ports: list[ServicePort] = []
    by_name: dict[str, ServicePort] = {}
    by_number: dict[tuple[str, int], ServicePort] = {}
    losers: list[ClusterId] = []
    detail = ""
    for cluster, service in ranked:
        for port in service.ports:
            held = by_name.get(port.name)
            if held is None:
                held = by_number.get((port.protocol, port.port))
            if held == port:
                continue
            if held is not None:
                if cluster not in losers:
                    losers.append(cluster)
                if not detail:
                    detail = (
                        f"port {port_text(port)} of {cluster!r} clashes with {port_text(held)} "
                        f"of an older export"
                    )
                continue
            ports.append(port)
            by_name[port.name] = port
            by_number[(port.protocol, port.port)] = port
    affinity = [c for c, s in ranked[1:] if s.session_affinity != first.session_affinity]
    timeout = [
        c
        for c, s in ranked[1:]
        if s.session_affinity == first.session_affinity
        and s.affinity_timeout_s != first.affinity_timeout_s
    ]
    return MergedService(
        key=key,
        type=first.type,
        ports=tuple(ports),
        clusters=tuple(sorted({c for c, _ in ranked})),
        oldest=oldest,
        type_conflicts=tuple(sorted(set(type_conflicts))),
        port_conflicts=tuple(sorted(losers)),
        port_detail=detail,
        annotations=first.annotations,
        session_affinity=first.session_affinity,
        affinity_timeout_s=first.affinity_timeout_s,
        affinity_conflicts=tuple(sorted(set(affinity))),
        affinity_config_conflicts=tuple(sorted(set(timeout))),
        ip_families=_families(s for _, s in ranked),
    )


def distinct_ports(ports: tuple[ServicePort, ...]) -> bool:
    """No two ports share a name or a (protocol, port): what one export's view keeps whole."""
    return len(ports) < 2 or (
        len({p.name for p in ports}) == len(ports)
        and len({(p.protocol, p.port) for p in ports}) == len(ports)
    )


def _alone(key: ServiceKey, cluster: ClusterId, service: ExportedService) -> MergedService:
    """The view of a service only one cluster exports (most services: a catch-up merges
    each once): its own type, ports and policy, no conflict; what the general merge gives
    for one export whose ports are distinct."""
    return MergedService(
        key=key,
        type=service.type,
        ports=service.ports,
        clusters=(cluster,),
        oldest=cluster,
        annotations=service.annotations,
        session_affinity=service.session_affinity,
        affinity_timeout_s=service.affinity_timeout_s,
        ip_families=_families((service,)),
    )


def _families(exports: Iterable[ExportedService]) -> tuple[str, ...]:
    """IPv4 and/or IPv6: each export's ClusterIPs, else its endpoints' addresses."""
    seen: set[bool] = set()  # True: IPv6
    for service in exports:
        addresses: Iterable[str] = service.cluster_ips or (
            a for e in service.endpoints for a in e.addresses
        )
        for address in addresses:
            seen.add(":" in address)
            if len(seen) == 2:
                return ("IPv4", "IPv6")
    return tuple(name for v6, name in ((False, "IPv4"), (True, "IPv6")) if v6 in seen)


def _one_per_cluster(states: Iterable[ClusterState]) -> list[ClusterState]:
    chosen: dict[ClusterId, ClusterState] = {}
    for state in states:
        held = chosen.get(state.cluster_id)
        if held is None or state.stamp > held.stamp:
            chosen[state.cluster_id] = state
    return [chosen[c] for c in sorted(chosen)]


def merge_clusterset(states: Iterable[ClusterState]) -> dict[ServiceKey, MergedService]:
    """Every service exported anywhere in the clusterset, merged; in key order."""
    exports: dict[ServiceKey, list[tuple[ClusterId, ExportedService]]] = {}
    for state in _one_per_cluster(states):
        for key, service in state.services.items():
            exports.setdefault(key, []).append((state.cluster_id, service))
    return {key: merge_service(key, exports[key]) for key in sorted(exports)}
