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

from mesh.model import ClusterId, ClusterState, LocalExports


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

    def set_local(self, exports: LocalExports) -> bool:
        """Publish a new local version when the exports changed; True when they did."""
        current = self.local
        candidate = replace(
            current,
            version=current.version + 1,
            namespaces=exports.namespaces,
            services=exports.services,
        )
        if candidate.same_content(current):
            return False
        self._states[self.local_id] = candidate
        return True

    def merge(self, state: ClusterState) -> bool:
        """Take a remote copy if it is newer than what we hold; True when it was taken."""
        if state.cluster_id == self.local_id:
            return False
        held = self._states.get(state.cluster_id)
        if held is not None and held.stamp >= state.stamp:
            return False
        self._states[state.cluster_id] = state
        return True

    def newer_than(self, digests: list[Digest]) -> list[ClusterState]:
        """The states a peer with these digests lacks or holds an older copy of."""
        theirs = {d.cluster_id: (d.generation, d.version) for d in digests}
        return [
            s for s in self.states() if s.cluster_id not in theirs or theirs[s.cluster_id] < s.stamp
        ]
