"""Failover tiers and weighted shares of one service, as seen from this agent (pure).

``tiers`` orders the exporting clusters into tiers by the service's policy
(``mesh.routing.annotations``) and this agent's locality; ``choose`` walks them and returns
the clusters that answer, each with its share:

- a tier answers when one of its clusters is healthy and has a ready endpoint; the first
  such tier wins (later tiers are the failover plan);
- within a tier, ``meshd.io/weights`` gives each cluster its share; clusters not named
  weigh 0 and answer only when no weighted cluster of the tier can (weight 0 never blocks
  failover); without weights every cluster weighs the same;
- ``meshd.io/min-healthy``: a tier with fewer ready endpoints than asked also takes the next
  tier's clusters (Envoy's overprovisioning, opt-in), so a cluster coming back with one
  ready pod does not take all the traffic;
- nothing healthy anywhere: the caller fails open (every exporter, in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from mesh.model import ClusterId, ClusterState, ExportedService
from mesh.routing.annotations import ServicePolicy

Exporter = tuple[ClusterState, ExportedService]


@dataclass(frozen=True, slots=True)
class Choice:
    """The clusters that answer, in tier order, with their weights; ``tier`` is the index
    of the first tier used (0: the first choice), -1 when failing open."""

    clusters: tuple[tuple[ClusterState, ExportedService, int], ...]
    tier: int


def tiers(
    policy: ServicePolicy,
    exporters: Sequence[Exporter],
    here: ClusterId,
    region: str,
) -> list[list[Exporter]]:
    """The exporters in tiers, best first; no tier is empty and each exporter is in one."""
    if policy.failover_order:
        return _explicit(policy.failover_order, exporters)
    if policy.affinity == "none":
        return [list(exporters)]
    local = [e for e in exporters if e[0].cluster_id == here]
    others = [e for e in exporters if e[0].cluster_id != here]
    near = [e for e in others if region and e[0].region == region]
    target = policy.failover.get(region) if region else None
    next_region = [e for e in others if target and e[0].region == target and e not in near]
    rest = [e for e in others if e not in near and e not in next_region]
    ordered = (
        [near, next_region, rest, local]
        if policy.affinity == "remote"
        else [
            local,
            near,
            next_region,
            rest,
        ]
    )
    return [tier for tier in ordered if tier]


def _explicit(
    order: tuple[tuple[str, ...], ...], exporters: Sequence[Exporter]
) -> list[list[Exporter]]:
    clusters = {state.cluster_id for state, _ in exporters}
    placed: set[ClusterId] = set()
    result: list[list[Exporter]] = []
    for names in order:
        tier = [
            e
            for e in exporters
            if e[0].cluster_id not in placed
            and any(
                e[0].cluster_id == name or (name not in clusters and e[0].region == name)
                for name in names
            )
        ]
        placed.update(state.cluster_id for state, _ in tier)
        if tier:
            result.append(tier)
    rest = [e for e in exporters if e[0].cluster_id not in placed]
    return [*result, rest] if rest else result


def _ready(svc: ExportedService) -> int:
    return sum(1 for e in svc.endpoints if e.ready)


def _any_ready(svc: ExportedService) -> bool:
    return any(e.ready for e in svc.endpoints)


def choose(policy: ServicePolicy, ordered: list[list[Exporter]], healthy: Set[ClusterId]) -> Choice:
    """Walk the tiers (see the module docstring); an empty choice when nothing healthy has
    a ready endpoint."""
    chosen: list[tuple[ClusterState, ExportedService, int]] = []
    first = -1
    for index, tier in enumerate(ordered):
        usable = [(st, svc) for st, svc in tier if st.cluster_id in healthy and _any_ready(svc)]
        if not usable:
            continue
        weighted = weigh(policy, usable)
        chosen.extend(weighted)
        first = index if first < 0 else first
        minimum = policy.min_healthy
        if minimum is None:
            break
        ready = sum(_ready(svc) for _, svc, _ in weighted)
        total = sum(len(svc.endpoints) for _, svc in tier)
        if minimum.met(ready, total):
            break
    return Choice(tuple(chosen), first)


def weigh(
    policy: ServicePolicy, usable: Sequence[Exporter]
) -> list[tuple[ClusterState, ExportedService, int]]:
    """The clusters of one tier that answer, with their weights (see the module docstring)."""
    if not policy.weights:
        return [(st, svc, 1) for st, svc in usable]
    positive = [(st, svc, policy.weights.get(st.cluster_id, 0)) for st, svc in usable]
    positive = [item for item in positive if item[2] > 0]
    return positive or [(st, svc, 1) for st, svc in usable]
