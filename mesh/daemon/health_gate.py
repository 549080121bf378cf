"""When the agent's health loop must take a full look (pure: inputs and ``now`` in).

The health loop (``mesh.daemon.agent``) polls ten times a second: a cluster that answers
again, a replica to switch to, or a drain must reach the answers within a poll. A full look
walks every peer and every cluster (re-pick each cluster's replica, work out which clusters
are healthy, tell SWIM of new agents, expire old clusters): on a ring of 50 clusters, ten
times a second, that was 44% of an idle agent's Python time (``bench/RESULTS.md``).

A look reads nothing but the catalog's states, the peer table's evidence, SWIM's events,
whether the first sync is done, and the clock. The first four have revisions; the clock
only matters at the moments ``PeerTable.next_change`` names (a silent peer's timeout ends,
an attempt becomes overdue). So a poll whose revisions equal the last look's, before the
next such moment, would compute what the last look did, and is skipped. What has no
revision (a Lease's drain decision, a SWIM member reaped after a day, cluster expiry) is
seen by a full look at least every ``full_s``.
"""

from __future__ import annotations

from collections.abc import Hashable

FULL_S = 0.5  # longest between two full looks whatever the revisions say
PAST_S = 0.001  # a look this long after a peer's timeout ends (``reachable`` is <= it)


class HealthGate:
    def __init__(self, full_s: float = FULL_S) -> None:
        self.full_s = full_s
        self._inputs: Hashable | None = None
        self.due = 0.0  # the next full look, whatever the inputs say

    def must_look(self, inputs: Hashable, now: float) -> bool:
        """True when a full look is due: an input moved since the last, or its time came."""
        return inputs != self._inputs or now >= self.due

    def looked(self, inputs: Hashable, now: float, next_change: float | None) -> None:
        """A full look of ``inputs`` was taken at ``now``; the peer table's next moment of
        change without an event is ``next_change`` (None: none)."""
        self._inputs = inputs
        self.due = now + self.full_s
        if next_change is not None:
            self.due = min(self.due, next_change + PAST_S)

    def wait(self, now: float, poll_s: float) -> float:
        """Seconds until the next poll: ``poll_s``, or less when a full look is due sooner."""
        return max(0.0, min(poll_s, self.due - now))
