"""Room in the SWIM member table: how many members it holds, and who makes way (pure).

The table holds at most ``max_members_per_cluster`` members of one cluster,
``max_clusters`` distinct clusters and ``max_members`` members in all (this agent
included; ``mesh.model`` gives the reasons for the defaults). A new member that finds its
limit reached takes the place of members that are down (dead or left), never of a live one:

- its cluster is full: the member of that cluster down the longest is forgotten;
- it is of a new cluster and the table holds ``max_clusters``: a cluster whose members are
  all down is forgotten whole (the one whose member went down first);
- the table holds ``max_members``: the member down the longest is forgotten.

When no member can make way the new one is refused and counted by reason
(``cluster_full``, ``table_full``). A refused member is no loss to the protocol: a live one
is announced again (each push-pull carries it), and it finds room once a member is down.

Bookkeeping is per cluster and in order of going down, so each decision costs at most a
cluster's members or the members down, never a pass over the whole table.
"""

from __future__ import annotations

from collections.abc import Mapping


class Room:
    def __init__(self, per_cluster: int, clusters: int, members: int, self_id: str) -> None:
        self.per_cluster = per_cluster
        self.clusters = clusters
        self.members = members
        self.self_id = self_id
        self.refused: dict[str, int] = {}  # reason -> members refused
        self._of: dict[str, dict[str, None]] = {}  # cluster -> its member ids
        self._live_in: dict[str, int] = {}  # cluster -> its live members
        self._down: dict[str, str] = {}  # member id -> cluster, in the order they went down
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def cluster_count(self) -> int:
        return len(self._of)

    def held(self, member_id: str, cluster: str, live: bool) -> None:
        """``member_id`` is held now, in ``cluster``, live or down (new, or changed)."""
        self.released(member_id, cluster)
        self._of.setdefault(cluster, {})[member_id] = None
        self._count += 1
        if live or member_id == self.self_id:  # this agent never makes way, even leaving
            self._live_in[cluster] = self._live_in.get(cluster, 0) + 1
        else:
            self._down[member_id] = cluster

    def released(self, member_id: str, cluster: str) -> None:
        """``member_id`` is no longer held (or is about to change)."""
        members = self._of.get(cluster)
        if members is None or member_id not in members:
            return
        del members[member_id]
        self._count -= 1
        if member_id in self._down:
            del self._down[member_id]
        else:
            self._live_in[cluster] -= 1
        if not members:
            del self._of[cluster]
            self._live_in.pop(cluster, None)

    def make_way(self, cluster: str, changed_at: Mapping[str, float]) -> list[str] | None:
        """The members to forget so that one new member of ``cluster`` fits (often none), or
        None when it must be refused (counted). The caller forgets them."""
        gone: list[str] = []
        mine = self._of.get(cluster)
        if mine is not None and len(mine) >= self.per_cluster:
            down = [m for m in mine if m in self._down]
            if not down:
                return self._refuse("cluster_full")
            gone.append(min(down, key=lambda m: (changed_at[m], m)))
        elif mine is None and len(self._of) >= self.clusters:
            whole = next((c for c in self._down.values() if not self._live_in.get(c)), None)
            if whole is None:
                return self._refuse("table_full")
            gone.extend(self._of[whole])
        if not gone and self._count >= self.members:
            if not self._down:
                return self._refuse("table_full")
            gone.append(next(iter(self._down)))
        return gone

    def _refuse(self, reason: str) -> list[str] | None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return None
