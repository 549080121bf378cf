"""How many origins' copies the record store holds, and which one makes way (pure).

An origin is one agent replica of one cluster; its copy holds every service that replica
publishes. The store holds at most ``per_cluster`` origins of one cluster, ``clusters``
clusters and ``origins`` in all (``mesh.model`` gives the reasons), so that no run of
messages, true or made up, grows the store (and the catalog, whose every update looks at
a cluster's replicas) without end:

- a new origin of a cluster that is full takes the place of that cluster's origin with
  the lowest generation, if the new one's is higher: generations are start times, so that
  is the replica started longest ago, most likely gone (rollouts bring new pod names, and
  nothing else ever forgets a replica whose cluster lives on). Otherwise it is refused;
- a new origin of a new cluster beyond ``clusters``, or beyond ``origins`` in all, is
  refused: the store cannot tell a cluster that is gone from one that is quiet; a cluster
  gone for ``--cluster-expiry`` is forgotten (``mesh.ring.expiry``) and frees its room.

This agent's own origin never makes way. Refusals are ``cluster_full`` and ``table_full``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mesh.model import MAX_AGENTS, MAX_AGENTS_PER_CLUSTER, MAX_CLUSTERS

Origin = tuple[str, str]


@dataclass(frozen=True, slots=True)
class OriginLimits:
    per_cluster: int = MAX_AGENTS_PER_CLUSTER
    clusters: int = MAX_CLUSTERS
    origins: int = MAX_AGENTS


DEFAULT_LIMITS = OriginLimits()


class OriginRoom:
    """The origins a store holds (a copy in use or one being built), by cluster."""

    def __init__(self, local: Origin, limits: OriginLimits) -> None:
        self.local = local
        self.limits = limits
        self._replicas: dict[str, set[str]] = {local[0]: {local[1]}}
        self._count = 1

    def release(self, origin: Origin) -> None:
        """``origin`` is no longer held."""
        replicas = self._replicas.get(origin[0])
        if replicas is None or origin[1] not in replicas:
            return
        replicas.discard(origin[1])
        self._count -= 1
        if not replicas:
            del self._replicas[origin[0]]

    def make_way(
        self, origin: Origin, generation: int, generation_of: Callable[[Origin], int]
    ) -> tuple[Origin | None, str]:
        """Room for a copy of the new ``origin`` at ``generation``: the origin to forget
        first (None: none; the caller forgets it), and why the new one is refused ("" when
        it is not, and then it is held)."""
        cluster, limits = origin[0], self.limits
        mine = [(cluster, r) for r in self._replicas.get(cluster, ())]
        gone: Origin | None = None
        if len(mine) >= limits.per_cluster:
            candidates = [o for o in mine if o != self.local]
            oldest = min(candidates, key=lambda o: (generation_of(o), o), default=None)
            if oldest is None or generation_of(oldest) >= generation:
                return None, "cluster_full"
            gone = oldest
            self.release(oldest)
        elif (not mine and len(self._replicas) >= limits.clusters) or self._count >= limits.origins:
            return None, "table_full"
        self._replicas.setdefault(cluster, set()).add(origin[1])
        self._count += 1
        return gone, ""
