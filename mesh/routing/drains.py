"""Drained clusters (pure): which clusters take no traffic, and what a replica adopts.

``meshd drain`` reaches one agent replica of a cluster; that replica announces the drain in
its signed cluster record (``ClusterState.drain``), so only the cluster's own key can drain
it. Rules:

- a cluster's drain is the decision made last among the records of its replicas
  (``Drain.newest``: the largest ``at``), so an undrain sent to one replica overrides a
  drain sent to another, and a replica that has not heard of either changes nothing;
- a replica that sees a sibling's newer decision adopts it (``to_adopt``) and keeps it
  where it keeps its own (``--state-dir``, the Lease): every replica, and a new pod that
  joins while one of them runs, announces the same decision, and it survives a rollout;
- a drained cluster leaves every agent's answers, its own included
  (``mesh.routing.policy``), except when failing open.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model import ClusterId, ClusterState, Drain


def cluster_drains(states: Iterable[ClusterState]) -> dict[ClusterId, Drain]:
    """Each cluster's standing decision, from every replica's record (``Drain.newest``)."""
    found: dict[ClusterId, list[Drain]] = {}
    for state in states:
        found.setdefault(state.cluster_id, []).append(state.drain)
    return {cluster: Drain.newest(drains) for cluster, drains in found.items()}


def drained_clusters(states: Iterable[ClusterState]) -> frozenset[ClusterId]:
    return frozenset(c for c, d in cluster_drains(states).items() if d.drained)


def to_adopt(held: Drain, seen: Iterable[Drain]) -> Drain | None:
    """The newest of the decisions ``seen`` (siblings' records, the Lease) when it is newer
    than ``held`` (this replica's), else None."""
    newest = Drain.newest(seen)
    return newest if newest != held and Drain.newest((held, newest)) == newest else None


def siblings(cluster_id: ClusterId, states: Iterable[ClusterState]) -> list[Drain]:
    """The decisions the replicas of ``cluster_id`` announce."""
    return [s.drain for s in states if s.cluster_id == cluster_id]
