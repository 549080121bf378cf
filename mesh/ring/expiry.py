"""When to forget a cluster that is gone for good.

A cluster that leaves DNS answers (every agent of it dead or left, or unreachable from
here) keeps its records, so that it comes back without a resync when it answers again, and
so that a service only it exported can still fail open to its last-known endpoints. A
cluster that never comes back (decommissioned, renamed) must not stay forever: once it has
been out of this agent's answers for ``after_s`` without a break, it is forgotten — its
records dropped from the record store (which then refuses its old generations, so peers
that have not forgotten it yet cannot hand it back) and from the catalog. A cluster that
returns later does so with a new generation and is taken afresh.

The default is a day, as Serf reaps failed members after 24 hours. Pure: ``now`` is
passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model import ClusterId

DEFAULT_CLUSTER_EXPIRY_S = 86400.0


class ClusterExpiry:
    def __init__(self, after_s: float = DEFAULT_CLUSTER_EXPIRY_S) -> None:
        self.after_s = after_s
        self._down_since: dict[ClusterId, float] = {}
        self.forgotten = 0

    def observe(
        self, clusters: Iterable[ClusterId], healthy: set[ClusterId], now: float
    ) -> list[ClusterId]:
        """The clusters (among ``clusters``, all but ``healthy`` counting as down) that
        have now been down for ``after_s`` without a break: forget them."""
        present = set(clusters)
        for gone in [c for c in self._down_since if c not in present]:
            del self._down_since[gone]
        expired = []
        for cluster in sorted(present):
            if cluster in healthy:
                self._down_since.pop(cluster, None)
                continue
            since = self._down_since.setdefault(cluster, now)
            if now - since >= self.after_s:
                del self._down_since[cluster]
                expired.append(cluster)
        self.forgotten += len(expired)
        return expired
