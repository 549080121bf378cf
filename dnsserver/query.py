"""The per-query path: header and question in, pre-built answer bytes out.

Theory of operation. ``respond`` reads the 12-byte header, walks the question's labels
once to find where the question ends, lower-cases the name's bytes into a lookup key, and
looks the key up in the ``Zone``. The response is the query's ID, one of
the answer's four pre-packed headers (RD echoed, EDNS or not), the query's own question
bytes (so the case of the name is echoed, and the answers' owner pointer ``0xC00C`` lands
on it), the answer's pre-encoded sections and, for EDNS queries, our OPT record.

Rules, in the order they are checked (RFC 1035, RFC 6891, RFC 8906):

- shorter than a header, or a response (QR=1): dropped silently, since replying to
  responses invites loops and reflection;
- opcode other than QUERY: NOTIMP (echoing the question and EDNS when it has them); not
  exactly one question, records in the answer or
  authority section, more than one additional record, a malformed question or OPT record:
  FORMERR;
- EDNS version other than 0: BADVERS;
- class other than IN, AXFR/IXFR, or a name outside the zone: REFUSED (no recursion, RA=0);
- before the first full sync, names in the zone that are not in the table: SERVFAIL
  (never a cacheable NXDOMAIN);
- a response larger than the client's UDP limit (512 without EDNS, else the advertised
  size between 512 and ``MAX_UDP_PAYLOAD``) is sent with TC=1 and the records that fit,
  cut at the points the answer was built with (``Answer.cut``: whole endpoints); over TCP
  every answer fits, since answers are capped at 65,535 octets when they are built (an
  answer that had to be capped says so with TC=1 over both transports);
- a rotating answer (``Answer.rotation``) sends its next rotation per query.

A plain name's answers may be one ``bytes`` in the table instead of a type table
(``dnsserver.nameblob``): the same response is read from it (``_blob_reply``).

No response is ever longer over UDP than that limit, so the server cannot amplify.
``QueryStats`` holds plain integer counters; the metrics adapter reads them at scrape time,
so the query path pays a dict update, not a Prometheus call.
"""

from __future__ import annotations

import struct

from dnsserver import nameblob, wire
from dnsserver.answer import (
    EMPTY_TYPES,
    MAX_TCP_MESSAGE,
    MAX_UDP_PAYLOAD,
    NO_SLOT,
    OPT_RECORD_LEN,
    PLAIN_UDP_LIMIT,
    TYPE_SLOTS,
    Answer,
)
from dnsserver.zone import Zone

# QDCOUNT 1, ANCOUNT 0, NSCOUNT 0 and the high octet of ARCOUNT: a plain query's counts.
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00"
_QUESTION_COUNTS = (b"\x00\x01\x00\x00\x00\x00\x00\x00", b"\x00\x01\x00\x00\x00\x00\x00\x01")


def answer_key(qtype: int, rcode: int) -> int:
    """The key of ``QueryStats.answered`` for a (qtype, rcode) pair."""
    return qtype << 8 | rcode


def split_answer_key(key: int) -> tuple[int, int]:
    return key >> 8, key & 0xFF


class QueryStats:
    """Counters for one transport: answered queries by (qtype, rcode), rejections by reason,
    and answers the kernel would not take (``send_dropped``, socket buffer full)."""

    __slots__ = ("answered", "rejected", "send_dropped", "truncated")

    def __init__(self) -> None:
        # Keyed by ``answer_key(qtype, rcode)``: a plain int, so counting allocates nothing
        # the garbage collector tracks (a tuple per query would wake it every few hundred).
        self.answered: dict[int, int] = {}
        self.rejected: dict[str, int] = {}
        self.truncated = 0
        self.send_dropped = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def add(self, other: QueryStats) -> None:
        """Add every counter of ``other`` to these (a sum over DNS worker processes)."""
        for key, n in other.answered.items():
            self.answered[key] = self.answered.get(key, 0) + n
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        self.truncated += other.truncated
        self.send_dropped += other.send_dropped


def _error(q: bytes, qend: int, rcode: int, edns: int, stats: QueryStats, qtype: int) -> bytes:
    """A reply carrying only the question (when it parsed) and, for EDNS, an OPT record."""
    key = qtype << 8 | rcode
    stats.answered[key] = stats.answered.get(key, 0) + 1
    rd = q[2] & 0x01
    flags = struct.pack("!BB", 0x80 | (q[2] & 0x78) | rd, rcode & 0x0F)
    if qend == 0:
        return (
            q[:2]
            + flags
            + b"\x00\x00\x00\x00\x00\x00\x00"
            + (b"\x01" if edns else b"\x00")
            + (wire.opt_record(MAX_UDP_PAYLOAD, rcode >> 4) if edns else b"")
        )
    tail = wire.opt_record(MAX_UDP_PAYLOAD, rcode >> 4) if edns else b""
    return q[:2] + flags + _QUESTION_COUNTS[edns] + q[12:qend] + tail


def _not_implemented(q: bytes, stats: QueryStats) -> bytes:
    """NOTIMP for an opcode other than QUERY: with the question and an OPT record when the
    message has the shape of a query (RFC 6891 section 7: EDNS queries get EDNS replies)."""
    n = len(q)
    # UPDATE's first section is a zone, not a question (RFC 2136): echo nothing for it.
    is_update = (q[2] & 0x78) >> 3 == 5
    if not is_update and q[4:11] == _ONE_QUESTION and q[11] <= 1:
        i = 12
        while i < n and 0 < q[i] <= 63:
            i += q[i] + 1
        qend = i + 5
        if i < n and q[i] == 0 and i - 11 <= 255 and qend <= n:
            edns = int(q[11] == 1 and qend + 11 <= n and q[qend : qend + 3] == b"\x00\x00\x29")
            return _error(q, qend, wire.RCODE_NOTIMP, edns, stats, (q[i + 1] << 8) | q[i + 2])
    return _error(q, 0, wire.RCODE_NOTIMP, 0, stats, 0)


def _in_zone(key: bytes, origin: bytes) -> bool:
    """True when the wire name ``key`` is the origin or below it, on a label boundary."""
    cut = len(key) - len(origin)
    if cut < 0 or not key.endswith(origin):
        return False
    i = 0
    while i < cut:
        i += key[i] + 1
    return i == cut


def _bad_header(q: bytes, stats: QueryStats) -> bytes | None:
    """The reply to a message whose header is not that of one plain query (None: drop it)."""
    if len(q) < 12:
        stats.reject("short")
        return None
    if q[2] & 0x80:
        stats.reject("response")
        return None
    if q[2] & 0x78:
        stats.reject("opcode")
        return _not_implemented(q, stats)
    stats.reject("counts")
    return _error(q, 0, wire.RCODE_FORMERR, 0, stats, 0)


def _question_end(q: bytes) -> int:
    """The offset of the question name's root label, or -1 for a malformed question.
    Compression pointers are not allowed in a question, so each label is a length octet."""
    n = len(q)
    i = 12
    while i < n:
        length = q[i]
        if length == 0 or length > 63:
            break
        i += length + 1
    if i >= n or q[i] != 0 or i - 11 > 255 or i + 5 > n:
        return -1
    return i


def _edns_limit(q: bytes, qend: int, udp: bool, qtype: int, stats: QueryStats) -> int | bytes:
    """The size limit of an EDNS query's response, or the error reply for a bad OPT."""
    n = len(q)
    # One additional record: it must be an OPT with the root owner (RFC 6891 6.1.1).
    if qend + 11 > n or q[qend] != 0 or q[qend + 1] != 0 or q[qend + 2] != wire.TYPE_OPT:
        stats.reject("opt")
        return _error(q, qend, wire.RCODE_FORMERR, 0, stats, qtype)
    if qend + 11 + ((q[qend + 9] << 8) | q[qend + 10]) > n:
        stats.reject("opt")
        return _error(q, qend, wire.RCODE_FORMERR, 0, stats, qtype)
    if q[qend + 6] != 0:
        stats.reject("badvers")
        return _error(q, qend, wire.RCODE_BADVERS, 1, stats, qtype)
    if not udp:
        return MAX_TCP_MESSAGE
    advertised = (q[qend + 3] << 8) | q[qend + 4]
    return min(max(advertised, PLAIN_UDP_LIMIT), MAX_UDP_PAYLOAD)


def respond(zone: Zone, q: bytes, udp: bool, stats: QueryStats) -> bytes | None:
    """The response to one query message, or None to drop it."""
    if len(q) < 12 or q[2] & 0xF8 or q[4:11] != _ONE_QUESTION or q[11] > 1:
        return _bad_header(q, stats)
    i = _question_end(q)
    if i < 0:
        stats.reject("question")
        return _error(q, 0, wire.RCODE_FORMERR, 0, stats, 0)
    qend = i + 5
    qtype = (q[i + 1] << 8) | q[i + 2]
    edns = q[11]  # one additional record, which must be an OPT
    limit = PLAIN_UDP_LIMIT if udp else MAX_TCP_MESSAGE
    if edns:
        checked = _edns_limit(q, qend, udp, qtype, stats)
        if isinstance(checked, bytes):
            return checked
        limit = checked
    if q[i + 3] != 0 or q[i + 4] != wire.CLASS_IN or qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
        return _error(q, qend, wire.RCODE_REFUSED, edns, stats, qtype)
    key = q[12 : i + 1].lower()
    types = zone.table.get(key)
    if types is None and zone.empty_nonterminal(key):  # not in the table: NODATA
        types = EMPTY_TYPES
    answer: Answer
    if isinstance(types, bytes):  # a plain name's answers, in one blob (``nameblob``)
        picked = nameblob.pick(types, key, qtype, zone.turns)
        if picked is not None:
            return _blob_reply(q, qend, qtype, picked, edns, stats)
        answer = zone.nodata
    elif types is not None:
        slot = TYPE_SLOTS.get(qtype, NO_SLOT)
        answer = (types[slot] if slot < len(types) else None) or zone.nodata
    elif not _in_zone(key, zone.origin_wire):
        return _error(q, qend, wire.RCODE_REFUSED, edns, stats, qtype)
    else:
        answer = zone.nxdomain if zone.synced else zone.servfail
    return _reply(q, qend, qtype, answer, edns, limit, stats)


def _blob_reply(
    q: bytes, qend: int, qtype: int, picked: tuple[int, bytes], edns: int, stats: QueryStats
) -> bytes:
    """The response carrying a blob's answer (``nameblob.pick``): NOERROR, never cut (a
    blob's answers fit every response, see ``nameblob``), as ``_reply`` sends an ``Answer``."""
    answered = stats.answered
    answered[qtype << 8] = answered.get(qtype << 8, 0) + 1
    records, body = picked
    head = nameblob.noerror_heads(records)[(q[2] & 0x01) | (edns << 1)]
    if edns:
        return q[:2] + head + q[12:qend] + body + Answer.edns_tail
    return q[:2] + head + q[12:qend] + body


def _reply(
    q: bytes, qend: int, qtype: int, answer: Answer, edns: int, limit: int, stats: QueryStats
) -> bytes:
    """The response carrying ``answer``: its next rotation, cut with TC=1 if over ``limit``."""
    counter = qtype << 8 | answer.rcode
    stats.answered[counter] = stats.answered.get(counter, 0) + 1
    body = answer.take_turn() if answer.rotation else answer.body
    rd = q[2] & 0x01
    if qend + len(body) + OPT_RECORD_LEN * edns > limit:
        stats.truncated += 1
        cut = answer.cut(body, limit - qend - OPT_RECORD_LEN * edns, rd, edns)
        return q[:2] + cut[:10] + q[12:qend] + cut[10:] + (answer.edns_tail if edns else b"")
    head = answer.heads[rd | (edns << 1)]
    if edns:
        return q[:2] + head + q[12:qend] + body + answer.edns_tail
    return q[:2] + head + q[12:qend] + body
