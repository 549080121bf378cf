"""The catalog: the copy of each cluster's state that answers use, this cluster's own among them.

Rules:

- an origin is one agent replica of one cluster, ``(cluster, replica)``; it is the only
  author of its state. Which copy of an origin is newer is the record store's business
  (``mesh.ring.records``: per-service records, tombstones, resets); it hands the catalog each
  new copy with ``put``, saying which services changed. ``merge`` keeps the older
  whole-state rule (a copy replaces the held one only when its ``(generation, version)``
  stamp is larger) for tools and tests that hold whole states;
- replicas of one cluster read the same source and publish their own states; answers use
  one of them per cluster, chosen deterministically: a replica this agent can reach before
  one it cannot, then the newest generation. So when the replica in use dies, the answers
  move to a live sibling's state at once, instead of freezing on the dead one's;
- copies of this agent's own state that come back from peers are ignored, and this
  cluster's answers always come from the local source;
- a local change that exports nothing new (same content) does not bump the version, so
  an unchanged directory re-scan never ripples through the ring.

The catalog is pure: the generation (a start time chosen by the adapter) comes in as an
argument, and nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from mesh.model import ClusterId, ClusterState, Drain, LocalExports, ServiceKey

NO_KEYS: frozenset[ServiceKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Change:
    """What one catalog update changed, so the zone can rebuild only that.

    ``services``: the keys whose export by ``cluster_id`` changed (added, removed or
    different). ``cluster``: the cluster's locality or namespaces changed, which can change
    the answer of every service. ``announced``: what the cluster's record announces changed
    (its drain or its agents' addresses): the record is new, and only the answers of the
    cluster's own services can change (``mesh.routing.planner`` follows drains by cluster).
    Truthy when anything changed.
    """

    cluster_id: ClusterId
    services: frozenset[ServiceKey] = NO_KEYS
    cluster: bool = False
    announced: bool = False

    def __bool__(self) -> bool:
        return self.cluster or self.announced or bool(self.services)


def diff(old: ClusterState | None, new: ClusterState) -> Change:
    """What changed between two states of one origin. Cost: one lookup per service of the
    new state, plus one per service of the old when some may be gone; objects shared
    between versions compare by identity first (20,000 services: a few ms)."""
    if old is None:
        return Change(new.cluster_id, frozenset(new.services), cluster=True)
    cluster = _where(old) != _where(new)
    announced = old.announced != new.announced
    before, after = old.services, new.services
    if not before:  # a first load: everything is new
        return Change(new.cluster_id, frozenset(after), cluster, announced)
    if len(before) == len(after):
        # A source's next version keeps the order and the very key objects of the one
        # before (``mesh.sources.delta.Merge`` updates a copy in place): walked side by
        # side, no key is hashed (hashing every key was most of a local edit's cost on the
        # loop at 1,000 services). A peer's decoded state has keys of its own: the walk
        # stops at the first, and the lookups below decide.
        walked = set()
        for (key, was), (new_key, now) in zip(before.items(), after.items(), strict=True):
            if new_key is not key:
                break
            if was is not now and was != now:
                walked.add(key)
        else:
            return Change(new.cluster_id, frozenset(walked), cluster, announced)
    changed = {
        k for k, s in after.items() if (b := before.get(k)) is not s and (b is None or b != s)
    }
    if len(after) - sum(1 for k in changed if k not in before) != len(before):
        changed.update(k for k in before if k not in after)  # some are gone
    return Change(new.cluster_id, frozenset(changed), cluster, announced)


def _where(state: ClusterState) -> tuple[str, str, frozenset[str]]:
    return (state.region, state.zone, state.namespaces)


@dataclass(frozen=True, slots=True)
class Digest:
    cluster_id: ClusterId
    generation: int
    version: int
    replica: str = ""
    partial: bool = False  # a copy being built aside (mesh/ring/records.py), held up to version
    checked: int = 0  # a copy in use: the version of the last head it was checked against
    target: int = 0  # a copy built aside: the version of the snapshot it is built from
    head_hash: bytes = b""  # a copy in use: its checked head's set hash, first 8 bytes


Origin = tuple[ClusterId, str]


def _always(state: ClusterState) -> bool:
    return True


class Catalog:
    def __init__(self, local: ClusterState) -> None:
        self.local_id = local.cluster_id
        self.local_origin: Origin = local.origin
        self._states: dict[Origin, ClusterState] = {local.origin: local}
        self._chosen: dict[ClusterId, Origin] = {local.cluster_id: local.origin}
        # cluster -> the origins held of it: the health loop re-picks every cluster's
        # replica ten times a second, which must not walk every state for each cluster.
        self._origins: dict[ClusterId, set[Origin]] = {local.cluster_id: {local.origin}}
        # Bumped whenever a held state is added, replaced or dropped: what is derived from
        # ``states()`` alone (the drained clusters, say) is recomputed only when it moves.
        self.revision = 0
        self._prefer: Callable[[ClusterState], bool] = _always

    @property
    def local(self) -> ClusterState:
        return self._states[self.local_origin]

    def states(self) -> list[ClusterState]:
        """Every held state, of every origin (what gossip carries), in a stable order."""
        return [self._states[o] for o in sorted(self._states)]

    def clusters(self) -> list[ClusterState]:
        """The state answers come from: one per cluster, ordered by cluster id."""
        return [self._states[self._chosen[c]] for c in sorted(self._chosen)]

    def get(self, cluster_id: ClusterId) -> ClusterState | None:
        """The state answers use for ``cluster_id`` (the chosen replica's)."""
        origin = self._chosen.get(cluster_id)
        return None if origin is None else self._states[origin]

    def digests(self) -> list[Digest]:
        return [Digest(s.cluster_id, s.generation, s.version, s.replica) for s in self.states()]

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
            self._states[self.local_origin] = candidate
            self.revision += 1
        return change

    def announce(self, drain: Drain, dns_address: str, admin_address: str) -> Change:
        """Publish a new local version when what this replica announces about itself (its
        drain, its addresses) changed; the change (falsy if none)."""
        current = self.local
        candidate = replace(
            current,
            version=current.version + 1,
            drain=drain,
            dns_address=dns_address,
            admin_address=admin_address,
        )
        change = diff(current, candidate)
        if change:
            self._states[self.local_origin] = candidate
            self.revision += 1
        return change

    def merge(self, state: ClusterState) -> Change | None:
        """Take a remote copy if it is newer than what we hold for its origin. Returns None
        when the copy was not taken (older, equal, or our own), else the change it made to
        the answers' view (falsy when that view did not change, e.g. another replica's)."""
        if state.origin == self.local_origin:
            return None
        held = self._states.get(state.origin)
        if held is not None and held.stamp >= state.stamp:
            return None
        before = self.get(state.cluster_id)
        self._hold(state)
        return self._rechoose(state.cluster_id, before) or Change(state.cluster_id)

    def put(
        self, state: ClusterState, services: frozenset[ServiceKey] | None, cluster: bool
    ) -> Change:
        """Hold ``state`` as its origin's copy: the record store (``mesh.ring.records``) already
        decided it is newer. ``services`` and ``cluster`` say what changed since the held
        copy (``services`` None: unknown, compare). Returns the change to the answers' view."""
        if state.origin == self.local_origin:
            return Change(state.cluster_id)
        previous = self._states.get(state.origin)
        before = self.get(state.cluster_id)
        self._hold(state)
        best = self._best(state.cluster_id)
        self._chosen[state.cluster_id] = best.origin
        if best is not state:
            return Change(state.cluster_id) if best is before else diff(before, best)
        if before is not None and before is previous and services is not None:
            # The same replica, moved on; its cluster record changed what, if anything?
            where = cluster and _where(before) != _where(state)
            announced = cluster and before.announced != state.announced
            return Change(state.cluster_id, services, where, announced)
        return diff(before, best)

    def forget(self, cluster_id: ClusterId) -> Change:
        """Drop every state of ``cluster_id`` (gone for good); the change to the answers."""
        before = self.get(cluster_id)
        if cluster_id == self.local_id or before is None:
            return Change(cluster_id)
        for origin in self._origins.pop(cluster_id, set()):
            del self._states[origin]
        del self._chosen[cluster_id]
        self.revision += 1
        return Change(cluster_id, frozenset(before.services), cluster=True)

    def drop(self, origin: Origin) -> Change:
        """Drop one origin's state (its copy made room for another replica's,
        ``mesh.ring.origin_room``); the change to the answers' view."""
        cluster_id = origin[0]
        before = self.get(cluster_id)
        if origin == self.local_origin or self._states.pop(origin, None) is None:
            return Change(cluster_id)
        self.revision += 1
        held = self._origins[cluster_id]
        held.discard(origin)
        if held:
            return self._rechoose(cluster_id, before) or Change(cluster_id)
        del self._origins[cluster_id]
        del self._chosen[cluster_id]
        services = NO_KEYS if before is None else frozenset(before.services)
        return Change(cluster_id, services, cluster=True)

    def choose(self, prefer: Callable[[ClusterState], bool]) -> list[Change]:
        """Re-pick each cluster's replica with ``prefer`` (e.g. "this agent reaches it"):
        among a cluster's replicas, preferred ones first, then the larger (generation,
        version). Returns the changes to the answers' view."""
        self._prefer = prefer
        changes = []
        for cluster_id in sorted(self._chosen):
            change = self._rechoose(cluster_id, self.get(cluster_id))
            if change:
                changes.append(change)
        return changes

    def _rechoose(self, cluster_id: ClusterId, before: ClusterState | None) -> Change | None:
        if cluster_id == self.local_id:
            return None  # this cluster's answers come from our own source, always
        best = self._best(cluster_id)
        self._chosen[cluster_id] = best.origin
        if best is before:
            return None
        return diff(before, best)

    def _hold(self, state: ClusterState) -> None:
        self._states[state.origin] = state
        self._origins.setdefault(state.cluster_id, set()).add(state.origin)
        self.revision += 1

    def _best(self, cluster_id: ClusterId) -> ClusterState:
        """The replica of ``cluster_id`` answers should come from: preferred ones first,
        then the larger (generation, version), then the replica's name. A cluster with one
        replica (the usual case) is decided without asking ``prefer``."""
        origins = self._origins[cluster_id]
        if len(origins) == 1:
            return self._states[next(iter(origins))]
        replicas = [self._states[o] for o in origins]
        return max(replicas, key=lambda s: (self._prefer(s), s.generation, s.version, s.replica))

    def newer_than(self, digests: list[Digest]) -> list[ClusterState]:
        """The states a peer with these digests lacks or holds an older copy of."""
        theirs = {(d.cluster_id, d.replica): (d.generation, d.version) for d in digests}
        return [s for s in self.states() if s.origin not in theirs or theirs[s.origin] < s.stamp]
