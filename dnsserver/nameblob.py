"""A plain service's answers as one ``bytes`` per name, and the zone's rotation counters.

Theory of operation. Most names of a large zone are a plain ClusterSetIP service's
(``dnsserver.plain``): an A and/or AAAA answer (rotating when there are more addresses than
one rotation shows), an SRV answer, ANY the first of those, never cut, never capped, always
NOERROR. Held as ``Answer`` objects in a type table, such a name cost a tuple, an object per
answer and a ``bytes`` per body: about 380 octets of overhead for a few dozen octets of
records. Here all of a name's answers are one immutable ``bytes``, the zone's table value
for the name (``Zone.table`` maps a name to a ``TypeTable`` or to a blob); both query paths
read it in place (``query.respond`` with ``pick``; the C fast path with ``blob_pick`` in
``_fastpath_blob.c``, which must read the same layout):

    octet 0       the length of the wire name the blob was built for (its owner)
    octet 1       which answers it has: bit 0 A, bit 1 AAAA, bit 2 SRV
    octet 2       the length of the service's name, the target of its SRV records
    per answer    in the order A, AAAA, SRV, for each bit set: its body's offset in the
                  blob (u16), its length (u16), its records (u8), its rotation count (u8:
                  0 or 1 for none) and, when it rotates (count >= 2), stride (u16), size
                  (u16) and its counter's slot in ``Turns`` (u32); all little-endian
    bodies        each answer's records (a rotating answer's: the whole ring); SRV
                  records without their target (``SRV_FIXED`` octets each)

An SRV record's target is the service's own name: the last octets of every name the blob
answers for, in the lower case of the table's key, so it is not kept: each query adds it
after each record, from the name looked up (``with_targets``). That is most of the octets
of a small service's SRV answer.

ANY answers the first answer the name has (A, AAAA, SRV: ``records.ANY_PREFERENCE``). A
name of another length that maps to the same blob (a ``_<port>._<proto>`` owner whose SRV
answer is the service's own, which is the case of a service with one named port) sees only
its SRV answer: so such a name costs its table entry and nothing more.

What an answer sends is what the ``Answer`` it replaces sent: the header is NOERROR with
AA, RD echoed, one question, the answer's records, and the OPT record for EDNS; a rotating
answer sends ``size`` octets from ``turn % count * stride`` of its ring, wrapping to its
start (``Answer.rotation_at``). What an answer sends (a body, a rotation, SRV records with
their targets) is at most ``NEVER_CUT`` octets (``pack`` refuses more), so a response
always fits the smallest UDP limit and is never cut. The bodies of a blob (rings included)
are at most ``MAX_BODIES`` octets, so that every offset fits 16 bits: a service with
thousands of addresses keeps type tables (``rings_fit``).

Rotation counters: each rotating answer counts its own turns (as ``RotatingAnswer.turn``
did), in ``Turns``, one u32 per slot in one ``bytearray`` of the zone, so that the blob
stays immutable. A counter holds the turn modulo the rotation count (the same rotations in
the same order as an unbounded count). ``pack`` takes a slot per rotating answer (zeroed);
the zone gives them back when it drops the name (``slots``), for the next to reuse. Slots
are shared by nothing else: A and ANY of one name are one answer and one counter, as they
were one object.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from dnsserver import wire
from dnsserver.answer import NEVER_CUT, Answer, RotatingAnswer, TypeTable, rotation_shape

# What ``Zone.table`` holds for a name: a type table, or a blob.
Answers = TypeTable | bytes
# An answer to pack: its body, its records, its rotation ((stride, count, size) or ()).
Part = tuple[bytes, int, "tuple[int, int, int] | tuple[()]"]

HAS_A, HAS_AAAA, HAS_SRV = 1, 2, 4
_BITS = {wire.TYPE_A: HAS_A, wire.TYPE_AAAA: HAS_AAAA, wire.TYPE_SRV: HAS_SRV}
# 6 and 8 octets: ``pick`` and the C path count them so.
_ENTRY = struct.Struct("<HHBB")  # offset, length, records, rotation count
_ROTATION = struct.Struct("<HHI")  # stride, size, counter slot
_ROTATING = struct.Struct("<HHBBHHI")  # the entry of a rotating answer, in one
# ``pack_address_srv``: the head of a blob with a rotating A answer and an SRV answer, and
# of one with an A answer that does not rotate (less the SRV entry's last three numbers).
_A_SRV_ROTATING = struct.Struct("<BBB" + "HHBBHHI" + "HHBB")
_A_SRV = struct.Struct("<BBB" + "HHBB" + "H")
_ENTRY_TAIL = struct.Struct("<HBB")
# The most octets of bodies a blob holds: the last body's offset (after the head, at most
# three entries of 14 octets) is a u16.
MAX_BODIES = 0xFFFF - 3 - 3 * 14 - NEVER_CUT
_COUNTER = struct.Struct("<I")
# An SRV record less its target: owner pointer, type, class, TTL, RDLENGTH (12 octets),
# priority, weight, port (6).
SRV_FIXED = 18


@functools.cache
def noerror_heads(records: int) -> tuple[bytes, ...]:
    """The four heads (``Answer.heads``) of a blob's answer of ``records`` records."""
    counts = struct.pack("!HHHH", 1, records, 0, 0)
    return tuple(
        bytes((0x84 | rd, 0)) + counts[:7] + bytes((edns,)) for edns in (0, 1) for rd in (0, 1)
    )


class Turns:
    """The zone's rotation counters: one u32 per slot in ``counters`` (read and written in
    place by both query paths), slots reused once given back."""

    __slots__ = ("counters", "free")

    def __init__(self) -> None:
        self.counters = bytearray()
        self.free: list[int] = []

    def take(self) -> int:
        """A slot whose counter is zero."""
        if self.free:
            slot = self.free.pop()
            _COUNTER.pack_into(self.counters, slot * 4, 0)
            return slot
        self.counters += b"\x00\x00\x00\x00"
        return len(self.counters) // 4 - 1

    def give_back(self, slots: Sequence[int]) -> None:
        self.free.extend(slots)

    def advance(self, slot: int, count: int) -> int:
        """The next turn of the counter at ``slot`` (modulo ``count``), stored."""
        turn: int = (_COUNTER.unpack_from(self.counters, slot * 4)[0] + 1) % count
        _COUNTER.pack_into(self.counters, slot * 4, turn)
        return turn

    def in_use(self) -> int:
        return len(self.counters) // 4 - len(self.free)


def with_targets(fixed: bytes, target: bytes) -> bytes:
    """SRV records stored without their target (``SRV_FIXED`` octets each), with it."""
    if len(fixed) == SRV_FIXED:  # the commonest: one port
        return fixed + target
    return b"".join([fixed[i : i + SRV_FIXED] + target for i in range(0, len(fixed), SRV_FIXED)])


def pack(owner_len: int, target_len: int, parts: Sequence[Part | None], turns: Turns) -> bytes:
    """The blob of a name of ``owner_len`` octets, of a service whose name has
    ``target_len``, with these A, AAAA and SRV ``parts`` (None: the name has none; SRV
    records without their target). ValueError for what a blob cannot hold (an answer that
    could need cutting, a ring over 65,535 octets), before any slot is taken."""
    index = 3
    flags = 0
    for bit, part in zip((HAS_A, HAS_AAAA, HAS_SRV), parts, strict=True):
        if part is None:
            continue
        body, count, rotation = part
        size = rotation[2] if rotation else len(body)
        if bit == HAS_SRV:
            size = count * (SRV_FIXED + target_len)
            if len(body) != count * SRV_FIXED or rotation:
                raise ValueError("SRV records without their targets, never rotating")
        if not 0 < count <= 255 or size > NEVER_CUT or len(body) > 0xFFFF:
            raise ValueError("an answer a name blob cannot hold")
        flags |= bit
        index += 14 if rotation else 6
    pieces = [bytes((owner_len, flags, target_len))]
    offset = index
    for part in parts:
        if part is None:
            continue
        body, count, rotation = part
        if rotation:
            stride, turns_count, size = rotation
            slot = turns.take()
            pieces.append(_ROTATING.pack(offset, len(body), count, turns_count, stride, size, slot))
        else:
            pieces.append(_ENTRY.pack(offset, len(body), count, 0))
        offset += len(body)
    pieces += [part[0] for part in parts if part is not None]
    return b"".join(pieces)


def pack_address_srv(end: int, a: Part, srv: Part, turns: Turns) -> bytes:
    """``pack(end, end, (a, None, srv), turns)`` in one call (a catch-up packs this, the
    commonest name, for most services: a quarter of ``pack``'s cost), for parts ``pack``
    takes and ``rings_fit``."""
    body, count, rotation = a
    fixed, srv_count, _ = srv
    if rotation:
        stride, turns_count, size = rotation
        head = _A_SRV_ROTATING.pack(
            end, HAS_A | HAS_SRV, end, 23, len(body), count, turns_count, stride, size,
            turns.take(), 23 + len(body), len(fixed), srv_count, 0,
        )  # fmt: skip
        return head + body + fixed
    head = _A_SRV.pack(end, HAS_A | HAS_SRV, end, 15, len(body), count, 0, 15 + len(body))
    return head + _ENTRY_TAIL.pack(len(fixed), srv_count, 0) + body + fixed


def rings_fit(*parts: Part | None) -> bool:
    """Whether these parts' bodies leave every offset of a blob within 16 bits."""
    return sum(len(part[0]) for part in parts if part is not None) <= MAX_BODIES


def _entry(blob: bytes, key_len: int, qtype: int) -> tuple[int, int]:
    """Where the entry of the answer ``qtype`` gets at a name of ``key_len`` octets is, and
    its bit; (0, 0) when it has none (NODATA)."""
    have = blob[1] if key_len == blob[0] else blob[1] & HAS_SRV
    bit = have & -have if qtype == wire.TYPE_ANY else _BITS.get(qtype, 0) & have
    if not bit:
        return 0, 0
    pos = 3
    for each in (HAS_A, HAS_AAAA):
        if each == bit:
            break
        if blob[1] & each:
            pos += _ENTRY.size + (_ROTATION.size if blob[pos + 5] > 1 else 0)
    return pos, bit


def pick(blob: bytes, key: bytes, qtype: int, turns: Turns) -> tuple[int, bytes] | None:
    """The records and octets one more query of ``qtype`` at the name ``key`` (lower-case
    wire form) gets (a rotating answer's next rotation, its counter advanced), or None for
    NODATA. (``_entry`` and ``Turns.advance`` inlined: this is the per-query path.)"""
    flags = blob[1]
    have = flags if len(key) == blob[0] else flags & HAS_SRV
    if qtype == wire.TYPE_A:
        bit = have & HAS_A
    elif qtype == wire.TYPE_SRV:
        bit = have & HAS_SRV
    elif qtype == wire.TYPE_AAAA:
        bit = have & HAS_AAAA
    else:
        bit = have & -have if qtype == wire.TYPE_ANY else 0
    if not bit:
        return None
    pos = 3
    if bit != HAS_A and flags & HAS_A:
        pos += 14 if blob[8] > 1 else 6
    if bit == HAS_SRV and flags & HAS_AAAA:
        pos += 14 if blob[pos + 5] > 1 else 6
    offset, length, records, count = _ENTRY.unpack_from(blob, pos)
    if count < 2:
        if bit == HAS_SRV:
            fixed = blob[offset : offset + length]
            return records, with_targets(fixed, key[len(key) - blob[2] :])
        return records, blob[offset : offset + length]
    stride, size, slot = _ROTATION.unpack_from(blob, pos + 6)
    counters = turns.counters
    turn = (_COUNTER.unpack_from(counters, slot * 4)[0] + 1) % count
    _COUNTER.pack_into(counters, slot * 4, turn)
    start = offset + turn * stride
    end = start + size
    if end <= offset + length:
        return records, blob[start:end]
    return records, blob[start : offset + length] + blob[offset : end - length]


def slots(blob: bytes) -> list[int]:
    """The counter slots of ``blob``'s rotating answers (to give back when it is dropped)."""
    out = []
    pos = 3
    for bit in (HAS_A, HAS_AAAA, HAS_SRV):
        if blob[1] & bit:
            if blob[pos + 5] > 1:
                out.append(_ROTATION.unpack_from(blob, pos + _ENTRY.size)[2])
                pos += _ROTATION.size
            pos += _ENTRY.size
    return out


def view(blob: bytes, key: bytes) -> TypeTable:
    """What ``blob`` answers at the name ``key``, as a type table of new ``Answer``
    objects (for tests and tooling: their turns start at 0, not the zone's)."""
    made: dict[int, Answer] = {}
    for qtype in (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_SRV):
        pos, bit = _entry(blob, len(key), qtype)
        if not pos:
            continue
        offset, length, records, count = _ENTRY.unpack_from(blob, pos)
        body = blob[offset : offset + length]
        if bit == HAS_SRV:
            body = with_targets(body, key[len(key) - blob[2] :])
        if count < 2:
            made[qtype] = Answer.records(body, records)
        else:
            stride, size, _ = _ROTATION.unpack_from(blob, pos + _ENTRY.size)
            made[qtype] = RotatingAnswer.ring(body, records, rotation_shape(stride, count, size))
    first = next(iter(made.values()), None)
    if first is None:
        return ()
    return (made.get(wire.TYPE_A), made.get(wire.TYPE_AAAA), made.get(wire.TYPE_SRV), first)
