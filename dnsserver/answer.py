"""A pre-encoded DNS response body, with what the query path needs to send it fast.

An ``Answer`` holds the answer, authority and additional sections as one byte string and
the four headers it can be sent with (RD echoed or not, EDNS or not), so a response is the
query's ID, one of those headers, the query's question bytes, the body and, for EDNS, our
OPT record: concatenation only.

Rotation: an answer that should spread load (the address records of a ClusterSetIP
service) sends a different rotation of its records per query, counted by its own ``turn``.
Its records all have one length (A or AAAA owned by the query name), so every rotation is a
slice of one ring of them: such an answer's ``body`` holds each record once, and
``rotation`` says where each slice starts (``stride`` apart), how many there are and how
long each is. The query paths send ``size`` octets from ``start = turn % count * stride``,
wrapping to the start of ``body`` past its end (``Answer.rotation_at``; the C path copies
the two pieces): one slice, where one ``Answer`` and one body per rotation would cost about
170 octets each, and without a second copy of all but the last record (which a plain slice
would need: 112 octets for ten IPv4 addresses shown 8 at a time). Other answers have an
empty ``rotation`` and send ``body`` whole. Each rotating answer counts for itself, so a
client asking A then AAAA in turn still sees every A rotation.

Size limits, decided when an answer is built. A DNS message is at most 65,535 octets (the
TCP length prefix), so an answer's sections are capped at ``TCP_ROOM``: what the longest
question and an OPT record leave of that. An answer that lists more is built with only the
records that fit and TC=1 (``Answer.capped``): over TCP that is what is sent, the most any
client can receive in one message, never an empty answer. So no query ever cuts over TCP.

Over UDP a response is cut per query to the client's limit (512 octets, or the EDNS size up
to 1,232), with TC=1, at cut points decided when the answer was built (``Listing``): the
answer's records come in groups, one per endpoint, and a cut keeps whole groups; if not even
the first group fits, it keeps the first group's whole records that fit. An endpoint's
glue (the additional records of an SRV target) goes with its first record. The A and AAAA
answers of a headless service list the same groups in the same order with the same cost
each (the larger of the two families' octets), so a cut at a given size keeps the same
endpoints in both; meshd promises that, KEP-1645 leaves it open. The cut points are kept
only as far as a UDP response can reach (``UDP_ROOM``), in one array of small integers.
Answers small enough never to be cut (``NEVER_CUT``) keep none.
"""

from __future__ import annotations

import functools
import struct
from array import array
from collections.abc import Mapping, Sequence

from dnsserver import wire

# What we advertise in our OPT record and the most we ever send over UDP: the size the DNS
# flag day 2020 settled on to avoid IP fragmentation.
MAX_UDP_PAYLOAD = 1232
PLAIN_UDP_LIMIT = 512
MAX_TCP_MESSAGE = 65535
OPT_RECORD_LEN = 11
# The header and the longest question (a 255-octet name, type and class): where the
# sections of the longest response start.
LONGEST_QUESTION_END = 12 + 255 + 4
# The most octets of sections any response can carry: over TCP (so every answer is capped
# to it), and over UDP (with the shortest question, the root name).
TCP_ROOM = MAX_TCP_MESSAGE - LONGEST_QUESTION_END - OPT_RECORD_LEN
UDP_ROOM = MAX_UDP_PAYLOAD - (12 + 1 + 4)
# Sections this short fit every response, so they are never cut and need no cut points.
NEVER_CUT = PLAIN_UDP_LIMIT - LONGEST_QUESTION_END - OPT_RECORD_LEN
# One cut point in ``Answer.cuts``: (cost, answer octets, answer records, additional octets,
# additional records, 1 at a group boundary else 0).
_POINT = 6


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
def rotation_shape(stride: int, count: int, size: int) -> Rotation:
    """One shared tuple per shape (most rotating answers of a zone have one of a few)."""
    return (stride, count, size)


class Answer:
    """A NOERROR answer sent whole: its ``body`` and ``heads`` are all it holds (48 octets
    an object). What most answers of a zone share is class-level: ``rcode``, ``edns_tail``,
    no ``cuts``, no ``rotation``. The rarer kinds are subclasses with slots of their own:
    ``CutAnswer`` (cut points), ``RotatingAnswer`` (cut points, rotation and turn),
    ``CodedAnswer`` (another rcode); ``dnsserver.rotation`` builds the rotating ones. The
    query paths read every kind alike, by attribute (the C path with ``PyObject_GetAttr``,
    which finds a class attribute as fast as a slot)."""

    __slots__ = ("body", "heads")
    rcode: int = wire.RCODE_NOERROR
    edns_tail: bytes = _edns_tail(wire.RCODE_NOERROR)
    # Cut points (see the module docstring): the answer section's length, then ``_POINT``
    # numbers per point; None for an answer that is never cut.
    cuts: array[int] | None = None
    rotation: Rotation | tuple[()] = ()  # see the module docstring
    turn: int = 0  # queries answered by a rotating answer so far (rotation state)

    def __new__(
        cls,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        capped: bool = False,
    ) -> Answer:
        if cls is Answer and rcode != wire.RCODE_NOERROR:
            cls = CodedAnswer
        return object.__new__(cls)

    def __init__(
        self,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        capped: bool = False,
    ) -> None:
        """``sections``: answer, authority and additional octets; ``counts``: their records;
        ``capped``: records were left out to fit a message (the heads carry TC=1)."""
        self.body = b"".join(sections)
        self.heads = _heads(rcode, *counts, tc=capped)

    @classmethod
    def records(cls, body: bytes, count: int) -> Answer:
        """A NOERROR answer of ``count`` records, ``body`` (never cut): ``Answer.of`` of
        them without its sections, for the zone's commonest answers (``dnsserver.plain``)."""
        answer = object.__new__(Answer)
        answer.body = body
        answer.heads = _heads(wire.RCODE_NOERROR, count, 0, 0, False)
        return answer

    def take_turn(self) -> bytes:
        """What one more query is sent: ``body`` (a rotating answer: its next rotation)."""
        return self.body

    def rotation_at(self, turn: int) -> bytes:
        """The octets sent at ``turn`` (see the module docstring): ``body`` whole unless it
        rotates, else its slice, wrapping around the end of ``body``."""
        if not self.rotation:
            return self.body
        stride, count, size = self.rotation
        start = turn % count * stride
        end = start + size
        if end <= len(self.body):
            return self.body[start:end]
        return self.body[start:] + self.body[: end - len(self.body)]

    @property
    def capped(self) -> bool:
        """Records were left out to fit a message: TC=1 in every header (not a slot of its
        own: a zone holds millions of answers)."""
        return bool(self.heads[0][0] & 0x02)

    @classmethod
    def of(
        cls,
        rcode: int,
        answers: list[bytes],
        authority: list[bytes] | None = None,
        additional: list[bytes] | None = None,
    ) -> Answer:
        """A small answer from lists of encoded records, one list per section (the zone's
        own records: SOA, NS, TXT and the negative answers; never cut)."""
        authority = authority or []
        additional = additional or []
        sections = (b"".join(answers), b"".join(authority), b"".join(additional))
        return cls(rcode, sections, (len(answers), len(authority), len(additional)))

    def cut(self, body: bytes, room: int, rd: int, edns: int) -> bytes:
        """Header and sections (no ID, no question) of this answer's ``body`` (the rotation
        sent, for a rotating answer) cut to ``room`` octets of sections, with TC=1: whole
        groups, else the first group's whole records that fit, else nothing."""
        points = self.cuts
        best = fallback = 0
        if points is not None:
            for i in range(1, len(points), _POINT):
                if points[i] > room:
                    break
                fallback = i
                if points[i + 5]:
                    best = i
        pick = best or fallback
        an = ar = 0
        sections = b""
        if points is not None and pick:
            answer_end, an, glue_end, ar = points[pick + 1 : pick + 5]
            glue_start = points[0]
            sections = body[:answer_end] + body[glue_start : glue_start + glue_end]
        flags = struct.pack("!BB", 0x86 | rd, self.rcode & 0x0F)
        return flags + struct.pack("!HHHH", 1, an, 0, ar + edns) + sections


class CutAnswer(Answer):
    """An answer with cut points (a listing longer than ``NEVER_CUT``)."""

    __slots__ = ("cuts",)

    def __init__(
        self,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        capped: bool = False,
    ) -> None:
        super().__init__(rcode, sections, counts, capped)
        self.cuts = None


class RotatingAnswer(CutAnswer):
    """An answer that sends one slice of its body per query (see the module docstring)."""

    __slots__ = ("rotation", "turn")

    def __init__(
        self,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        capped: bool = False,
    ) -> None:
        super().__init__(rcode, sections, counts, capped)
        self.rotation = ()
        self.turn = 0

    @classmethod
    def ring(cls, ring: bytes, shown: int, rotation: Rotation) -> RotatingAnswer:
        """``shown`` records of ``ring`` per query, never cut (``rotation.rotating`` of a
        ring short enough, without its checks: ``dnsserver.plain``)."""
        answer = object.__new__(RotatingAnswer)
        answer.body = ring
        answer.heads = _heads(wire.RCODE_NOERROR, shown, 0, 0, False)
        answer.cuts = None
        answer.rotation = rotation
        answer.turn = 0
        return answer

    def take_turn(self) -> bytes:
        self.turn += 1
        return self.rotation_at(self.turn)


class CodedAnswer(CutAnswer):
    """An answer with another rcode than NOERROR (the zone's negative answers)."""

    __slots__ = ("edns_tail", "rcode")

    def __init__(
        self,
        rcode: int,
        sections: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        counts: tuple[int, int, int] = (0, 0, 0),
        capped: bool = False,
    ) -> None:
        super().__init__(rcode, sections, counts, capped)
        self.rcode = rcode
        self.edns_tail = _edns_tail(rcode)


class Listing:
    """Builds a NOERROR answer that lists endpoints, group by group (one group per endpoint;
    see the module docstring): capped at ``TCP_ROOM``, with cut points for UDP."""

    __slots__ = ("answer", "cost", "full", "glue", "groups", "points", "sizes")

    def __init__(self) -> None:
        self.answer: list[bytes] = []
        self.glue: list[bytes] = []
        self.sizes = [0, 0, 0, 0]  # answer octets, records; additional octets, records
        self.cost = 0  # at the last group boundary
        self.groups = 0  # groups taken whole
        self.full = False  # a group did not fit: records were left out
        self.points = array("H")

    def add(
        self, records: Sequence[bytes], cost: int, glue: Sequence[tuple[bytes, int]] = ()
    ) -> bool:
        """Add one group: its answer ``records``, its ``cost`` (at least their octets and
        their glue's), and ``glue``, (octets, records) going with each record, if any.
        False when it does not fit: the listing is then full and takes nothing more."""
        if self.full:
            return False
        fits = self.cost + cost <= TCP_ROOM
        if self.groups == 0:
            # The first group gets a cut point after each record, in case not even it fits
            # a cut; if it does not fit a message, it keeps the records that do.
            self._first_group(records, glue)
        elif fits:
            for i, record in enumerate(records):
                self._take(record, glue[i] if glue else (b"", 0))
        if not fits:
            self.full = True
            return False
        self.cost += cost
        self.groups += 1
        self._point(self.cost, boundary=True)
        return True

    def _first_group(self, records: Sequence[bytes], glue: Sequence[tuple[bytes, int]]) -> None:
        for i, record in enumerate(records):
            extra = glue[i] if glue else (b"", 0)
            used = self.sizes[0] + self.sizes[2] + len(record) + len(extra[0])
            if used > TCP_ROOM:
                return
            self._take(record, extra)
            self._point(used, boundary=False)

    def _take(self, record: bytes, glue: tuple[bytes, int]) -> None:
        self.answer.append(record)
        self.sizes[0] += len(record)
        self.sizes[1] += 1
        if glue[1]:
            self.glue.append(glue[0])
            self.sizes[2] += len(glue[0])
            self.sizes[3] += glue[1]

    def _point(self, cost: int, boundary: bool) -> None:
        if cost <= UDP_ROOM:
            self.points.extend((cost, self.sizes[0], self.sizes[1], self.sizes[2]))
            self.points.extend((self.sizes[3], int(boundary)))

    @property
    def count(self) -> int:
        """Answer records taken so far."""
        return self.sizes[1]

    def build(self) -> Answer:
        sections = (b"".join(self.answer), b"", b"".join(self.glue))
        counts = (self.sizes[1], 0, self.sizes[3])
        if sum(map(len, sections)) <= NEVER_CUT or not self.points:
            return Answer(wire.RCODE_NOERROR, sections, counts, capped=self.full)
        answer = CutAnswer(wire.RCODE_NOERROR, sections, counts, capped=self.full)
        answer.cuts = array("H", [self.sizes[0]]) + self.points
        return answer


def records_answer(records: Sequence[bytes]) -> Answer:
    """A NOERROR answer of ``records``, each its own group (the addresses of one name),
    capped like any listing (``Answer.capped``)."""
    if sum(map(len, records)) <= NEVER_CUT:  # the usual one or two: nothing to cut or cap
        return Answer.of(wire.RCODE_NOERROR, list(records))
    listing = Listing()
    for record in records:
        if not listing.add((record,), len(record)):
            break
    return listing.build()


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
