"""``meshd drill``, decided (pure): which service to watch, which agents to ask, when each
member's answers moved, and the report. The adapter (``mesh.daemon.drill``) does the HTTP
and DNS and feeds this module what it saw, with times in seconds since the drain (or the
undrain) was sent.

Rules:

- the service: ``--service``, or the first (by name) that the drained cluster exports with
  a ready endpoint together with at least one other healthy, undrained cluster with one;
  it must be told apart in answers: some of the drained cluster's ready addresses belong
  to no other exporter;
- members: every agent replica the ring holds alive, at the DNS address it announces;
- a member's answers *include* the cluster when any address in a poll (a few queries in a
  row: weighted answers rotate) is one of the cluster's own;
- drained: the time of the first poll of a run of polls without the cluster that lasted
  ``SETTLE_S`` (or until the deadline); a poll with it starts over. Restored: the first poll
  with it again. A member whose answers did not include the cluster before the drain (it
  answers from another tier) moved at 0 both ways; ``in_answers_before`` says so;
- a member that did not move within the timeout has ``null``; the drill passes when no
  member has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SETTLE_S = 1.0  # a run of polls without the cluster must last this long to count
POLL_QUERIES = 4  # queries per poll: a weighted answer leads with each cluster in turn


class DrillRefusedError(Exception):
    """The drill cannot run as asked (exit status 2); the message says why."""


def choose_service(state: Mapping[str, Any], cluster: str, wanted: str | None) -> str:
    """The service to watch (see the module docstring), or ``DrillRefusedError``."""
    clusters = {c["cluster"]: c for c in state.get("clusters", [])}
    if cluster not in clusters:
        known = ", ".join(sorted(clusters)) or "none"
        raise DrillRefusedError(f"no cluster {cluster!r} in this agent's view (it knows: {known})")
    if cluster in state.get("drained", []):
        raise DrillRefusedError(
            f"{cluster} is drained already; a drill ends with an undrain, so undrain it first"
        )
    usable = {c for c, v in clusters.items() if v["healthy"] and c not in state.get("drained", [])}
    services: Mapping[str, Any] = state.get("services", {})
    candidates = [
        key
        for key, svc in sorted(services.items())
        if svc["clusters"].get(cluster, {}).get("ready", 0) > 0
        and any(v["ready"] > 0 and c in usable for c, v in svc["clusters"].items() if c != cluster)
    ]
    if wanted is None:
        if not candidates:
            raise DrillRefusedError(
                f"{cluster} exports no service with a ready endpoint that another healthy "
                "cluster also exports: a drain would leave nothing to fail over to"
            )
        return candidates[0]
    if wanted not in services or cluster not in services[wanted]["clusters"]:
        raise DrillRefusedError(f"{cluster} does not export {wanted}")
    if wanted not in candidates:
        raise DrillRefusedError(
            f"{wanted}: {cluster} has no ready endpoint, or no other healthy cluster has one "
            "to fail over to"
        )
    return wanted


def own_addresses(addresses: Mapping[str, Iterable[str]], cluster: str) -> frozenset[str]:
    """The cluster's ready addresses that no other exporter has (``DrillRefusedError`` when
    there are none: its answers could not be told apart)."""
    others = {a for c, found in addresses.items() if c != cluster for a in found}
    own = frozenset(a for a in addresses.get(cluster, ()) if a not in others)
    if not own:
        raise DrillRefusedError(
            f"every ready address of {cluster} is also another cluster's: answers cannot show "
            "whether it is in them"
        )
    return own


@dataclass(frozen=True, slots=True)
class Member:
    cluster: str
    replica: str
    dns: str  # HOST:PORT


def members_of(state: Mapping[str, Any]) -> tuple[list[Member], list[str]]:
    """The live agents with a DNS address, and one line for each live agent without one."""
    found, missing = [], []
    for agent in state.get("agents", []):
        if not agent.get("live"):
            continue
        name = f"{agent['cluster']}/{agent['replica'] or '-'}"
        if agent.get("dns"):
            found.append(Member(agent["cluster"], agent["replica"], agent["dns"]))
        else:
            missing.append(f"{name} announces no DNS address (an older meshd?)")
    return sorted(found, key=lambda m: (m.cluster, m.replica)), missing


@dataclass(slots=True)
class Watch:
    """One member through the drill; fed polls (``None``: no answer came)."""

    member: Member
    included_before: bool = False
    answered_before: bool = False
    ttl_s: int = 0
    drained_s: float | None = None
    restored_s: float | None = None
    _clean_since: float | None = field(default=None, repr=False)

    def baseline(self, included: bool | None, ttl_s: int | None) -> None:
        if included is None:
            return
        self.answered_before = True
        self.included_before |= included
        self.ttl_s = max(self.ttl_s, ttl_s or 0)

    def draining(self, t: float, included: bool | None) -> None:
        if not self.included_before and self.answered_before:
            self.drained_s = 0.0
        elif included:
            self._clean_since = None
        elif included is False and self._clean_since is None:
            self._clean_since = t
        if self._clean_since is not None and t - self._clean_since >= SETTLE_S:
            self.drained_s = self._clean_since

    def drained_done(self) -> bool:
        return self.drained_s is not None

    def deadline(self) -> None:
        """The time is up: a run without the cluster that is still going counts."""
        if self.drained_s is None and self._clean_since is not None:
            self.drained_s = self._clean_since

    def restoring(self, t: float, included: bool | None) -> None:
        if self.restored_s is not None:
            return
        if not self.included_before and self.answered_before:
            self.restored_s = 0.0
        elif included:
            self.restored_s = t


def _worst(values: Iterable[float | None]) -> float | None:
    found = list(values)
    if not found or any(v is None for v in found):
        return None
    return round(max(v for v in found if v is not None), 3)


def report(cluster: str, service: str, watches: list[Watch]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "cluster": cluster,
        "service": service,
        "members": [
            {
                "cluster": w.member.cluster,
                "replica": w.member.replica,
                "drained_s": None if w.drained_s is None else round(w.drained_s, 3),
                "restored_s": None if w.restored_s is None else round(w.restored_s, 3),
                "ttl_s": w.ttl_s,
                "in_answers_before": w.included_before,
            }
            for w in watches
        ],
        "max_drained_s": _worst(w.drained_s for w in watches),
        "max_restored_s": _worst(w.restored_s for w in watches),
    }


def passed(document: Mapping[str, Any]) -> bool:
    return all(
        m["drained_s"] is not None and m["restored_s"] is not None for m in document["members"]
    )


def render(document: Mapping[str, Any], timeout_s: float) -> str:
    """The table ``meshd drill`` prints."""

    def seconds(value: float | None) -> str:
        return f"> {timeout_s:g}" if value is None else f"{value:.2f}"

    rows = [["MEMBER", "DRAINED S", "RESTORED S", "TTL S", "WORST CASE S", "NOTE"]]
    for m in document["members"]:
        worst = "-" if m["drained_s"] is None else f"{m['drained_s'] + m['ttl_s']:.2f}"
        note = "" if m["in_answers_before"] else f"{document['cluster']} not in its answers before"
        rows.append(
            [
                f"{m['cluster']}/{m['replica'] or '-'}",
                seconds(m["drained_s"]),
                seconds(m["restored_s"]),
                str(m["ttl_s"]),
                worst,
                note,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    verdict = (
        "passed" if passed(document) else f"FAILED: some member did not move in {timeout_s:g}s"
    )
    return (
        f"drill: drained {document['cluster']}, watched {document['service']}\n\n{table}\n\n"
        f"max drained {seconds(document['max_drained_s'])} s, max restored "
        f"{seconds(document['max_restored_s'])} s; a client that cached the last answer may "
        f"use {document['cluster']} for up to drained + TTL (WORST CASE S). {verdict}"
    )
