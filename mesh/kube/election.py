"""Leader election over a ``coordination.k8s.io/v1`` Lease: one writer per cluster.

Pure: records read from the API and ``now`` in, what to write and whether we lead out. The
adapter (``mesh.kube.lease``) does the HTTP calls and pumps this machine.

The rules are client-go's ``tools/leaderelection`` (``LeaseLock``), with its defaults:

- *lease duration* (15 s): a follower takes over only when the record it reads has not
  changed for this long, measured on its own clock from when it saw the change (not from
  the record's ``renewTime``, which another node's clock wrote). The record's own
  ``leaseDurationSeconds`` is used when set, as client-go does;
- *renew deadline* (10 s): the leader renews every retry period; when it has not renewed
  successfully for this long, it stops leading. Being shorter than the lease duration, the
  old leader stops writing at least 5 s before anyone else may start;
- *retry period* (2 s): the pace of attempts, for the leader and for followers.

Writes are optimistic: every update carries the resourceVersion read, so two candidates
that race for an expired lease cannot both win; the loser gets 409, reads again and sees
the winner. A leader whose renewal gets 409 reads again too: if someone else holds the
lease now, it has lost it, at once. ``is_leader(now)`` is the gate for every write the
leader makes: it turns false as soon as the renew deadline passes, even if the adapter's
loop is late. ``release`` hands the lease over on a clean shutdown (holder empty, duration
1 s), so a follower takes over at its next attempt instead of a lease duration later.

Times: ``now`` is a monotonic clock in seconds; ``wall`` (epoch seconds) only fills in the
record's ``acquireTime``/``renewTime``, which are informational.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "LEASE_API_VERSION",
    "Action",
    "LeaderElection",
    "LeaseRecord",
    "LeaseTimings",
    "lease_object",
    "micro_time",
]

LEASE_API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class LeaseTimings:
    """client-go's defaults (``leaderelection.LeaderElectionConfig``); every one settable."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        # client-go's own checks: lease > deadline > 1.2 x retry (its jitter factor) > 0.
        if not 0 < self.retry_period_s * 1.2 < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "lease timings need lease_duration_s > renew_deadline_s > 1.2 x retry_period_s"
                f" > 0, got {self.lease_duration_s}, {self.renew_deadline_s}, "
                f"{self.retry_period_s}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The part of a Lease that leader election reads and writes."""

    holder: str = ""
    duration_s: int = 0  # spec.leaseDurationSeconds
    acquire_time: str = ""  # spec.acquireTime, as written (MicroTime)
    renew_time: str = ""  # spec.renewTime
    transitions: int = 0  # spec.leaseTransitions
    resource_version: str = ""  # metadata.resourceVersion; "" for a record not yet created
    # metadata.annotations, kept through every write (a PUT replaces the whole object):
    # meshd keeps a cluster's drain there (mesh.daemon.announce).
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        return cls(
            holder=_text(spec.get("holderIdentity")),
            duration_s=_count(spec.get("leaseDurationSeconds")),
            acquire_time=_text(spec.get("acquireTime")),
            renew_time=_text(spec.get("renewTime")),
            transitions=_count(spec.get("leaseTransitions")),
            resource_version=_text(meta.get("resourceVersion")),
            annotations=_annotations(meta.get("annotations")),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


def _annotations(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple(
        sorted((k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str))
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def micro_time(epoch_s: float) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_object(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease to create (no resourceVersion) or to update (with the one read)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    if record.annotations:
        metadata["annotations"] = dict(record.annotations)
    return {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": metadata,
        "spec": record.spec(),
    }


class Action(enum.Enum):
    READ = "read"  # get the Lease (404 means there is none), then ask again
    CREATE = "create"
    UPDATE = "update"  # renew, or take over, with the resourceVersion read
    WAIT = "wait"  # someone else holds a live lease


class LeaderElection:
    """The election state of one candidate (one agent replica)."""

    def __init__(self, identity: str, timings: LeaseTimings | None = None) -> None:
        if not identity:
            raise ValueError("a leader-election identity must not be empty")
        self.identity = identity
        self.timings = timings or LeaseTimings()
        self.record: LeaseRecord | None = None  # last record read or written
        self.observed_at = -math.inf  # when `record` last changed, on our clock
        self.fresh = False  # `record` is what the API holds, as far as we know
        self.leading = False
        self.renewed_at = -math.inf  # when our last successful renewal was sent
        self.attempted_at = -math.inf  # when our last attempt (of any outcome) ended

    # ------------------------------------------------------------------ inputs

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """A record read from the API (None: there is no Lease)."""
        if record != self.record or not math.isfinite(self.observed_at):
            self.observed_at = now
        self.record, self.fresh = record, True
        if self.leading and (record is None or record.holder != self.identity):
            self.leading = False  # someone else holds it, or it was deleted: stop at once

    def written(self, record: LeaseRecord, now: float) -> None:
        """Our create or update succeeded; ``record`` is what the API answered. ``now`` is
        when the request was *sent*: the server may have committed it any time after, so
        leadership is counted from then (an answer that is slow to arrive must not extend
        it past what a follower, watching the record, will allow)."""
        self.record, self.observed_at, self.fresh = record, now, True
        if record.holder == self.identity:
            self.leading, self.renewed_at = True, now

    def failed(self, now: float, conflict: bool) -> None:
        """A write failed; ``conflict`` for a 409 (someone else wrote): read before retrying."""
        if conflict:
            self.fresh = False
        self.check(now)

    def released(self) -> None:
        """The release was written (or we gave up on it): we no longer lead."""
        self.leading = False
        self.fresh = False

    def check(self, now: float) -> None:
        """Stop leading once the renew deadline has passed without a renewal."""
        if self.leading and now - self.renewed_at >= self.timings.renew_deadline_s:
            self.leading = False

    # ------------------------------------------------------------------ outputs

    def is_leader(self, now: float) -> bool:
        """True while we hold the lease and renewed it within the renew deadline."""
        return self.leading and now - self.renewed_at < self.timings.renew_deadline_s

    def time_left(self, now: float) -> float:
        """How long we may still write without a renewal (0 when not leading): the longest
        a write may take, so none lands after the deadline."""
        if not self.is_leader(now):
            return 0.0
        return self.renewed_at + self.timings.renew_deadline_s - now

    def expired(self, now: float) -> bool:
        """The record read has not changed for its lease duration (on our clock)."""
        record = self.record
        if record is None:
            return True
        duration = record.duration_s or self.timings.lease_duration_s
        return now - self.observed_at >= duration

    def next_action(self, now: float, wall: float) -> tuple[Action, LeaseRecord | None]:
        """What to do now: read, write this record, or wait for the next retry."""
        self.check(now)
        if not self.fresh:
            return Action.READ, None
        record = self.record
        stamp = micro_time(wall)
        duration = max(1, math.ceil(self.timings.lease_duration_s))
        if record is None:
            mine = LeaseRecord(self.identity, duration, stamp, stamp, 0, "")
            return Action.CREATE, mine
        if record.holder == self.identity:
            return Action.UPDATE, replace(record, duration_s=duration, renew_time=stamp)
        if not record.holder or self.expired(now):
            mine = LeaseRecord(
                self.identity,
                duration,
                stamp,
                stamp,
                record.transitions + 1,
                record.resource_version,
                record.annotations,
            )
            return Action.UPDATE, mine
        return Action.WAIT, None

    def attempted(self, now: float) -> None:
        """An attempt is over: a follower reads again before the next one (the holder
        renews behind its back); the leader renews from the record it wrote."""
        self.attempted_at = now
        if not self.leading:
            self.fresh = False

    def release(self, wall: float) -> LeaseRecord | None:
        """The record that gives the lease up (client-go's ReleaseOnCancel), if we hold it."""
        record = self.record
        if not self.leading or record is None or record.holder != self.identity:
            return None
        stamp = micro_time(wall)
        return replace(record, holder="", duration_s=1, acquire_time=stamp, renew_time=stamp)

    def next_attempt(self, now: float) -> float:
        """When to try again: a retry period after the last attempt (a failed renewal is
        retried at that pace too, never in a tight loop), or after now for a follower."""
        if self.leading:
            last = max(self.renewed_at, self.attempted_at)
            return max(now, last + self.timings.retry_period_s)
        return now + self.timings.retry_period_s
