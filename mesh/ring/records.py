"""Per-service records and their anti-entropy (Scuttlebutt, with tombstones and resets).

Theory of operation. Every origin (one agent replica of one cluster) owns a set of
records: one per service it exports and one for the cluster itself (its region, zone and
namespaces). Only the origin writes them. Each new record gets the next ``version`` of the
origin's current ``generation`` (a restart starts a larger generation), so within a
generation versions are unique and totally ordered. A deletion is a record too, a
tombstone, kept by every holder for ``tombstone_ttl`` and then purged; purging a tombstone
raises the holder's ``floor``.

A holder's copy of an origin is an ``OriginLog``; its ``progress`` says "I hold every
record of this generation up to this version, or its replacement" (tombstones at or below
its ``floor`` may be gone). That invariant is kept by sending records in ascending version
only, and taking a chunk only when it continues what the holder has (``from_version <=
progress``). Hence a digest per origin is a few numbers: generation, progress, the version
of the last head the copy was checked against, and for a copy built aside the snapshot it
is built from. The delta for a peer is "every record above its progress", cut anywhere
into chunks bounded in bytes and records: the next exchange continues from where the last
one stopped, and origins take turns at the front of a message so one large catch-up does
not starve the others' news.

Three kinds of stream, chosen by the sender from the receiver's digest
(``mesh.ring.record_plan``):

- delta: the receiver holds this generation at ``p >= floor``: every record above ``p``,
  tombstones included, applied in place. Records at or below the receiver's progress are
  ignored (and not even verified), which is what keeps a replayed old record from bringing
  back a service whose tombstone has expired;
- reset: the receiver holds an older generation, nothing, or a version below the sender's
  floor (it missed tombstones the sender has purged): every *live* record of the sender's
  copy, a snapshot at the sender's progress (``target``). The receiver builds this copy
  aside (``partial`` in its digest) and swaps it in whole once it reaches a head and checks
  out; until then answers use the old copy, so a restarted or long-partitioned origin never
  blinks out of DNS while its state streams in. Another holder continues a copy being built
  only from that very snapshot (live records again) or from a newer copy that still has
  every tombstone above the copy's progress (a delta); one that is behind leaves it alone.
  A reset of an older snapshot than the copy in use, or than the copy being built, is
  refused (no rollback), and so is one of an older generation; except from the origin
  itself (``Chunk.direct``), whose own copy is the truth: a copy that claims more than it
  holds is made up (without TLS) or from before it went back, and the origin's reset of
  its own copy is built aside and swapped in (``mesh.ring.record_plan``). A relay's
  chunks never roll a copy back. A copy built from a reset has no tombstones below its
  snapshot, so its floor is raised to it;
- nothing: the receiver is as far as the sender or further (or lacks only the head: then
  the head alone).

Each copy is checked when it reaches the origin's ``Head``: the origin's count of live
records and their set hash (sum modulo 2^256 of SHA-256 of each live record's bytes). A
relay that withholds or replays (correctly signed) records thus produces a copy that fails
the check. A failed copy in use keeps serving (what it took is reported, so answers follow
it) but its digest asks for a reset (version 0); a failed copy built aside is discarded.

Pure: records come in decoded and already verified (``mesh.wire.record_codec``); time is
passed in; nothing here does IO.
"""

from __future__ import annotations

from dataclasses import replace

from mesh.model import ClusterId
from mesh.ring.catalog import Digest
from mesh.ring.origin_room import DEFAULT_LIMITS, OriginLimits, OriginRoom
from mesh.ring.record_log import (
    CHUNK_OVERHEAD,
    HASH_MODULUS,
    Applied,
    Chunk,
    ClusterInfo,
    Head,
    Origin,
    OriginLog,
    OutChunk,
    Record,
    Slot,
    StoreStats,
)
from mesh.ring.record_plan import head_mark, plan

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_TOMBSTONE_TTL_S",
    "HASH_MODULUS",
    "MAX_RECORDS_PER_MESSAGE",
    "Applied",
    "Chunk",
    "ClusterInfo",
    "Head",
    "OriginLog",
    "OutChunk",
    "Record",
    "RecordStore",
    "Slot",
]

DEFAULT_TOMBSTONE_TTL_S = 3600.0  # a peer away longer than this gets a reset, not a delta
# Records in one message, in bytes: well under gRPC's 4 MiB default limit. The receiver
# opens and applies a message in slices of a few hundred records, one event-loop step each
# (mesh.wire.chunk_slices), so this bounds memory per message, not the loop's stalls.
DEFAULT_CHUNK_BYTES = 256 * 1024
# Records in one message, at most: bounds the signatures one message makes a receiver check
# (about 60 us each). A signed record is over 140 bytes, so 256 KiB holds under 2,000.
MAX_RECORDS_PER_MESSAGE = 20_000


class RecordStore:
    """Every origin's copy held by this agent (its own among them), and the exchange rules."""

    def __init__(
        self,
        local: OriginLog,
        *,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL_S,
        limits: OriginLimits = DEFAULT_LIMITS,
    ):
        self.local = local
        self.tombstone_ttl = tombstone_ttl
        self.limits = limits
        self.logs: dict[Origin, OriginLog] = {local.origin: local}
        self.pending: dict[Origin, OriginLog] = {}  # copies built aside
        self.forgotten: dict[Origin, int] = {}  # origin -> last generation forgotten
        self.room = OriginRoom(local.origin, limits)
        self._turn = 0
        self.stats = StoreStats()

    # --- what we hold ------------------------------------------------------------------

    def digests(self) -> list[Digest]:
        out = []
        for origin in sorted(self.logs.keys() | self.pending.keys()):
            building = self.pending.get(origin)
            if building is not None:
                out.append(
                    Digest(
                        origin[0],
                        building.generation,
                        building.progress,
                        origin[1],
                        partial=True,
                        target=building.target,
                    )
                )
                continue
            log = self.logs[origin]
            version = 0 if log.broken else log.progress
            checked, head_hash = (0, b"") if log.head is None else head_mark(log.head)
            out.append(
                Digest(origin[0], log.generation, version, origin[1], False, checked, 0, head_hash)
            )
        return out

    def forget(self, cluster_id: ClusterId) -> list[Origin]:
        """Drop every copy of ``cluster_id`` (gone for good, ``mesh.ring.expiry``), and refuse
        its generations held so far, so that peers that still hold them cannot hand them
        back; a new generation (the cluster restarted) is taken as usual."""
        origins = [o for o in self.logs.keys() | self.pending.keys() if o[0] == cluster_id]
        for origin in origins:
            if origin == self.local.origin:
                continue
            self.forgotten[origin] = self._generation(origin)
            self._drop(origin)
        while len(self.forgotten) > self.limits.origins:  # the oldest news goes first
            del self.forgotten[next(iter(self.forgotten))]
        return [o for o in origins if o != self.local.origin]

    def _drop(self, origin: Origin) -> None:
        self.logs.pop(origin, None)
        self.pending.pop(origin, None)
        self._release(origin)

    def _release(self, origin: Origin) -> None:
        if origin not in self.logs and origin not in self.pending:
            self.room.release(origin)

    def _generation(self, origin: Origin) -> int:
        copies = (self.logs.get(origin), self.pending.get(origin))
        return max(c.generation for c in copies if c is not None)

    def expire(self, now: float) -> int:
        purged = sum(log.expire(now, self.tombstone_ttl) for log in self.logs.values())
        self.stats.expired += purged
        return purged

    # --- receiving ---------------------------------------------------------------------

    def apply(self, chunk: Chunk, now: float) -> Applied:
        """Take what ``chunk`` adds (see the module docstring for the rules)."""
        origin = chunk.origin
        building = self.pending.get(origin)
        if chunk.direct and building is not None and _claims_more(building, chunk):
            del self.pending[origin]  # not the origin's: made up, or from before
            self._release(origin)
        target, reason = self._route(chunk)
        if target is None:
            return self._dropped(reason)
        forgot: tuple[Origin, ...] = ()
        if origin not in self.logs and origin not in self.pending:
            gone, reason = self.room.make_way(origin, chunk.generation, self._generation)
            if reason:
                return self._dropped(reason)
            if gone is not None:  # a replica started longest ago (mesh.ring.origin_room)
                self._drop(gone)
                forgot = (gone,)
        if target is not self.logs.get(origin) and self.pending.get(origin) is not target:
            self.pending[origin] = target  # a new copy to build aside
        applied = self._take(target, chunk, now)
        return replace(applied, forgot=forgot) if forgot else applied

    def skip_through(self, chunk: Chunk) -> int:
        """Records of ``chunk`` at or below this version would be ignored (the copy it goes
        to holds them already), so they need not even be verified."""
        target, _ = self._route(chunk)
        return 0 if target is None else target.progress

    def _route(self, chunk: Chunk) -> tuple[OriginLog | None, str]:
        """The copy ``chunk`` continues (a new one for a reset that starts one), or why none."""
        origin = chunk.origin
        if origin == self.local.origin:
            return None, "own"
        if chunk.generation <= self.forgotten.get(origin, 0):
            return None, "forgotten"
        held = self.logs.get(origin)
        building = self.pending.get(origin)
        if chunk.direct and held is not None and _claims_more(held, chunk):
            held = None  # not the origin's (it answers until the origin's copy is built)
        if chunk.direct and building is not None and _claims_more(building, chunk):
            building = None
        if building is not None and chunk.generation < building.generation:
            return None, "stale"
        if held is not None and chunk.generation < held.generation:
            return None, "stale"
        if building is not None and building.generation < chunk.generation:
            building = None  # a newer generation supersedes the copy being built
        if chunk.reset:
            if chunk.from_version != 0:  # the rest of a snapshot being built
                if building is None or building.target != chunk.target:
                    return None, "gap"
                if chunk.from_version > building.progress:
                    return None, "gap"
                return building, ""
            same = held is not None and held.generation == chunk.generation
            newer = same and held is not None and not held.broken and held.progress >= chunk.target
            if newer and not chunk.direct:  # (the origin resets a copy not its own: see above)
                return None, "stale"  # an older snapshot than the copy in use: no rollback
            if building is not None and chunk.target < building.target:
                return None, "stale"
            if building is not None and chunk.target == building.target:
                return building, ""  # the same snapshot: continue it
            fresh = OriginLog(chunk.cluster_id, chunk.replica, chunk.generation)
            fresh.target, fresh.from_origin = chunk.target, chunk.direct
            return fresh, ""
        if building is not None:
            copy = building
        elif held is not None and held.generation == chunk.generation:
            copy = held
        else:
            return None, "gap"
        if chunk.from_version > copy.progress:
            return None, "gap"
        return copy, ""

    def _take(self, target: OriginLog, chunk: Chunk, now: float) -> Applied:
        weights = chunk.weights or (None,) * len(chunk.records)
        # Records at or below the copy's progress are held or superseded (perhaps by a
        # tombstone purged since); a tombstone's expiry clock starts now.
        taken = set(target.put_all(chunk.records, weights, target.progress, now))
        if chunk.records:
            target.progress = max(target.progress, chunk.records[-1].version)
        if chunk.certificate:
            target.certificate = chunk.certificate
        self.stats.taken += len(taken)
        in_use = target is self.logs.get(target.origin)
        head = chunk.head
        checked = True
        if head is not None and head.version >= target.progress:
            target.head = head
            target.progress = head.version
            checked = target.checks_out()
            target.broken = not checked
        if in_use:
            # Taken records change the copy answers use, even when the head check fails
            # (which asks peers for a reset): report them, or the answers would go stale.
            state = target.state() if taken else None
            dropped = "" if checked else self._count("inconsistent")
            return Applied(len(taken), state, frozenset(taken), dropped=dropped)
        if not checked:
            del self.pending[target.origin]
            self._release(target.origin)
            return self._dropped("inconsistent")
        if not target.complete:
            return Applied(len(taken))
        del self.pending[target.origin]
        held = self.logs.get(target.origin)
        assert target.head is not None
        if (
            held is not None
            and held.generation == target.generation
            and not held.broken
            and held.progress >= target.head.version
            and not (chunk.direct or target.from_origin)
        ):
            return self._dropped("stale")  # the copy in use moved past it meanwhile
        # Built aside from a snapshot without tombstones: it cannot serve a delta to a peer
        # below that snapshot (it would lack deletions), so those get a reset from it.
        target.floor = max(target.floor, target.target)
        self.logs[target.origin] = target  # complete: swap it in whole
        self.stats.swapped += 1
        return Applied(len(taken), target.state(), frozenset(taken), everything=True)

    def _count(self, reason: str) -> str:
        self.stats.drop(reason)
        return reason

    def _dropped(self, reason: str) -> Applied:
        self.stats.drop(reason)
        return Applied(dropped=reason)

    # --- sending -----------------------------------------------------------------------

    def select(self, theirs: list[Digest] | None, budget: int) -> tuple[list[OutChunk], bool]:
        """What a peer holding ``theirs`` (None: nothing) lacks, in chunks whose sizes add up
        to about ``budget`` bytes and ``MAX_RECORDS_PER_MESSAGE`` records (always at least
        one record). True when more remained than the budget allowed."""
        known = {} if theirs is None else {(d.cluster_id, d.replica): d for d in theirs}
        out: list[OutChunk] = []
        left = budget
        room = MAX_RECORDS_PER_MESSAGE
        for origin in self._send_order():
            log = self.logs[origin]
            if log.broken or log.head is None:
                continue
            planned = plan(log, known.get(origin), own=origin == self.local.origin)
            if planned is None:
                continue
            start, reset = planned
            records: list[bytes] = []
            batches: dict[bytes, None] = {}  # each batch the records need, once, in order
            more = False
            for record in log.since(start, live_only=reset):
                sealed, batch = record.sealed, record.batch
                cost = len(sealed) + CHUNK_OVERHEAD
                if batch and batch not in batches:
                    cost += len(batch) + CHUNK_OVERHEAD
                if (left < cost or room == 0) and (records or out):
                    more = True
                    break
                records.append(sealed)
                if batch:
                    batches[batch] = None
                left -= cost
                room -= 1
            reached = not more and log.progress == log.head.version
            if records or reached:
                head = log.head.sealed if reached else b""
                target = log.progress if reset else 0
                out.append(
                    OutChunk(
                        log.cluster_id,
                        log.replica,
                        log.generation,
                        start,
                        reset,
                        tuple(records),
                        head,
                        log.certificate,
                        target,
                        tuple(batches),
                    )
                )
            if more:
                return out, True
        return out, False

    def _send_order(self) -> list[Origin]:
        """Our own origin first (it has the freshest news), then the others, starting one
        further each call so that one large catch-up cannot starve everyone else's news."""
        rest = sorted(o for o in self.logs if o != self.local.origin)
        if rest:
            self._turn = (self._turn + 1) % len(rest)
            rest = rest[self._turn :] + rest[: self._turn]
        return [self.local.origin, *rest]


def _claims_more(copy: OriginLog, chunk: Chunk) -> bool:
    """``copy`` holds more than the origin says it wrote, in a chunk of its own records: a
    newer generation, or more of its generation than a reset's snapshot or a head reach."""
    if copy.generation != chunk.generation:
        return copy.generation > chunk.generation
    reached = chunk.target if chunk.reset else None if chunk.head is None else chunk.head.version
    return reached is not None and max(copy.progress, copy.target) > reached
