"""The catalog: one ``ClusterState`` per origin cluster, this cluster's own among them.

Rules (a first, full-state form of Scuttlebutt-style anti-entropy):

- every origin cluster is the only author of its state; a copy replaces the held one only
  when its ``(generation, version)`` stamp is larger, so replays, duplicates and reordered
  messages change nothing, and a restarted origin (new, larger generation) replaces its
  old state wholesale, deletions included;
- copies of this cluster's own state that come back from peers are ignored: the local
  source is the truth for it;
- a local change that exports nothing new (same content) does not bump the version, so
  an unchanged directory re-scan never ripples through the ring.

The catalog is pure: the generation (a start time chosen by the adapter) comes in as an
argument, and nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mesh.model import ClusterId, ClusterState, LocalExports, ServiceKey

NO_KEYS: frozenset[ServiceKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Change:
    """What one catalog update changed, so the zone can rebuild only that.

    ``services``: the keys whose export by ``cluster_id`` changed (added, removed or
    different). ``cluster``: the cluster's locality or namespaces changed, which can change
    the answer of every service. Truthy when anything changed.
    """

    cluster_id: ClusterId
    services: frozenset[ServiceKey] = NO_KEYS
    cluster: bool = False

    def __bool__(self) -> bool:
        return self.cluster or bool(self.services)


def diff(old: ClusterState | None, new: ClusterState) -> Change:
    """What changed between two states of one origin. Cost: one comparison per service of
    that origin (objects shared between versions compare by identity first)."""
    if old is None:
        return Change(new.cluster_id, frozenset(new.services), cluster=True)
    cluster = (old.region, old.zone, old.namespaces) != (new.region, new.zone, new.namespaces)
    changed = {
        key
        for key in old.services.keys() | new.services.keys()
        if (a := old.services.get(key)) is not (b := new.services.get(key)) and a != b
    }
    return Change(new.cluster_id, frozenset(changed), cluster)


@dataclass(frozen=True, slots=True)
class Digest:
    cluster_id: ClusterId
    generation: int
    version: int


class Catalog:
    def __init__(self, local: ClusterState) -> None:
        self.local_id = local.cluster_id
        self._states: dict[ClusterId, ClusterState] = {local.cluster_id: local}

    @property
    def local(self) -> ClusterState:
        return self._states[self.local_id]

    def states(self) -> list[ClusterState]:
        """Every held state, ordered by cluster id."""
        return [self._states[c] for c in sorted(self._states)]

    def get(self, cluster_id: ClusterId) -> ClusterState | None:
        return self._states.get(cluster_id)

    def digests(self) -> list[Digest]:
        return [Digest(s.cluster_id, s.generation, s.version) for s in self.states()]

    def set_local(self, exports: LocalExports) -> Change:
        """Publish a new local version when the exports changed; the change (falsy if none)."""
        current = self.local
        candidate = replace(
            current,
            version=current.version + 1,
            namespaces=exports.namespaces,
            services=exports.services,
        )
        change = diff(current, candidate)
        if change:
            self._states[self.local_id] = candidate
        return change

    def merge(self, state: ClusterState) -> Change | None:
        """Take a remote copy if it is newer than what we hold: the change it made, or None
        when the copy was not taken (older, equal, or our own)."""
        if state.cluster_id == self.local_id:
            return None
        held = self._states.get(state.cluster_id)
        if held is not None and held.stamp >= state.stamp:
            return None
        self._states[state.cluster_id] = state
        return diff(held, state)

    def newer_than(self, digests: list[Digest]) -> list[ClusterState]:
        """The states a peer with these digests lacks or holds an older copy of."""
        theirs = {d.cluster_id: (d.generation, d.version) for d in digests}
        return [
            s for s in self.states() if s.cluster_id not in theirs or theirs[s.cluster_id] < s.stamp
        ]
