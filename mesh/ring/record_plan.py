"""What a peer lacks of one copy, from its digest: a delta, a reset, or nothing (pure).

The three kinds of stream are ``mesh.ring.records``'s (its docstring has the rules); this
module chooses among them for one copy and one peer's digest of that origin. One more rule
holds for a holder's *own* origin: its copy is the truth, so a peer's digest *ahead* of it
(a newer generation, a version or a snapshot it never reached, a head it never wrote) can
only hold records the origin did not write (made up, without TLS) or ones it wrote before
it went back (a restart whose clock stepped back). The origin answers such a digest with a
reset of its own copy, which the peer takes from the origin itself even where it would
refuse it from a relay (``RecordStore``: no rollback, except by the origin's own word).
"""

from __future__ import annotations

from mesh.ring.catalog import Digest
from mesh.ring.record_log import Head, OriginLog

HEAD_HASH_BYTES = 8  # of a digest's head hash: enough to tell copies apart


def plan(log: OriginLog, digest: Digest | None, own: bool = False) -> tuple[int, bool] | None:
    """Where to start for a peer at ``digest``, and whether it is a reset; None: nothing.
    ``own``: ``log`` is the sender's own origin."""
    assert log.head is not None
    if digest is None or digest.generation < log.generation:
        return (0, True)
    if own and ahead(log, digest):
        return (0, True)
    if digest.generation > log.generation:
        return None
    if digest.partial:  # it builds a copy of this generation aside, from a snapshot
        ahead_of_it = digest.version < log.progress
        head_only = digest.version == log.progress == log.head.version
        if log.progress == digest.target:  # that very snapshot: the rest of its live records
            return (digest.version, True) if ahead_of_it or head_only else None
        if log.progress < digest.target:
            return None  # behind the snapshot: leave it to those that are not
        # A newer copy continues it with every record above its progress, tombstones
        # included, if it still holds them; else it starts a newer snapshot.
        return (digest.version, False) if log.floor <= digest.version else (0, True)
    if digest.version == 0 or digest.version < log.floor:
        return (0, True)
    if digest.version < log.progress:
        return (digest.version, False)
    if digest.version == log.progress == log.head.version > digest.checked:
        return (digest.version, False)  # it has every record but not the head: check it
    return None


def ahead(log: OriginLog, digest: Digest) -> bool:
    """``digest`` claims more of this origin than ``log`` holds, or a head it never wrote."""
    if digest.generation != log.generation:
        return digest.generation > log.generation
    if max(digest.version, digest.target, digest.checked) > log.progress:
        return True
    head = log.head
    if head is None or not digest.head_hash or digest.checked != head.version:
        return False
    return digest.head_hash != head_mark(head)[1]


def head_mark(head: Head) -> tuple[int, bytes]:
    """What a digest says of the head a copy was checked against: its version, and the
    first bytes of its set hash (``Digest.head_hash``)."""
    return head.version, head.set_hash.to_bytes(32, "big")[:HEAD_HASH_BYTES]
