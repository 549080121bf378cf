"""Rotating answers, built (pure): the records of one name sent in turns.

A ClusterSetIP service's A (or AAAA) answer spreads load by sending a different rotation
of its records per query. ``rotating`` builds the plain kind: the rotations start at every
``step``-th record and wrap around one ring of the records (``answer.RotatingAnswer``: each
record held once, ``Answer.rotation_at`` gives a turn's slice). ``scheduled`` builds the
weighted kind: explicit rotations (``dnsserver.weighted``), laid end to end so that each is
one slice of the body. Either way a query sends one slice; the answer counts its own turns
(see ``dnsserver.answer``).
"""

from __future__ import annotations

from array import array

from dnsserver import wire
from dnsserver.answer import (
    NEVER_CUT,
    TCP_ROOM,
    UDP_ROOM,
    Answer,
    CutAnswer,
    RotatingAnswer,
    rotation_shape,
)


def scheduled(rotations: list[list[bytes]]) -> Answer:
    """A NOERROR answer that sends ``rotations[turn % len(rotations)]``: explicit rotations
    (a weighted schedule, see ``dnsserver.records``), each the same number of records of
    one length, laid end to end in one body so that each is still a slice of it."""
    if len(rotations) < 2:
        return Answer.of(wire.RCODE_NOERROR, rotations[0])
    size = sum(len(r) for r in rotations[0])
    if any(sum(len(r) for r in rotation) != size for rotation in rotations):
        raise ValueError("scheduled rotations must all have one length")
    body = b"".join(b"".join(rotation) for rotation in rotations)
    answer = RotatingAnswer(wire.RCODE_NOERROR, (body, b"", b""), (len(rotations[0]), 0, 0))
    answer.rotation = rotation_shape(size, len(rotations), size)
    return answer


def rotating(records: list[bytes], shown: int, step: int) -> Answer:
    """A NOERROR answer of ``shown`` of ``records`` (all of one length), rotated per query:
    the rotations start at every ``step``-th record and wrap around (see the module
    docstring). One rotation (one record), or none shown, needs no rotating. At most the
    records that fit a message are shown; a UDP cut keeps whole records."""
    if not records:
        return Answer(wire.RCODE_NOERROR)
    length = len(records[0])
    if any(len(r) != length for r in records):
        raise ValueError("rotating records must all have one length")
    shown = max(0, min(shown, len(records), TCP_ROOM // length))
    step = max(1, step)
    count = -(-len(records) // step)
    cuts = None
    if shown * length > NEVER_CUT:
        points = [shown * length]
        for k in range(1, min(shown, UDP_ROOM // length) + 1):
            points += (k * length, k * length, k, 0, 0, 1)
        cuts = array("H", points)
    sections = (b"".join(records[:shown]), b"", b"")
    if count < 2 or shown == 0:
        if cuts is None:
            return Answer(wire.RCODE_NOERROR, sections, (shown, 0, 0))
        answer = CutAnswer(wire.RCODE_NOERROR, sections, (shown, 0, 0))
        answer.cuts = cuts
        return answer
    turning = RotatingAnswer(wire.RCODE_NOERROR, (b"".join(records), b"", b""), (shown, 0, 0))
    turning.cuts = cuts
    turning.rotation = rotation_shape(step * length, count, shown * length)
    return turning
