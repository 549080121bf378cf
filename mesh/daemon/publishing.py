"""This cluster's changes made into ring records in bounded steps, off the source's call.

``mesh.wire.record_codec.Publisher`` writes (and, with TLS, signs: about 60 us each) one
record per changed service. The first load of 20,000 services, or an edit that touches
all of them, would hold the event loop for a second or more in one call, and DNS, SWIM
and gossip would wait. ``LocalPublisher`` instead collects what changed (``note``: cheap,
called from the source's delivery) and a task publishes it a slice at a time, letting the
loop turn whenever ``slice_s`` has passed; a change noted meanwhile joins the work still to
do. Every slice takes its records from the newest local state, and ends with a signed head
that covers exactly the records written so far, so a peer that pulls mid-way gets a
consistent copy that is merely not the newest yet. ``on_published`` runs when nothing is
left (the ring nudges its peers then); ``on_progress`` after each slice, with its size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mesh.model import ClusterState, ServiceKey
from mesh.ring.catalog import Change
from mesh.wire.record_codec import Publisher

PUBLISH_SLICE_S = 0.02  # longest a publish runs before letting the event loop turn
PUBLISH_CHECK = 50  # records written between two looks at the clock


class LocalPublisher:
    """Publishes noted local changes with ``publisher`` in slices (see the module doc)."""

    def __init__(
        self,
        publisher: Publisher,
        local: Callable[[], ClusterState],
        on_published: Callable[[], None],
        on_progress: Callable[[int], None] | None = None,
        slice_s: float = PUBLISH_SLICE_S,
    ) -> None:
        self.publisher = publisher
        self._local = local
        self._on_published = on_published
        self._on_progress = on_progress
        self._slice_s = slice_s
        self._services: set[ServiceKey] = set()
        self._cluster = False
        self._announced = False  # the cluster record's news (a drain, addresses)
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        """Services noted and not yet published."""
        return len(self._services)

    def note(self, change: Change) -> None:
        self._services |= change.services
        self._cluster = self._cluster or change.cluster
        self._announced = self._announced or change.announced
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.publish_pending()

    async def publish_pending(self) -> None:
        """Publish everything noted, including what is noted while this runs."""
        sliced = time.perf_counter()
        while self._services or self._cluster or self._announced:
            todo, cluster, announced = list(self._services), self._cluster, self._announced
            self._services, self._cluster, self._announced = set(), False, False
            for start in range(0, max(len(todo), 1), PUBLISH_CHECK):
                if time.perf_counter() - sliced >= self._slice_s:
                    await asyncio.sleep(0)
                    sliced = time.perf_counter()
                state = self._local()  # the newest: a service changed meanwhile goes as it is now
                batch = frozenset(todo[start : start + PUBLISH_CHECK])
                first = start == 0
                change = Change(state.cluster_id, batch, cluster and first, announced and first)
                self.publisher.publish(state, change, asyncio.get_running_loop().time())
                if self._on_progress is not None:
                    self._on_progress(len(batch))
        self._on_published()
