"""Routing policy: which endpoints the zone answers for each service, in which order.

Called whenever the catalog or cluster health changes; its output feeds the DNS zone
builder. Pure: the catalog's states, this cluster's locality and the set of healthy
clusters in, ``ServiceRecords`` out.

Rules (DESIGN.md "Answers: health, locality, failover", KEP-1645 for the rest):

- namespace sameness: a service is only answered when its namespace exists in this
  cluster; it is answered when at least one cluster exports it;
- only ready endpoints are ever answered;
- type, ports and policy: the clusterset's one view of the service (``mesh.routing.view``:
  the oldest export's type and ``meshd.io/`` annotations win, ports are merged with the
  older definition winning), the same view the ServiceImport write-back publishes, so DNS
  and the MCS API never disagree;
- answer modes (``mesh.routing.modes``): a ClusterSetIP service answers its endpoints, each
  chosen cluster's ClusterIP, or the clusterset VIP; the same tiers choose in every mode;
- tiers and weights (``mesh.routing.tiers``, from the annotations and this locality; by
  default this cluster, then its region, then the rest): ClusterSetIP services answer from
  the first tier with a healthy cluster that has ready endpoints, interleaved across that
  tier's clusters, led by each cluster as often as its weight; the zone shows
  ``max_answers`` of them per family and rotates through all of them;
- ports (``mesh.routing.ports``): answers of endpoint addresses carry, in SRV, the port the
  endpoints listen on (the EndpointSlice port, the Service's targetPort), not the Service
  port; a service where the two differ is noted (``Decision.ports_note``);
- headless services: every ready endpoint of every healthy cluster, without duplicates, in
  tier order; SRV priority is the tier, weight the cluster's share of its tier;
- clusters this agent considers unhealthy, and drained clusters (``meshd drain``), are left
  out; when no healthy, undrained cluster has a ready endpoint of a service but another
  has, every exporter's last-known ready endpoints are answered instead, in the same tiers
  (fail open: an answer that may work beats none), and the service is reported as failing
  open (``Decision.drained_used`` when a drained cluster is among them);
- a cluster whose export lost the type conflict (``MergedService.type_conflicts``) is left
  out, also when failing open: its endpoints belong to another kind of service.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from dnsserver.zone import HeadlessEndpoint, ServiceRecords
from mesh.model import ClusterId, ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.routing.annotations import Problem, ServicePolicy, parse_policy
from mesh.routing.modes import (
    CLUSTER_IP,
    CLUSTERSET_IP,
    DEFAULT_ANSWERING,
    ENDPOINTS,
    Answering,
    resolve_mode,
)
from mesh.routing.ports import PortPlan, plan_ports
from mesh.routing.tiers import Choice, Exporter, choose, tiers
from mesh.routing.view import MergedService, merge_service

DEFAULT_MAX_ADDRESSES = 8
NO_CHOICE = Choice((), -1)


@dataclass(frozen=True, slots=True)
class Locality:
    cluster_id: ClusterId
    region: str
    zone: str = ""


@dataclass(slots=True)
class PolicyResult:
    records: list[ServiceRecords] = field(default_factory=list)
    failed_open: list[ServiceKey] = field(default_factory=list)


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


@dataclass(frozen=True, slots=True)
class Decision:
    """One service's records, how they were chosen, and what in its policy was not used."""

    records: ServiceRecords
    state: str  # "first_tier", "later_tier" or "failed_open" (meshd_routing_services)
    problems: tuple[Problem, ...] = ()
    ports_note: str = ""  # the answers' ports are not the Service's (``mesh.routing.ports``)
    mode: str = ENDPOINTS  # the answer mode it answers in (``mesh.routing.modes``)
    choice: Choice = NO_CHOICE  # the clusters chosen (ClusterSetIP services)
    drained_used: bool = False  # failing open, with a drained cluster's endpoints

    @property
    def failed_open(self) -> bool:
        return self.state == "failed_open"


def _state(choice: Choice, failed_open: bool) -> str:
    if failed_open:
        return "failed_open"
    return "first_tier" if choice.tier <= 0 else "later_tier"


def _cluster_set_ip(
    key: ServiceKey,
    view: MergedService,
    ordered: list[list[Exporter]],
    policy: ServicePolicy,
    healthy: Set[ClusterId],
    max_addresses: int,
    mode: str,
    vip: tuple[str, ...],
) -> tuple[ServiceRecords, str, PortPlan, Choice]:
    choice = choose(policy, ordered, healthy)
    failed_open = not choice.clusters
    if failed_open:  # nothing healthy has a ready endpoint: the last-known ones, same tiers
        everyone = {st.cluster_id for tier in ordered for st, _ in tier}
        choice = choose(policy, ordered, everyone)
        failed_open = bool(choice.clusters)
    answering = [(st.cluster_id, svc) for st, svc, _ in choice.clusters]
    if mode == CLUSTERSET_IP and vip:  # the cluster's data plane balances the VIP;
        # until it exists, the service answers its endpoints
        columns: list[tuple[list[str], int]] = [(list(vip), 1)]
    else:
        of = _cluster_ips if mode == CLUSTER_IP else _ready_addresses
        columns = [(of(svc), weight) for _, svc, weight in choice.clusters]
    addresses = tuple(_interleave([c for c, _ in columns]))
    weighted = tuple((tuple(c), w) for c, w in columns) if policy.weights else ()
    proxied = mode == CLUSTER_IP or (mode == CLUSTERSET_IP and bool(vip))
    ports = plan_ports(view.ports, answering, mapped=proxied)
    records = ServiceRecords(
        key.namespace,
        key.name,
        False,
        addresses,
        ports.ports,
        (),
        policy.max_answers or max_addresses,
        weighted,
        policy.ttl,
    )
    return records, _state(choice, failed_open), ports, choice


def _cluster_ips(svc: ExportedService) -> list[str]:
    return list(svc.cluster_ips)


def _with_cluster_ips(ordered: list[list[Exporter]]) -> list[list[Exporter]]:
    """The tiers without the exporters that carry no ClusterIP (cluster-ip mode)."""
    kept = [[(st, svc) for st, svc in tier if svc.cluster_ips] for tier in ordered]
    return [tier for tier in kept if tier]


def _headless(
    key: ServiceKey,
    view: MergedService,
    ordered: list[list[Exporter]],
    policy: ServicePolicy,
    healthy: Set[ClusterId],
) -> tuple[ServiceRecords, str, PortPlan, set[ClusterId]]:
    usable = [[(st, svc) for st, svc in tier if st.cluster_id in healthy] for tier in ordered]
    failed_open = not any(_ready_addresses(svc) for tier in usable for _, svc in tier)
    if failed_open:
        usable = ordered
    endpoints: list[HeadlessEndpoint] = []
    answering: list[tuple[ClusterId, ExportedService]] = []
    addresses: list[str] = []
    seen: set[str] = set()
    priority = 0
    first = -1
    for index, tier in enumerate(usable):
        shares = _srv_weights(policy, tier)
        added = False
        for state, svc in tier:
            for ep in svc.endpoints:
                fresh = _fresh(ep, seen)
                if fresh:
                    addresses.extend(fresh)
                    endpoints.append(
                        HeadlessEndpoint(
                            state.cluster_id,
                            tuple(fresh),
                            ep.hostname,
                            priority,
                            shares.get(state.cluster_id),
                        )
                    )
                    added = True
                    if not answering or answering[-1][1] is not svc:
                        answering.append((state.cluster_id, svc))
        if added:
            first = index if first < 0 else first
            priority += 1
    ports = plan_ports(view.ports, answering, False)
    records = ServiceRecords(
        key.namespace,
        key.name,
        True,
        tuple(addresses),
        ports.ports,
        tuple(endpoints),
        ttl=policy.ttl,
    )
    outcome = "failed_open" if failed_open and endpoints else _state(Choice((), first), False)
    return records, outcome, ports, {e.cluster_id for e in endpoints}


def _srv_weights(policy: ServicePolicy, tier: list[Exporter]) -> dict[ClusterId, int]:
    """Each endpoint's SRV weight: its cluster's share of the tier (``meshd.io/weights``)
    split among the cluster's ready endpoints, out of 10,000; empty without weights (the
    zone then splits evenly)."""
    if not policy.weights:
        return {}
    ready = {st.cluster_id: sum(1 for e in svc.endpoints if e.ready) for st, svc in tier}
    weights = {c: policy.weights.get(c, 0) for c, n in ready.items() if n}
    if not any(weights.values()):  # nobody named in this tier: its clusters share alike
        weights = dict.fromkeys(weights, 1)
    total = sum(weights.values())
    return {c: min(65535, round(10_000 * w / total / ready[c])) for c, w in weights.items()}


def _fresh(ep: Endpoint, seen: set[str]) -> list[str]:
    if not ep.ready:
        return []
    fresh = [a for a in ep.addresses if a not in seen]
    seen.update(fresh)
    return fresh


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``decide_service`` starts from: the service's one view, its policy, and its
    exporters in tiers (type-conflict losers left out)."""

    view: MergedService
    policy: ServicePolicy
    problems: tuple[Problem, ...]
    ordered: list[list[Exporter]]


def plan_service(
    key: ServiceKey, exporters: list[tuple[ClusterState, ExportedService]], locality: Locality
) -> Plan:
    view = merge_service(key, [(state.cluster_id, svc) for state, svc in exporters])
    policy, problems = parse_policy(view.annotations)
    kept = [e for e in exporters if e[0].cluster_id not in view.type_conflicts]
    ordered = tiers(policy, kept, locality.cluster_id, locality.region)
    return Plan(view, policy, tuple(problems), ordered)


def decide_service(
    key: ServiceKey,
    exporters: list[tuple[ClusterState, ExportedService]],
    locality: Locality,
    healthy: Set[ClusterId],
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
    *,
    drained: Set[ClusterId] = frozenset(),
    answering: Answering = DEFAULT_ANSWERING,
    vip: tuple[str, ...] = (),
) -> Decision:
    """The records of one service from its exporters (local first, then by cluster id):
    ``healthy`` less ``drained`` may answer, the rest only when failing open; ``vip``: the
    service's clusterset VIP in this cluster, once it has one."""
    plan = plan_service(key, exporters, locality)
    view, policy, ordered = plan.view, plan.policy, plan.ordered
    problems = list(plan.problems)
    usable = set(healthy) - set(drained) if drained else healthy
    mode, problem = resolve_mode(policy, view.type, answering)
    problems.extend([problem] if problem is not None else [])
    if mode == CLUSTER_IP and not _with_cluster_ips(ordered):
        problems.append(
            Problem(
                "no_cluster_ip",
                "no exporting cluster gives a ClusterIP: "
                "answering endpoints (answer mode cluster-ip)",
            )
        )
        mode = ENDPOINTS
    choice = NO_CHOICE
    if view.type is ServiceType.HEADLESS:
        records, state, ports, used = _headless(key, view, ordered, policy, usable)
    else:
        candidates = _with_cluster_ips(ordered) if mode == CLUSTER_IP else ordered
        records, state, ports, choice = _cluster_set_ip(
            key, view, candidates, policy, usable, max_addresses, mode, vip
        )
        used = {st.cluster_id for st, _, _ in choice.clusters}
    if ports.note:
        problems.append(Problem("target_port_differs", ports.note))
    drained_used = state == "failed_open" and not used.isdisjoint(drained)
    return Decision(records, state, tuple(problems), ports.note, mode, choice, drained_used)


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
    drained: Set[ClusterId] = frozenset(),
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
        decision = decide_service(
            key, by_key[key], locality, healthy, max_addresses, drained=drained
        )
        result.records.append(decision.records)
        if decision.failed_open:
            result.failed_open.append(key)
    return result
