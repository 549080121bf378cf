"""One zone rebuild, decided (pure): which clusters answers may use, what changes in the
zone, under which serial, and what is worth telling the operator.

The agent (``mesh.daemon.agent``) calls ``answerable`` and ``plan_rebuild`` whenever the
catalog or cluster health changed, draws the updates one at a time (each service's policy
is run as it is drawn, and the plan is prepared in steps too: a rebuild of every service is
seconds of work) and applies them to the zone in bounded steps, and logs what ``Rebuild``
names. Nothing here reads a clock or
touches the zone.

Rules:

- a cluster is answered while this agent reaches one of its agents, and the SWIM view does
  not hold every agent of it dead or left, unless this agent exchanged with it within the
  last two rounds (a member wrongly declared dead, by slow indirect probes or a one-way cut
  elsewhere, stays in the answers of agents that still reach it; a killed one stops
  answering well before SWIM's verdict arrives, so that verdict still counts); this
  cluster is always answered;
- the serial follows RFC 1982: it changes with the data, and only moves forward (the
  wall-clock second, or the last serial plus one when that is not larger);
- nothing is rebuilt when nothing is pending and the zone has already been built once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass

from mesh.model import ClusterId, ClusterState, ServiceKey
from mesh.routing.planner import AnswerPlanner, Update


def answerable(
    reachable: Set[ClusterId],
    up: Mapping[ClusterId, bool],
    in_contact: Set[ClusterId],
    local: ClusterId,
) -> set[ClusterId]:
    """The clusters answers may use: ``reachable`` by this agent's own exchanges, less those
    SWIM holds down (``up`` is False) that this agent has not been ``in_contact`` with."""
    return {c for c in reachable if c == local or up.get(c, True) or c in in_contact}


@dataclass(frozen=True, slots=True)
class Rebuild:
    updates: Iterator[Update | None]  # drawn by the caller; None: a step of preparation
    serial: int
    unreachable: list[ClusterId]  # clusters that just left the answers, sorted
    failed_open_before: frozenset[ServiceKey]

    def newly_failed_open(self, planner: AnswerPlanner) -> list[ServiceKey]:
        """Services that started failing open in this rebuild, sorted; once every update
        has been drawn."""
        return sorted(planner.failed_open - self.failed_open_before)


def plan_rebuild(
    planner: AnswerPlanner,
    states: list[ClusterState],
    healthy: Set[ClusterId],
    local_namespaces: Set[str],
    zone: tuple[int, bool],
    wall_s: float,
    drained: Set[ClusterId] = frozenset(),
) -> Rebuild | None:
    """The zone updates for what changed since the last plan; None when there is nothing to
    do. ``zone`` is the zone's (serial, built once); ``wall_s`` is epoch seconds;
    ``drained``: the clusters that announce they take no traffic."""
    serial_now, built = zone
    gone = planner.healthy - healthy
    flipped = planner.note_health(healthy, states)
    planner.note_drained(drained, states)
    if not planner.pending and built:
        return None
    before = frozenset(planner.failed_open)
    updates = planner.plan_steps(states, local_namespaces)
    serial = max(serial_now + 1, int(wall_s)) & 0xFFFFFFFF
    return Rebuild(updates, serial, sorted(gone) if flipped else [], before)


def some(names: Iterable[object], shown: int = 10) -> str:
    """``names`` for a log line: the first ``shown`` and how many more."""
    listed = [str(n) for n in names]
    more = len(listed) - shown
    text = ", ".join(listed[:shown])
    return f"{text} and {more} more" if more > 0 else text
