"""A pre-encoded DNS response body, with what the query path needs to send it fast.

An ``Answer`` holds the answer, authority and additional sections as one byte string and
the four headers it can be sent with (RD echoed or not, EDNS or not), so a response is the
query's ID, one of those headers, the query's question bytes, the body and, for EDNS, our
OPT record: concatenation only.

Rotation: an answer that should spread load (the address records of a ClusterSetIP
service) carries ``variants``, rotations of the same records, and its own ``turn`` counter;
the query path sends the next variant per query. Other answers have no ``variants`` (an
empty tuple: both query paths rotate only through two or more). Each rotating answer
counts for itself, so a client asking A then AAAA in turn still sees every A variant.

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


class Answer:
    __slots__ = ("body", "edns_tail", "heads", "rcode", "turn", "units", "variants")

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
        # No rotation: empty, one shared tuple (a ``(self,)`` per answer would cost 48 octets
        # each); the query paths rotate only when there are at least two variants.
        self.variants: tuple[Answer, ...] = ()
        self.turn = 0  # queries answered from ``variants`` so far (rotation state)

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


def rotating(variants: list[Answer]) -> Answer:
    """The first variant, carrying all of them for the query path to rotate through."""
    first = variants[0]
    first.variants = tuple(variants)
    return first
