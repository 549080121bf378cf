"""A pre-encoded DNS response body, with what the query path needs to send it fast.

An ``Answer`` holds the answer, authority and additional sections as one byte string and
the four headers it can be sent with (RD echoed or not, EDNS or not), so a response is the
query's ID, one of those headers, the query's question bytes, the body and, for EDNS, our
OPT record: concatenation only.

Rotation: an answer that should spread load (the address records of a ClusterSetIP
service) sends a different rotation of its records per query, counted by its own ``turn``.
Its records all have one length (A or AAAA owned by the query name), so every rotation is a
slice of one byte string, the records followed by all but the last of them again: such an
answer's ``body`` is that ring, and ``rotation`` says where each slice starts (``stride``
apart), how many there are and how long each is. The query path sends
``body[start:start + size]``, with ``start = turn % count * stride``: one slice, where one
``Answer`` and one body per rotation would cost about 170 octets each. Other answers have
an empty ``rotation`` and send ``body`` whole. Each rotating answer counts for itself, so a
client asking A then AAAA in turn still sees every A rotation.

Cutting: when a response does not fit (the client's UDP limit, or 65,535 octets over TCP),
it is sent with TC=1 and only the records that fit. Answers that list endpoints carry
``units``, one per endpoint in answer order, with the bytes they contribute to the answer
and additional sections and a ``cost``. The A and AAAA answers of one service give each
endpoint the same cost (the larger of its two), so a cut at a given size keeps the same
endpoints in both (KEP-1645 asks that A and AAAA cut the same endpoints).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from dnsserver import wire

# What we advertise in our OPT record and the most we ever send over UDP: the size the DNS
# flag day 2020 settled on to avoid IP fragmentation.
MAX_UDP_PAYLOAD = 1232
MAX_TCP_MESSAGE = 65535
OPT_RECORD_LEN = 11


@dataclass(frozen=True, slots=True)
class Unit:
    """One endpoint's share of a cuttable answer."""

    answer: bytes
    answer_count: int
    additional: bytes
    additional_count: int
    cost: int


@functools.cache
def _heads(rcode: int, an: int, ns: int, ar: int, tc: bool) -> tuple[bytes, ...]:
    """Flags and counts for (RD, EDNS) = (0,0), (1,0), (0,1), (1,1): index rd | edns << 1.

    Cached: answers with the same rcode and counts share one tuple (most answers of a zone
    have one of a few shapes), which keeps a large zone's memory to its records."""
    heads = []
    for index in range(4):
        rd, edns = index & 1, index >> 1
        flags = struct.pack("!BB", 0x84 | (0x02 if tc else 0) | rd, rcode & 0x0F)
        heads.append(flags + struct.pack("!HHHH", 1, an, ns, ar + edns))
    return tuple(heads)


@functools.cache
def _edns_tail(rcode: int) -> bytes:
    return wire.opt_record(MAX_UDP_PAYLOAD, rcode >> 4)


Rotation = tuple[int, int, int]  # (stride, count, size) in octets; () for no rotation


@functools.cache
def _rotation(stride: int, count: int, size: int) -> Rotation:
    """One shared tuple per shape (most rotating answers of a zone have one of a few)."""
    return (stride, count, size)


class Answer:
    __slots__ = ("body", "edns_tail", "heads", "rcode", "rotation", "turn", "units")

    def __init__(
        self,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        units: tuple[Unit, ...] = (),
    ) -> None:
        """``sections``: answer, authority and additional octets; ``counts``: their records."""
        self.rcode = rcode
        self.body = b"".join(sections)
        self.heads = _heads(rcode, *counts, tc=False)
        self.edns_tail = _edns_tail(rcode)
        self.units = units
        self.rotation: Rotation | tuple[()] = ()  # see the module docstring
        self.turn = 0  # queries answered by a rotating answer so far (rotation state)

    @classmethod
    def of(
        cls,
        rcode: int,
        answers: list[bytes],
        authority: list[bytes] | None = None,
        additional: list[bytes] | None = None,
    ) -> Answer:
        """An answer from lists of encoded records, one list per section."""
        authority = authority or []
        additional = additional or []
        sections = (b"".join(answers), b"".join(authority), b"".join(additional))
        return cls(rcode, sections, (len(answers), len(authority), len(additional)))

    @classmethod
    def of_units(cls, units: list[Unit]) -> Answer:
        """A NOERROR answer listing endpoints, cuttable at endpoint boundaries."""
        sections = (b"".join(u.answer for u in units), b"", b"".join(u.additional for u in units))
        counts = (sum(u.answer_count for u in units), 0, sum(u.additional_count for u in units))
        return cls(wire.RCODE_NOERROR, sections, counts, tuple(units))

    def uncut(self) -> Answer:
        """This answer without cut points (whole or nothing when it does not fit)."""
        self.units = ()
        return self

    def cut(self, room: int, rd: int, edns: int) -> bytes:
        """Header and sections (no ID, no question) of this answer cut to ``room`` octets
        of sections, with TC=1. Only whole endpoints are kept; none when it has no units."""
        answer, additional = [], []
        an = ar = used = 0
        for unit in self.units:
            if used + unit.cost > room:
                break
            used += unit.cost
            answer.append(unit.answer)
            additional.append(unit.additional)
            an += unit.answer_count
            ar += unit.additional_count
        flags = struct.pack("!BB", 0x86 | rd, self.rcode & 0x0F)
        head = flags + struct.pack("!HHHH", 1, an, 0, ar + edns)
        return head + b"".join(answer) + b"".join(additional)


# A name's answers by query type: a tuple indexed by ``TYPE_SLOTS``, ``None`` where the name
# has no such records, cut after the last type it has. A dict per name would cost about 220
# octets; this costs 40 plus 8 per slot. The C fast path (``_fastpath_answer.c``,
# ``type_slot``) indexes it with the same numbering, so the two must change together.
TYPE_SLOTS = {
    wire.TYPE_A: 0,
    wire.TYPE_AAAA: 1,
    wire.TYPE_SRV: 2,
    wire.TYPE_ANY: 3,
    wire.TYPE_TXT: 4,
    wire.TYPE_SOA: 5,
    wire.TYPE_NS: 6,
}
NO_SLOT = len(TYPE_SLOTS)  # what a query type without a slot looks up: past every table
TypeTable = tuple["Answer | None", ...]
# The type table of every empty non-terminal: the empty tuple, one shared object.
EMPTY_TYPES: TypeTable = ()


def type_table(types: Mapping[int, Answer]) -> TypeTable:
    """The table of a name with these answers (a type outside ``TYPE_SLOTS``: KeyError)."""
    if not types:
        return EMPTY_TYPES
    slots: list[Answer | None] = [None] * (1 + max(TYPE_SLOTS[t] for t in types))
    for rtype, answer in types.items():
        slots[TYPE_SLOTS[rtype]] = answer
    return tuple(slots)


def answer_for(types: TypeTable, qtype: int) -> Answer | None:
    """The answer of type ``qtype`` in a name's table, None when it has none (NODATA)."""
    slot = TYPE_SLOTS.get(qtype, NO_SLOT)
    return types[slot] if slot < len(types) else None


def scheduled(rotations: list[list[bytes]]) -> Answer:
    """A NOERROR answer that sends ``rotations[turn % len(rotations)]``: explicit rotations
    (a weighted schedule, see ``dnsserver.records``), each the same number of records of
    one length, laid end to end in one body so that each is still a slice of it."""
    answer = Answer.of(wire.RCODE_NOERROR, rotations[0])
    if len(rotations) < 2:
        return answer
    size = sum(len(r) for r in rotations[0])
    if any(sum(len(r) for r in rotation) != size for rotation in rotations):
        raise ValueError("scheduled rotations must all have one length")
    answer.body = b"".join(b"".join(rotation) for rotation in rotations)
    answer.rotation = _rotation(size, len(rotations), size)
    return answer


def rotating(records: list[bytes], shown: int, step: int) -> Answer:
    """A NOERROR answer of ``shown`` of ``records`` (all of one length), rotated per query:
    the rotations start at every ``step``-th record and wrap around (see the module
    docstring). One rotation (one record), or none shown, needs no rotating."""
    shown = max(0, min(shown, len(records)))
    answer = Answer.of(wire.RCODE_NOERROR, records[:shown])
    count = -(-len(records) // step)
    if count < 2 or shown == 0:
        return answer
    length = len(records[0])
    if any(len(r) != length for r in records):
        raise ValueError("rotating records must all have one length")
    answer.body = b"".join(records + records[: shown - 1])
    answer.rotation = _rotation(step * length, count, shown * length)
    return answer
