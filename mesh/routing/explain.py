"""Why one service answers as it does, as this agent sees it (pure): ``meshd status --service``.

``explain_service`` runs the same steps as ``mesh.routing.policy.decide_service`` (the one
view, the policy, the tiers, ``choose``) and reports them as plain data, ready for JSON:
the policy in force and what in it was not used, every exporting cluster in its tier with
its weight, share, ready endpoints, health and drain, whether it is in the answers, and for
every cluster left out one reason, the first that applies, in this order:

- ``conflict loser``: its export's type lost to the oldest export's (it is never answered);
- ``dead``: SWIM holds every agent of it dead or left; ``unreachable``: this agent has not
  exchanged with any of its agents within the peer timeout;
- ``drained``: it announces that it takes no traffic (``meshd drain``);
- ``no ready endpoint``;
- ``weight 0``: its tier answers, and ``meshd.io/weights`` names other clusters of it;
- ``later tier``: an earlier tier answers (it stands by for failover).

When the service fails open, the clusters it answers from are in the answers whatever
their health or drain, and ``state`` says ``failed_open``.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from mesh.model import ClusterId, ClusterState, ExportedService, ServiceKey, ServiceType
from mesh.routing.annotations import ServicePolicy
from mesh.routing.policy import Locality, decide_service, plan_service
from mesh.routing.tiers import Exporter, choose

REASONS = (
    "conflict loser",
    "dead",
    "unreachable",
    "drained",
    "no ready endpoint",
    "weight 0",
    "later tier",
)


def _ready(svc: ExportedService) -> int:
    return sum(1 for e in svc.endpoints if e.ready)


def _answering(
    headless: bool,
    policy: ServicePolicy,
    ordered: list[list[Exporter]],
    usable: Set[ClusterId],
    failed_open: bool,
) -> dict[ClusterId, int]:
    """The clusters in the answers, with their weight (headless: 1 each)."""
    allowed = {st.cluster_id for tier in ordered for st, _ in tier} if failed_open else usable
    if headless:
        return {
            st.cluster_id: 1
            for tier in ordered
            for st, svc in tier
            if st.cluster_id in allowed and _ready(svc)
        }
    return {st.cluster_id: w for st, _, w in choose(policy, ordered, allowed).clusters}


def _policy_json(policy: ServicePolicy, max_answers: int | None, ttl_s: int) -> dict[str, Any]:
    min_healthy = policy.min_healthy
    return {
        "affinity": policy.affinity,
        "failover_order": ",".join("|".join(t) for t in policy.failover_order),
        "failover": dict(sorted(policy.failover.items())),
        "weights": dict(sorted(policy.weights.items())),
        "max_answers": max_answers,
        "min_healthy": None
        if min_healthy is None
        else f"{min_healthy.count}{'%' if min_healthy.percent else ''}",
        "ttl_s": ttl_s,
    }


def explain_service(
    key: ServiceKey,
    exporters: list[tuple[ClusterState, ExportedService]],
    locality: Locality,
    health: tuple[Set[ClusterId], Mapping[ClusterId, str], Set[ClusterId]],
    max_addresses: int,
    default_ttl_s: int,
) -> dict[str, Any]:
    """The explanation (module docstring) of ``key`` from its exporters (as for
    ``decide_service``); ``health`` is (healthy clusters, why each other one is out: "dead"
    or "unreachable", drained clusters)."""
    healthy, down, drained = health
    plan = plan_service(key, exporters, locality)
    decision = decide_service(key, exporters, locality, healthy, max_addresses, drained=drained)
    policy, ordered = plan.policy, plan.ordered
    headless = plan.view.type is ServiceType.HEADLESS
    failed_open = decision.state == "failed_open"
    usable = set(healthy) - set(drained)
    answering = _answering(headless, policy, ordered, usable, failed_open)
    used_tiers = {
        i for i, tier in enumerate(ordered) for st, _ in tier if st.cluster_id in answering
    }
    tiers_json: list[dict[str, Any]] = []
    left_out: list[dict[str, str]] = []
    for index, tier in enumerate(ordered):
        total = sum(w for st, _ in tier if (w := answering.get(st.cluster_id, 0)))
        rows = []
        for st, svc in tier:
            cid = st.cluster_id
            weight = answering.get(cid)
            why = None if weight is not None else _why(cid, svc, index, used_tiers, health)
            rows.append(
                {
                    "cluster": cid,
                    "region": st.region,
                    "weight": policy.weights.get(cid) if policy.weights else None,
                    "share": None if weight is None or not total else round(weight / total, 4),
                    "ready": _ready(svc),
                    "endpoints": len(svc.endpoints),
                    "health": "healthy" if cid in healthy else down.get(cid, "unreachable"),
                    "drained": cid in drained,
                    "answering": weight is not None,
                    "why": why,
                }
            )
            if why is not None:
                left_out.append({"cluster": cid, "why": why})
        tiers_json.append({"tier": index, "clusters": rows})
    for cid in plan.view.type_conflicts:
        left_out.append({"cluster": cid, "why": "conflict loser"})
    records = decision.records
    return {
        "service": str(key),
        "type": plan.view.type.value,
        "state": decision.state,
        "drained_used": decision.drained_used,
        "oldest_export": plan.view.oldest,
        "policy": _policy_json(
            policy,
            None if headless else records.max_addresses,
            default_ttl_s if records.ttl is None else records.ttl,
        ),
        "problems": [{"reason": p.reason, "message": p.message} for p in decision.problems],
        "tiers": tiers_json,
        "left_out": sorted(left_out, key=lambda e: e["cluster"]),
    }


def _why(
    cid: ClusterId,
    svc: ExportedService,
    index: int,
    used_tiers: Set[int],
    health: tuple[Set[ClusterId], Mapping[ClusterId, str], Set[ClusterId]],
) -> str:
    healthy, down, drained = health
    if cid not in healthy:
        return down.get(cid, "unreachable")
    if cid in drained:
        return "drained"
    if not _ready(svc):
        return "no ready endpoint"
    if index in used_tiers:
        return "weight 0"
    return "later tier"
