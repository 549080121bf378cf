"""Which services' answers must be rebuilt, and what they become (pure).

The agent feeds the planner what changed: catalog changes (``mesh.ring.catalog.Change``) and the
set of healthy clusters. The planner remembers which services are dirty and, when asked,
runs the routing policy for those services only and returns the zone updates, so that one
changed service costs the same in a clusterset of ten services as in one of ten thousand.
A plain service (``mesh.routing.plain``: most of a catch-up's) is decided by that module's
shortcut, which gives what ``policy.decide_service`` gives, in fewer calls, and is noted
without a ``Decision`` object (``_note_plain``: what ``_note`` does for that decision).
A large plan is prepared in one pass over the dirty clusters' states, which gathers their
keys and indexes who exports each as it goes; only the states of clusters that are not dirty
are read again, for the keys already gathered (a catch-up: this cluster's own).

Rules:

- a change to some services of a cluster dirties those services;
- a change to this cluster's locality or namespaces, and the first plan, dirty everything
  (locality tiers and namespace sameness can change every answer); another cluster's
  (its first state, a new locality, its state forgotten) dirties the services it exports:
  a service's answers depend on its exporters' states alone (``policy``, ``tiers``: even a
  failover-order name is read against the service's exporters), so a newcomer's catch-up
  of N clusters plans each service once, not N times;
- a cluster becoming healthy or unhealthy, drained or undrained, dirties the services it
  exports;
- a service whose clusterset VIP changed (``note_vips``) is dirty;
- a service leaves the zone when no cluster exports it any more or its namespace does not
  exist in this cluster; ``zone_keys`` tracks what the zone holds, so nothing is left
  behind.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Iterable, Iterator, Mapping, Set
from itertools import chain, islice
from typing import TypeVar

from dnsserver.records import ServiceRecords
from mesh.model import ClusterId, ClusterState, ExportedService, ServiceKey
from mesh.ring.catalog import Change
from mesh.routing.annotations import Problem
from mesh.routing.modes import CLUSTERSET_IP, DEFAULT_ANSWERING, Answering
from mesh.routing.plain import plain_decision, plain_records
from mesh.routing.policy import (
    DEFAULT_MAX_ADDRESSES,
    Decision,
    Locality,
    decide_service,
    exporters_of,
)

Update = tuple[ServiceKey, ServiceRecords | None]
# The clusters the policy chose for a service: (cluster, its export, its weight), in order.
Selection = tuple[tuple[ClusterId, ExportedService, int], ...]
_T = TypeVar("_T")
# Who exports a service, in ``exporters_of`` order: one state, or several (``_index_exporters``).
Exporting = ClusterState | list[ClusterState]


class AnswerPlanner:
    def __init__(
        self,
        locality: Locality,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        answering: Answering = DEFAULT_ANSWERING,
    ) -> None:
        self.locality = locality
        self.max_addresses = max_addresses
        self.answering = answering
        self.zone_keys: set[ServiceKey] = set()
        self.failed_open: set[ServiceKey] = set()
        self.later_tier: set[ServiceKey] = set()  # answered from a failover tier
        self.drained_used: set[ServiceKey] = set()  # failing open onto a drained cluster
        self.tier_changes = 0  # services that moved between first tier, later tier, fail open
        # Policy annotations not used, per service, and those not yet reported (the agent
        # logs each once and counts it).
        self.problems: dict[ServiceKey, tuple[Problem, ...]] = {}
        self.new_problems: list[tuple[ServiceKey, Problem]] = []
        # Services whose answers' ports are not their Service ports (``Decision.ports_note``;
        # reported once with the problems, as ``target_port_differs``).
        self.port_notes: dict[ServiceKey, str] = {}
        # Answer mode clusterset-ip: each service's VIP in this cluster (from its source),
        # and the clusters the policy chose for each service that answers in that mode (the
        # writer derives EndpointSlices from them); the version moves when a choice does.
        self.vips: dict[ServiceKey, tuple[str, ...]] = {}
        self.selections: dict[ServiceKey, Selection] = {}
        self.selections_version = 0
        self.healthy: frozenset[ClusterId] = frozenset()
        self.drained: frozenset[ClusterId] = frozenset()
        self._dirty: set[ServiceKey] = set()
        self._everything = True
        self._clusters: set[ClusterId] = set()  # every service they export is dirty

    @property
    def pending(self) -> bool:
        return self._everything or bool(self._dirty) or bool(self._clusters)

    def note(self, change: Change) -> None:
        if change.cluster:
            if change.cluster_id in ("", self.locality.cluster_id):
                self._everything = True
            else:
                self._clusters.add(change.cluster_id)
        self._dirty |= change.services

    def note_vips(self, vips: Mapping[ServiceKey, tuple[str, ...]]) -> Change:
        """Take the VIPs the source holds now; the change dirties the services whose VIP
        changed (``ClusterId`` "" : no cluster's export changed)."""
        changed = {k for k in vips.keys() | self.vips.keys() if vips.get(k) != self.vips.get(k)}
        self.vips = dict(vips)
        self._dirty |= changed
        return Change("", frozenset(changed))

    def note_health(self, healthy: Set[ClusterId], states: Iterable[ClusterState]) -> bool:
        """Record the healthy clusters; True when that changed anything."""
        healthy = frozenset(healthy)
        flipped = healthy ^ self.healthy
        self.healthy = healthy
        return self._dirty_by(flipped, states)

    def note_drained(self, drained: Set[ClusterId], states: Iterable[ClusterState]) -> bool:
        """Record the drained clusters; True when that changed anything."""
        drained = frozenset(drained)
        flipped = drained ^ self.drained
        self.drained = drained
        return self._dirty_by(flipped, states)

    def _dirty_by(self, flipped: Set[ClusterId], states: Iterable[ClusterState]) -> bool:
        if not flipped:
            return False
        if self._everything:  # every service is planned anyway
            return True
        for state in states:
            # (A dirty cluster's services are planned anyway: a catch-up's clusters turn
            # healthy as they arrive, tens of thousands of keys not to hash again.)
            if state.cluster_id in flipped and state.cluster_id not in self._clusters:
                self._dirty.update(state.services)
        return True

    def plan(self, states: list[ClusterState], local_namespaces: Set[str]) -> list[Update]:
        """The zone updates for every dirty service, in key order; clears the dirt."""
        return [u for u in self.plan_steps(states, local_namespaces) if u is not None]

    def plan_steps(
        self, states: list[ClusterState], local_namespaces: Set[str]
    ) -> Iterator[Update | None]:
        """``plan`` in small steps, so that a caller can let its event loop turn between
        them: each update is decided as it is drawn, and while the plan is prepared (which
        services, who exports them, in what order: a pass over every state when everything
        is dirty) a None comes every ``PREPARE_STEP`` services. The dirt is taken at the
        first draw; what is noted meanwhile waits for the next plan."""
        extra = set(self.zone_keys) if self._everything else self._dirty
        everything, self._dirty, self._everything = self._everything, set(), False
        clusters, self._clusters = self._clusters, set()
        here = self.locality.cluster_id
        ordered = sorted(states, key=lambda s: (s.cluster_id != here, s.cluster_id))
        dirty = [s for s in ordered if everything or s.cluster_id in clusters]
        # One pass over the dirty states gathers their keys and indexes their exporters.
        found: dict[ServiceKey, Exporting] = {}
        for state in dirty:
            yield from _index_all(found, state)
        # Every key once: the indexed ones (not listed again: at 1,000,000 endpoints a list
        # of them is 2.7 MB more at the peak), then the others dirty on their own.
        indexed = len(found)
        missing = [k for k in extra if k not in found]
        index = found if indexed + len(missing) >= INDEX_FROM else None  # few: a scan each
        if index is not None and len(dirty) < len(ordered):  # the others' exports of those
            dirty_ids = {id(s) for s in dirty}
            others = [s for s in ordered if id(s) not in dirty_ids]
            rank = {id(s): n for n, s in enumerate(ordered)}
            yield from _index_others(index, set(missing), others, rank)
        runs = []
        # (``found`` keeps its order: the keys ``_index_others`` added come after ``indexed``.)
        for piece in _pieces(chain(islice(found, indexed), missing)):
            runs.append(sorted(piece, key=_order))
            yield None
        for key in heapq.merge(*runs, key=_order):
            yield self._decide(key, states, index, local_namespaces)

    def _decide(
        self,
        key: ServiceKey,
        states: list[ClusterState],
        index: dict[ServiceKey, Exporting] | None,
        local_namespaces: Set[str],
    ) -> Update | None:
        if index is None:
            exporters = exporters_of(key, states, self.locality.cluster_id)
        else:
            exporting = index.get(key, [])
            if isinstance(exporting, ClusterState):
                svc = exporting.services[key]
                if key.namespace in local_namespaces:  # else it leaves the zone, below
                    plain = plain_records(
                        key, exporting, svc, self.healthy, self.drained, self.max_addresses,
                        self.answering,
                    )  # fmt: skip
                    if plain is not None:  # most of a catch-up: no ``Decision`` made
                        self.zone_keys.add(key)
                        self._note_plain(key, plain[1])
                        return key, plain[0]
                exporters = [(exporting, svc)]
            else:
                exporters = [(state, state.services[key]) for state in exporting]
        if not exporters or key.namespace not in local_namespaces:
            gone = key in self.zone_keys
            self.zone_keys.discard(key)
            self._note(key, None)
            return (key, None) if gone else None
        decision = plain_decision(
            key, exporters, self.healthy, self.drained, self.max_addresses, self.answering
        ) or decide_service(
            key,
            exporters,
            self.locality,
            self.healthy,
            self.max_addresses,
            drained=self.drained,
            answering=self.answering,
            vip=self.vips.get(key, ()),
        )
        self.zone_keys.add(key)
        self._note(key, decision)
        return (key, decision.records)

    def take_problems(self) -> list[tuple[ServiceKey, Problem]]:
        """The policy problems found since the last call (each reported once)."""
        found, self.new_problems = self.new_problems, []
        return found

    def _note(self, key: ServiceKey, decision: Decision | None) -> None:
        """Track the service's routing state and policy problems."""
        before = self._state(key)
        # Each set and dict is looked at only when it holds something: a catch-up notes
        # every service, and a key's hash is a Python call.
        if self.failed_open:
            self.failed_open.discard(key)
        if self.later_tier:
            self.later_tier.discard(key)
        if self.drained_used:
            self.drained_used.discard(key)
        self._note_ports(key, decision.ports_note if decision is not None else "")
        self._note_selection(key, decision)
        if decision is None:
            self.problems.pop(key, None)
            return
        if decision.drained_used:
            self.drained_used.add(key)
        if decision.state == "failed_open":
            self.failed_open.add(key)
        elif decision.state == "later_tier":
            self.later_tier.add(key)
        if before is not None and before != decision.state:
            self.tier_changes += 1
        held = self.problems.get(key, ()) if self.problems else ()
        if decision.problems != held:
            self.new_problems.extend((key, p) for p in decision.problems)
        if decision.problems:
            self.problems[key] = decision.problems
        elif held:
            del self.problems[key]

    def _note_plain(self, key: ServiceKey, ports_note: str) -> None:
        """``_note`` of a plain service's decision (``plain.plain_records``): first tier,
        not drained, answer mode ``endpoints`` (no selection), a ``target_port_differs``
        problem when ``ports_note`` says something."""
        if (self.failed_open and key in self.failed_open) or (
            self.later_tier and key in self.later_tier
        ):  # it was in a later tier or failing open (``_state``: it is in ``zone_keys``)
            self.tier_changes += 1
            self.failed_open.discard(key)
            self.later_tier.discard(key)
        if self.drained_used:
            self.drained_used.discard(key)
        self._note_ports(key, ports_note)
        if self.selections and self.selections.pop(key, None) is not None:
            self.selections_version += 1
        held = self.problems.get(key, ()) if self.problems else ()
        if not ports_note:
            if held:
                del self.problems[key]
            return
        problems = (Problem("target_port_differs", ports_note),)
        if problems != held:
            self.new_problems.extend((key, p) for p in problems)
        self.problems[key] = problems

    def _note_selection(self, key: ServiceKey, decision: Decision | None) -> None:
        held = self.selections.get(key) if self.selections else None
        if decision is None or decision.mode != CLUSTERSET_IP:
            if held is not None:
                del self.selections[key]
                self.selections_version += 1
            return
        chosen = tuple((st.cluster_id, svc, w) for st, svc, w in decision.choice.clusters)
        if chosen != held:
            self.selections[key] = chosen
            self.selections_version += 1

    def _note_ports(self, key: ServiceKey, note: str) -> None:
        if note:
            self.port_notes[key] = note
        elif self.port_notes:
            self.port_notes.pop(key, None)

    def _state(self, key: ServiceKey) -> str | None:
        if key not in self.zone_keys:
            return None
        if self.failed_open and key in self.failed_open:
            return "failed_open"
        return "later_tier" if self.later_tier and key in self.later_tier else "first_tier"


# A key's order, (namespace, name), made in C: sorting by ServiceKey's own order compares
# in Python, and a Python key function is a call per key.
_order = operator.attrgetter("namespace", "name")


INDEX_FROM = 64  # dirty services from which one pass over every state beats a scan per key
PREPARE_STEP = 1000  # services handled between two Nones while a plan is prepared


def _pieces(items: Iterable[_T]) -> Iterator[list[_T]]:
    iterator = iter(items)
    while piece := list(islice(iterator, PREPARE_STEP)):
        yield piece


def _index_all(index: dict[ServiceKey, Exporting], state: ClusterState) -> Iterator[None]:
    """Add ``state`` to the exporters of every key it exports (states in ``exporters_of``
    order); a None every ``PREPARE_STEP`` services. A key one cluster exports (most) maps
    to its state itself, the others to a list of states: a list and a pair per service
    would outlive the young garbage collections of a catch-up and make the full ones come
    more often (each walks every object of the agent)."""
    for piece in _pieces(state.services):
        for key in piece:
            held = index.setdefault(key, state)
            if held is not state:
                if isinstance(held, list):
                    held.append(state)
                else:
                    index[key] = [held, state]
        yield None


def _index_others(
    index: dict[ServiceKey, Exporting],
    wanted: set[ServiceKey],
    others: list[ClusterState],
    rank: dict[int, int],
) -> Iterator[None]:
    """Add the states that are not dirty to the exporters of the keys of ``index`` and
    ``wanted`` they export, then put each key's exporters back in ``exporters_of`` order
    (``rank``: each state's place in it) where a state was added after others: each such
    list once (by its id: a key many clusters export joins it once per cluster), in pieces
    with a None between them like the rest of the preparation."""
    moved: dict[int, list[ClusterState]] = {}
    for state in others:
        for piece in _pieces(state.services):
            for key in piece:
                if key in index or key in wanted:
                    held = index.setdefault(key, state)
                    if held is not state:
                        if isinstance(held, list):
                            held.append(state)
                        else:
                            held = index[key] = [held, state]
                        moved[id(held)] = held
            yield None

    def place(s: ClusterState) -> int:
        return rank[id(s)]

    for lists in _pieces(moved.values()):
        for exporting in lists:
            exporting.sort(key=place)
        yield None
