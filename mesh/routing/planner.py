"""Which services' answers must be rebuilt, and what they become (pure).

The agent feeds the planner what changed: catalog changes (``mesh.ring.catalog.Change``) and the
set of healthy clusters. The planner remembers which services are dirty and, when asked,
runs the routing policy for those services only and returns the zone updates, so that one
changed service costs the same in a clusterset of ten services as in one of ten thousand.

Rules:

- a change to some services of a cluster dirties those services;
- a change to a cluster's locality or namespaces, and the first plan, dirty everything
  (locality tiers and namespace sameness can change every answer);
- a cluster becoming healthy or unhealthy dirties the services it exports;
- a service leaves the zone when no cluster exports it any more or its namespace does not
  exist in this cluster; ``zone_keys`` tracks what the zone holds, so nothing is left
  behind.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Set
from itertools import islice
from typing import TypeVar

from dnsserver.records import ServiceRecords
from mesh.model import ClusterId, ClusterState, ExportedService, ServiceKey
from mesh.ring.catalog import Change
from mesh.routing.policy import DEFAULT_MAX_ADDRESSES, Locality, decide_service, exporters_of

Update = tuple[ServiceKey, ServiceRecords | None]
_T = TypeVar("_T")


class AnswerPlanner:
    def __init__(self, locality: Locality, max_addresses: int = DEFAULT_MAX_ADDRESSES) -> None:
        self.locality = locality
        self.max_addresses = max_addresses
        self.zone_keys: set[ServiceKey] = set()
        self.failed_open: set[ServiceKey] = set()
        self.healthy: frozenset[ClusterId] = frozenset()
        self._dirty: set[ServiceKey] = set()
        self._everything = True

    @property
    def pending(self) -> bool:
        return self._everything or bool(self._dirty)

    def note(self, change: Change) -> None:
        if change.cluster:
            self._everything = True
        self._dirty |= change.services

    def note_health(self, healthy: Set[ClusterId], states: Iterable[ClusterState]) -> bool:
        """Record the healthy clusters; True when that changed anything."""
        healthy = frozenset(healthy)
        flipped = healthy ^ self.healthy
        if not flipped:
            return False
        self.healthy = healthy
        for state in states:
            if state.cluster_id in flipped:
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
        keys = set(self.zone_keys) if self._everything else self._dirty
        everything, self._dirty, self._everything = self._everything, set(), False
        if everything:
            for state in states:
                for piece in _pieces(state.services):
                    keys.update(piece)
                    yield None
        index: dict[ServiceKey, list[tuple[ClusterState, ExportedService]]] | None = None
        if len(keys) >= INDEX_FROM:
            index = {}
            yield from _index_exporters(index, keys, states, self.locality.cluster_id)
        runs = []
        for piece in _pieces(keys):
            runs.append(sorted(piece, key=_order))
            yield None
        for key in heapq.merge(*runs, key=_order):
            yield self._decide(key, states, index, local_namespaces)

    def _decide(
        self,
        key: ServiceKey,
        states: list[ClusterState],
        index: dict[ServiceKey, list[tuple[ClusterState, ExportedService]]] | None,
        local_namespaces: Set[str],
    ) -> Update | None:
        if index is None:
            exporters = exporters_of(key, states, self.locality.cluster_id)
        else:
            exporters = index.get(key, [])
        if not exporters or key.namespace not in local_namespaces:
            gone = key in self.zone_keys
            self.zone_keys.discard(key)
            self.failed_open.discard(key)
            return (key, None) if gone else None
        records, failed_open = decide_service(
            key, exporters, self.locality, self.healthy, self.max_addresses
        )
        self.zone_keys.add(key)
        if failed_open:
            self.failed_open.add(key)
        else:
            self.failed_open.discard(key)
        return (key, records)


def _order(key: ServiceKey) -> tuple[str, str]:
    return (key.namespace, key.name)  # sorts in C: ServiceKey's own order compares in Python


INDEX_FROM = 64  # dirty services from which one pass over every state beats a scan per key
PREPARE_STEP = 1000  # services handled between two Nones while a plan is prepared


def _pieces(items: Iterable[_T]) -> Iterator[list[_T]]:
    iterator = iter(items)
    while piece := list(islice(iterator, PREPARE_STEP)):
        yield piece


def _index_exporters(
    index: dict[ServiceKey, list[tuple[ClusterState, ExportedService]]],
    keys: Set[ServiceKey],
    states: list[ClusterState],
    local_cluster: str,
) -> Iterator[None]:
    """Fill ``index`` with ``exporters_of`` for many keys at once, in one pass over the
    states (a catch-up dirties every service: a scan of every state per key would cost
    keys x clusters); a None every ``PREPARE_STEP`` services."""
    ordered = sorted(states, key=lambda s: (s.cluster_id != local_cluster, s.cluster_id))
    for state in ordered:
        for piece in _pieces(state.services.items()):
            for key, svc in piece:
                if key in keys:
                    index.setdefault(key, []).append((state, svc))
            yield None
