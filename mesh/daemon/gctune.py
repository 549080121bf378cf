"""The garbage collector's set-up for a long-running agent: what the collector walks, and
how often.

Why: CPython's cyclic collector stops the event loop, which is the DNS server, for as long
as a collection takes. A full (generation 2) collection walks every tracked object, and an
agent's heap is mostly long-lived: the catalog, the routing state and the zone's encoded
answers, which only grow with the clusterset. ``bench/tail_probe.py`` measured a 22 to 33 ms
full collection at start-up with 1,000 services (90,000 tracked objects), growing with the
heap; under churn (a manifests file rewritten every second) the collections come back
during the load, after each rebuild's allocations. (An idle agent answering queries
allocates almost no tracked objects: no collection at all during 5 s at 10,000 q/s.)

What this does, from ``serve`` once the agent has started:

- ``gc.freeze()`` once the first rebuild after sync is done, and again after each rebuild
  that took ``BIG_REBUILD_S`` or more (a catch-up, a large change): what was alive then
  moves to the permanent generation, which no collection walks, so a full collection costs
  what the young objects cost, not what the heap costs. Before each freeze ``gc.collect(1)``
  clears the young cyclic garbage, so what freezing can keep alive for good is only cyclic
  garbage that had already reached the oldest generation (the heap it leaks is bounded by
  what one rebuild leaves behind; objects freed by reference counting are freed as always).
- Raises the first generation's threshold from 700 to ``GEN0_THRESHOLD`` allocations, so a
  rebuild's burst of allocations triggers tens of young collections instead of hundreds.
  Young collections stay short: they walk only objects allocated since the last one.

``mesh.daemon.heap`` freezes too, while data moves (every 1,000 services' worth made);
this module adds the thresholds and the freeze after a synced rebuild. Both only ever move
live objects to the permanent generation; one policy would be simpler (issue 17's note).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Protocol

BIG_REBUILD_S = 0.05  # a rebuild this long allocated enough to be worth freezing after
GEN0_THRESHOLD = 7000  # CPython's default is 700; its gen1 and gen2 thresholds stay 10


class Rebuilding(Protocol):
    synced: bool
    rebuild_observers: list[Callable[[float], None]]


class Tuner:
    """Called after every rebuild with its duration; freezes the heap when it is worth it."""

    def __init__(self, agent: Rebuilding) -> None:
        self.agent = agent
        self.freezes = 0

    def after_rebuild(self, elapsed_s: float) -> None:
        if not self.agent.synced:
            return
        if self.freezes == 0 or elapsed_s >= BIG_REBUILD_S:
            gc.collect(1)
            gc.freeze()
            self.freezes += 1


def install(agent: Rebuilding) -> Tuner:
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)
    tuner = Tuner(agent)
    agent.rebuild_observers.append(tuner.after_rebuild)
    return tuner
