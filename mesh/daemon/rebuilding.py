"""The agent's zone rebuild: the routing decisions of ``mesh.routing.rebuild`` and
``mesh.routing.planner`` applied to the DNS front in bounded slices.

A rebuild plans what changed since the last one (the planner draws each service's policy
as its update is taken), applies (encodes) the updates in batches of about
``REBUILD_CHECK_COST`` addresses and lets the event loop turn every ``REBUILD_SLICE_S``: a
catch-up or a namespace change re-plans every answer, and DNS, SWIM and the ring must not
wait. Each service changes in one step, so a
query sees it before or after its change, never half. Afterwards it logs what newly fails
open and the policy problems (each once), counts, and tells ``observers`` how long it took
(the metrics' histogram).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.daemon.front import DnsFront
from mesh.daemon.heap import HeapSettler
from mesh.model import ServiceKey
from mesh.ring.catalog import Catalog
from mesh.routing.drains import drained_clusters
from mesh.routing.planner import AnswerPlanner, Update
from mesh.routing.rebuild import Rebuild, plan_rebuild, some

log = logging.getLogger("meshd.agent")
REBUILD_SLICE_S = 0.02  # longest the zone rebuild runs before letting the event loop turn
# Addresses (plus one per service) encoded between two looks at the clock: about 2 ms of
# encoding. Counting services alone let a slice run for 50 headless services of 50
# endpoints each, about 100 ms.
REBUILD_CHECK_COST = 200


def encoding_cost(update: Update) -> int:
    """What encoding a service's answers costs, in addresses (plus one for the service)."""
    records = update[1]
    return 1 if records is None else 1 + len(records.addresses) + len(records.endpoints)


@dataclass(slots=True)
class AgentStats:
    zone_rebuilds: int = 0
    failed_open: tuple[ServiceKey, ...] = ()
    source_problems: int = 0
    policy_problems: Counter[str] = field(default_factory=Counter)  # reason -> annotations


class ZoneRebuilder:
    def __init__(
        self,
        planner: AnswerPlanner,
        catalog: Catalog,
        front: DnsFront,
        heap: HeapSettler,
        stats: AgentStats,
        health: Callable[[], set[str]],
    ) -> None:
        self.planner, self.catalog, self.front, self.heap = planner, catalog, front, heap
        self.stats = stats
        self.health = health  # the clusters answers may use now
        self.observers: list[Callable[[float], None]] = []  # each rebuild's seconds

    async def rebuild(self) -> None:
        """Rebuild the answers of what changed since the last rebuild, in ``REBUILD_SLICE_S``
        slices (a catch-up or a namespace change re-plans every answer: DNS, SWIM and the ring
        must not wait). A query sees each service before or after its change, never half."""
        started = sliced = time.perf_counter()
        planned = self._plan_rebuild()
        if planned is None:
            return
        batch: list[Update] = []
        cost = 0
        for update in planned.updates:  # each drawn update runs that service's policy
            if update is not None:
                batch.append(update)
                cost += encoding_cost(update)
            if update is None or cost >= REBUILD_CHECK_COST:  # None: a step of planning
                if batch:
                    self.apply(batch, planned.serial)  # encodes: the cost is spent here
                batch, cost = [], 0
                if time.perf_counter() - sliced >= REBUILD_SLICE_S:
                    await asyncio.sleep(0)
                    sliced = time.perf_counter()
        self.apply(batch, planned.serial)  # the rest; with no update, the serial and synced
        self._after_rebuild(planned, started)

    def _plan_rebuild(self) -> Rebuild | None:
        planned = plan_rebuild(
            self.planner,
            self.catalog.clusters(),
            self.health(),
            self.catalog.local.namespaces,
            (self.front.zone.serial, self.front.zone.synced),
            time.time(),
            drained_clusters(self.catalog.states()),
        )
        if planned is not None and planned.unreachable:
            log.warning("clusters unreachable: %s", some(planned.unreachable))
        return planned

    def _after_rebuild(self, planned: Rebuild, started: float) -> None:
        if newly_failed_open := planned.newly_failed_open(self.planner):
            log.warning(
                "failing open for %s: no reachable cluster has a ready endpoint",
                some(newly_failed_open),
            )
        self.stats.failed_open = tuple(sorted(self.planner.failed_open))
        for key, problem in self.planner.take_problems():
            log.warning("routing policy of %s: %s", key, problem.message)
            self.stats.policy_problems[problem.reason] += 1
        self.stats.zone_rebuilds += 1
        elapsed = time.perf_counter() - started
        for observe in self.observers:
            observe(elapsed)

    def apply(self, updates: list[Update], serial: int) -> None:
        self.front.apply(updates, serial)
        self.heap.made(len(updates))
