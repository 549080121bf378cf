"""Bad input and transport limits of the query path (``dnsserver.query.respond``).

Queries are crafted byte by byte where dnspython would refuse to build them; every reply
is parsed back with dnspython. The limits: nothing over UDP is longer than 512 octets
without EDNS or min(max(advertised, 512), 1232) with it; an answer that does not fit is
sent with TC=1 and at most a part of its records (never glue without its SRV); over TCP the
full answer is returned, up to the 65,535 octets a TCP frame can carry.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnsserver.query import QueryStats, answer_key, respond
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, build_zone

ORIGIN = "clusterset.local."
QID = 0x4242


def _big_service(name: str, count: int, v6: int = 0) -> ServiceRecords:
    endpoints = []
    for n in range(count):
        address = f"10.{3 + n // 250}.{n % 250}.{1 + n % 7}"
        hostname = f"{name}-{n}" if n % 2 else None
        endpoints.append(HeadlessEndpoint(f"cluster-{'abc'[n % 3]}", (address,), hostname))
    for n in range(v6):
        endpoints.append(HeadlessEndpoint("cluster-v6", (f"fd00:3::{n + 1:x}",)))
    return ServiceRecords(
        namespace="shop",
        name=name,
        headless=True,
        addresses=tuple(a for ep in endpoints for a in ep.addresses),
        ports=(("http", "TCP", 8080),),
        endpoints=tuple(endpoints),
    )


WEB = ServiceRecords("shop", "web", False, ("10.1.0.10", "fd00:1::10"), (("http", "TCP", 80),))
BIG = _big_service("big", 60, v6=20)  # ~60 A records (~1 kB), SRV with glue (~8 kB)
MID = _big_service("mid", 8)
ZONE = build_zone("clusterset.local", [WEB, BIG, MID], serial=1, ttl=5)

BIG_NAME = f"big.shop.svc.{ORIGIN}"
WEB_NAME = f"web.shop.svc.{ORIGIN}"


# ------------------------------------------------------------------------ crafting helpers


def header(
    qid: int = QID,
    flags: int = 0x0100,
    qd: int = 1,
    an: int = 0,
    ns: int = 0,
    ar: int = 0,
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def name_wire(name: str | dns.name.Name) -> bytes:
    raw = (dns.name.from_text(name) if isinstance(name, str) else name).to_wire()
    assert raw is not None
    return raw


def question(name: str | bytes = WEB_NAME, qtype: int = 1, qclass: int = 1) -> bytes:
    raw = name if isinstance(name, bytes) else name_wire(name)
    return raw + struct.pack("!HH", qtype, qclass)


def opt(payload: int = 1232, version: int = 0, rdata: bytes = b"", owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHBBHH", 41, payload, 0, version, 0, len(rdata)) + rdata


def query(
    name: str = WEB_NAME, qtype: str = "A", *, payload: int | None = None, qid: int = QID
) -> bytes:
    """A well-formed query; ``payload`` adds an EDNS OPT advertising that size."""
    if payload is None:
        return dns.message.make_query(name, qtype, id=qid).to_wire()
    return dns.message.make_query(name, qtype, id=qid, use_edns=0, payload=payload).to_wire()


def udp_limit(payload: int | None) -> int:
    return 512 if payload is None else min(max(payload, 512), 1232)


def answer(q: bytes, udp: bool = True, stats: QueryStats | None = None) -> bytes:
    reply = respond(ZONE, q, udp, stats if stats is not None else QueryStats())
    assert reply is not None
    return reply


def parse(reply: bytes) -> dns.message.Message:
    return dns.message.from_wire(reply)


def counts(raw: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack("!HHHH", raw[4:12])
    return qd, an, ns, ar


def records(rrsets: list[dns.rrset.RRset]) -> set[tuple[dns.name.Name, int, object]]:
    return {(r.name, r.rdtype, rd) for r in rrsets for rd in r}


def assert_truncated(q: bytes, reply: bytes, full: bytes, limit: int) -> dns.message.Message:
    """A TC=1 reply within ``limit``: the question echoed and, at most, part of ``full``."""
    assert len(reply) <= limit
    msg, whole = parse(reply), parse(full)
    assert msg.flags & dns.flags.TC
    assert msg.flags & dns.flags.QR
    assert msg.flags & dns.flags.AA
    assert msg.id == whole.id
    assert msg.rcode() == whole.rcode()
    assert msg.edns == whole.edns
    assert msg.question == whole.question
    qend = 12 + len(name_wire(msg.question[0].name)) + 4
    assert reply[12:qend] == q[12:qend]
    # Whatever records it carries are records of the full answer, fewer of them.
    assert records(msg.answer) <= records(whole.answer)
    assert records(msg.additional) <= records(whole.additional)
    assert not msg.authority
    assert len(records(msg.answer)) < len(records(whole.answer))
    # No glue without its SRV record.
    targets = {rd.target for r in msg.answer if r.rdtype == dns.rdatatype.SRV for rd in r}
    assert {r.name for r in msg.additional} <= targets
    return msg


def assert_formerr(q: bytes, reply: bytes | None) -> None:
    assert reply is not None
    msg = parse(reply)
    assert msg.rcode() == dns.rcode.FORMERR
    assert msg.id == int.from_bytes(q[:2], "big")
    assert msg.flags & dns.flags.QR
    assert not msg.answer
    assert not msg.authority


# ------------------------------------------------------------------------ header checks


@pytest.mark.parametrize("length", range(12))
def test_shorter_than_a_header_is_dropped(length: int) -> None:
    stats = QueryStats()
    assert respond(ZONE, query()[:length], True, stats) is None
    assert respond(ZONE, query()[:length], False, stats) is None
    assert stats.rejected == {"short": 2}
    assert stats.answered == {}


def test_response_is_dropped() -> None:
    stats = QueryStats()
    q = bytearray(query())
    q[2] |= 0x80
    assert respond(ZONE, bytes(q), True, stats) is None
    # Even a well-formed reply from a real server is not answered (no reflection loops).
    assert respond(ZONE, answer(query()), True, stats) is None
    assert stats.rejected == {"response": 2}


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_other_opcodes_are_notimp(opcode: int) -> None:
    stats = QueryStats()
    for rd in (0, 1):
        q = header(flags=(opcode << 11) | (rd << 8)) + question()
        reply = answer(q, stats=stats)
        msg = parse(reply)
        assert msg.rcode() == dns.rcode.NOTIMP
        assert msg.opcode() == opcode
        assert msg.id == QID
        assert msg.flags & dns.flags.QR
        assert bool(msg.flags & dns.flags.RD) == bool(rd)
        # The question is echoed, except for UPDATE, whose first section is a zone.
        assert counts(reply) == ((0, 0, 0, 0) if opcode == 5 else (1, 0, 0, 0))
    assert stats.rejected == {"opcode": 2}


def test_notimp_to_an_edns_query_carries_opt() -> None:
    """RFC 6891 section 7: a responder includes an OPT record in replies to EDNS requests."""
    q = dns.message.make_query("web.shop.svc.clusterset.local", "A", use_edns=0)
    q.set_opcode(dns.opcode.NOTIFY)
    msg = parse(answer(q.to_wire()))
    assert msg.rcode() == dns.rcode.NOTIMP
    assert msg.edns == 0


@pytest.mark.parametrize(
    ("qd", "an", "ns", "ar"),
    [(0, 0, 0, 0), (2, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 2), (1, 0, 0, 256)],
)
def test_bad_section_counts_are_formerr(qd: int, an: int, ns: int, ar: int) -> None:
    stats = QueryStats()
    # A full message: the counts are wrong, not the bytes.
    body = question() * max(qd, 1)
    body += (name_wire(WEB_NAME) + struct.pack("!HHIH", 1, 1, 5, 4) + b"\x0a\x00\x00\x01") * (
        an + ns
    )
    body += opt() * min(ar, 2)
    q = header(qd=qd, an=an, ns=ns, ar=ar) + body
    reply = answer(q, stats=stats)
    assert_formerr(q, reply)
    assert counts(reply) == (0, 0, 0, 0)
    assert stats.rejected == {"counts": 1}


@pytest.mark.parametrize("payload", [None, 1232])
def test_truncated_question_at_every_offset(payload: int | None) -> None:
    full = query(f"_http._tcp.{BIG_NAME}", "SRV", payload=payload)
    for cut in range(len(full)):
        for udp in (True, False):
            q = full[:cut]
            reply = respond(ZONE, q, udp, QueryStats())
            if cut < 12:
                assert reply is None
            else:
                assert_formerr(q, reply)
    assert parse(answer(full, udp=False)).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    "qname",
    [
        b"\xc0\x0c",  # a pointer to itself
        b"\x03web\xc0\x0c",
        b"\x03web\x04shop\x03svc\xc0\x20",
        b"\x03web\x40",  # extended label type (RFC 6891 obsoleted)
        b"\x03web\x80\x00",  # reserved label type
    ],
)
def test_compression_pointers_and_label_types_in_question_are_formerr(qname: bytes) -> None:
    stats = QueryStats()
    q = header() + question(qname)
    assert_formerr(q, answer(q, stats=stats))
    assert stats.rejected == {"question": 1}


def _name_of_length(octets: int) -> bytes:
    """An uncompressed wire name of exactly ``octets`` octets ending in clusterset.local."""
    tail = name_wire(ORIGIN)
    room = octets - len(tail)
    labels = b""
    while room > 0:
        size = min(63, room - 1)
        assert size >= 1
        labels += bytes([size]) + b"a" * size
        room -= size + 1
    assert room == 0
    return labels + tail


def test_label_lengths() -> None:
    stats = QueryStats()
    ok = header() + question(b"\x3f" + b"a" * 63 + name_wire(ORIGIN))
    assert parse(answer(ok, stats=stats)).rcode() == dns.rcode.NXDOMAIN
    for length in (64, 65, 127, 128, 191, 255):
        q = header() + question(bytes([length]) + b"a" * length + name_wire(ORIGIN))
        assert_formerr(q, answer(q, stats=stats))
    assert stats.rejected == {"question": 6}


def test_name_length_limit() -> None:
    stats = QueryStats()
    longest = _name_of_length(255)
    assert len(longest) == 255
    msg = parse(answer(header() + question(longest), stats=stats))
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert len(name_wire(msg.question[0].name)) == 255
    for octets in (256, 257, 300, 600):
        name = _name_of_length(octets)
        assert len(name) == octets
        q = header() + question(name)
        assert_formerr(q, answer(q, stats=stats))
    assert stats.rejected == {"question": 4}


def test_missing_root_label_is_formerr() -> None:
    q = header() + b"\x03web" + b"\x01"  # name runs off the end of the message
    assert_formerr(q, answer(q))
    q = header() + b"\x03web\x00\x00\x01"  # qclass cut in half
    assert_formerr(q, answer(q))


# ------------------------------------------------------------------------ additional section


@pytest.mark.parametrize(
    "record",
    [
        name_wire(WEB_NAME) + struct.pack("!HHIH", 1, 1, 5, 4) + b"\x0a\x00\x00\x01",  # an A
        b"\x00" + struct.pack("!HHIH", 1, 1, 5, 4) + b"\x0a\x00\x00\x01",  # root-owned A
        opt(owner=b"\x03web\x00"),  # an OPT not owned by the root
        opt(owner=b"\xc0\x0c"),  # an OPT owned by a pointer to the question
        b"\x00" + struct.pack("!HHIH", 250, 255, 0, 0),  # a TSIG-typed record
        opt(rdata=b"\x00\x0a\x00\x08")[:-2],  # OPT whose RDLENGTH overruns the message
        opt()[:10],  # OPT cut short
        b"",  # ARCOUNT=1 with nothing there
    ],
)
def test_additional_record_other_than_a_valid_opt_is_formerr(record: bytes) -> None:
    stats = QueryStats()
    q = header(ar=1) + question() + record
    reply = answer(q, stats=stats)
    assert_formerr(q, reply)
    msg = parse(reply)
    # The question parsed, so it is echoed.
    assert msg.question[0].name == dns.name.from_text(WEB_NAME)
    assert msg.edns == -1
    assert stats.rejected == {"opt": 1}


@pytest.mark.parametrize("version", [1, 2, 255])
@pytest.mark.parametrize("name", [WEB_NAME, "example.com.", "nothing.clusterset.local."])
def test_unknown_edns_version_is_badvers(version: int, name: str) -> None:
    stats = QueryStats()
    q = dns.message.make_query(name, "A", id=QID, use_edns=version).to_wire()
    reply = answer(q, stats=stats)
    msg = parse(reply)
    assert msg.rcode() == dns.rcode.BADVERS == 16
    assert msg.edns == 0  # our OPT, version 0, carries the upper rcode bits
    assert msg.payload == 1232
    assert msg.id == QID
    assert msg.question[0].name == dns.name.from_text(name)
    assert not msg.answer
    assert stats.rejected == {"badvers": 1}


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        (WEB_NAME, "A", dns.rcode.NOERROR),
        (WEB_NAME, "TXT", dns.rcode.NOERROR),
        ("nothing.clusterset.local.", "A", dns.rcode.NXDOMAIN),
        ("example.com.", "A", dns.rcode.REFUSED),
        (ORIGIN, "AXFR", dns.rcode.REFUSED),
        (BIG_NAME, "SRV", dns.rcode.NOERROR),  # truncated: the OPT is still there
    ],
)
@pytest.mark.parametrize("payload", [512, 1232, 4096])
def test_edns_query_gets_an_opt(name: str, qtype: str, rcode: int, payload: int) -> None:
    reply = answer(query(name, qtype, payload=payload))
    msg = parse(reply)
    assert msg.rcode() == rcode
    assert msg.edns == 0
    assert msg.payload == 1232
    assert msg.ednsflags == 0
    assert not msg.options
    assert reply.endswith(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


def test_edns_options_and_do_bit_are_accepted() -> None:
    q = dns.message.make_query(
        WEB_NAME,
        "A",
        id=QID,
        use_edns=0,
        want_dnssec=True,
        options=[
            dns.edns.GenericOption(
                dns.edns.OptionType.make(65001), b"\x01\x02\x03\x04\x05\x06\x07\x08"
            )
        ],
    ).to_wire()
    msg = parse(answer(q))
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.edns == 0
    assert len(msg.answer[0]) == 1


def test_plain_query_gets_no_opt() -> None:
    reply = answer(query())
    assert counts(reply)[3] == 0
    assert parse(reply).edns == -1


@pytest.mark.parametrize("junk", [b"\x00", b"junk", b"\xff" * 40, opt()])
def test_trailing_junk_after_the_question_is_ignored(junk: bytes) -> None:
    q = query(WEB_NAME, "A")
    msg = parse(answer(q + junk))
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.edns == -1  # ARCOUNT was 0: trailing bytes are not EDNS
    assert {rd.address for rd in msg.answer[0]} == {"10.1.0.10"}
    assert parse(answer(q + junk)) == parse(answer(q))


@pytest.mark.parametrize("qclass", [3, 4, 254, 255, 0, 0x0101])
def test_other_classes_are_refused(qclass: int) -> None:
    q = header() + question(WEB_NAME, 1, qclass)
    msg = parse(answer(q))
    assert msg.rcode() == dns.rcode.REFUSED
    assert msg.question[0].rdclass == qclass


# ------------------------------------------------------------------------ size limits


def test_big_answer_over_udp_without_edns_is_truncated() -> None:
    stats = QueryStats()
    q = query(BIG_NAME, "A")
    full = answer(q, udp=False)
    assert len(full) > 512
    reply = answer(q, udp=True, stats=stats)
    msg = assert_truncated(q, reply, full, 512)
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.id == QID
    assert msg.edns == -1
    assert stats.truncated == 1


def test_edns_4096_is_capped_at_1232_and_complete_when_it_fits() -> None:
    # About 1 kB: over 512, under 1232, so complete with EDNS.
    q = query(BIG_NAME, "A", payload=4096)
    reply = answer(q, udp=True)
    msg = parse(reply)
    assert 512 < len(reply) <= 1232
    assert not msg.flags & dns.flags.TC
    assert len(msg.answer[0]) == 60
    assert msg == parse(answer(q, udp=False))
    # About 8 kB: more than our cap, so truncated even though the client offered 4096.
    q = query(BIG_NAME, "SRV", payload=4096)
    full = answer(q, udp=False)
    assert len(full) > 4096
    msg = assert_truncated(q, answer(q, udp=True), full, 1232)
    assert msg.edns == 0
    assert msg.payload == 1232


def test_tcp_returns_the_full_answer() -> None:
    for payload in (None, 512, 4096):
        q = query(BIG_NAME, "SRV", payload=payload)
        reply = answer(q, udp=False)
        msg = parse(reply)
        assert not msg.flags & dns.flags.TC
        assert len(reply) > 4096
        [srv] = msg.answer
        assert len(srv) == 80
        assert len([rd for rrset in msg.additional for rd in rrset]) == 80
        assert {rd.target for rd in srv} == {rrset.name for rrset in msg.additional}


LIMIT_QUERIES = [
    (BIG_NAME, "A"),
    (BIG_NAME, "AAAA"),
    (BIG_NAME, "SRV"),
    (f"_http._tcp.{BIG_NAME}", "SRV"),
    (f"mid.shop.svc.{ORIGIN}", "SRV"),
    (f"mid.shop.svc.{ORIGIN}", "A"),
    (WEB_NAME, "A"),
    (f"nothing.{ORIGIN}", "A"),
    ("example.com.", "A"),
]


@pytest.mark.parametrize(("name", "qtype"), LIMIT_QUERIES)
@pytest.mark.parametrize(
    "payload", [None, 0, 100, 511, 512, 513, 700, 1000, 1100, 1231, 1232, 1233, 4096, 65535]
)
def test_udp_reply_never_exceeds_the_query_limit(
    name: str, qtype: str, payload: int | None
) -> None:
    stats = QueryStats()
    q = query(name, qtype, payload=payload)
    limit = udp_limit(payload)
    full = answer(q, udp=False)
    reply = answer(q, udp=True, stats=stats)
    assert len(reply) <= limit
    if len(full) <= limit:
        assert len(reply) == len(full)
        assert parse(reply) == parse(full)
        assert not parse(reply).flags & dns.flags.TC
        assert stats.truncated == 0
    else:
        # Truncated exactly when the full answer does not fit.
        assert_truncated(q, reply, full, limit)
        assert stats.truncated == 1


def test_both_regimes_are_exercised() -> None:
    """The limit matrix above is only meaningful if answers straddle 512 and 1232."""
    sizes = {(n, t): len(answer(query(n, t), udp=False)) for n, t in LIMIT_QUERIES}
    assert sizes[(BIG_NAME, "A")] in range(513, 1232 - 11)
    assert sizes[(BIG_NAME, "SRV")] > 1232
    assert sizes[(WEB_NAME, "A")] < 512


def test_tcp_reply_fits_a_tcp_frame() -> None:
    """Over TCP a message is framed by a 2-octet length (RFC 1035 4.2.2; RFC 7766 8)."""
    huge = _big_service("huge", 600)
    zone = build_zone("clusterset.local", [huge], serial=1, ttl=5)
    q = query(f"huge.shop.svc.{ORIGIN}", "SRV", payload=4096)
    reply = respond(zone, q, False, QueryStats())
    assert reply is not None
    assert len(reply) <= 65535
    msg = parse(reply)
    assert msg.id == QID
    assert msg.rcode() == dns.rcode.NOERROR


# ------------------------------------------------------------------------ counters


def test_rejection_counters_per_reason() -> None:
    bad = {
        "short": b"\x00\x01\x00",
        "response": header(flags=0x8100) + question(),
        "opcode": header(flags=0x1000) + question(),
        "counts": header(qd=0),
        "question": header() + question(b"\xc0\x0c"),
        "opt": header(ar=1) + question() + opt(owner=b"\x01a\x00"),
        "badvers": header(ar=1) + question() + opt(version=1),
    }
    stats = QueryStats()
    for rounds in (1, 2, 3):
        for q in bad.values():
            respond(ZONE, q, True, stats)
        assert stats.rejected == dict.fromkeys(bad, rounds)
    # Good queries, REFUSED and negative answers are not rejections; they count as answered.
    before = dict(stats.rejected)
    respond(ZONE, query(), True, stats)
    respond(ZONE, query("example.com."), True, stats)
    respond(ZONE, query(f"nothing.{ORIGIN}"), True, stats)
    assert stats.rejected == before
    assert stats.answered[answer_key(1, dns.rcode.NOERROR)] == 1
    assert stats.answered[answer_key(1, dns.rcode.REFUSED)] == 1
    assert stats.answered[answer_key(1, dns.rcode.NXDOMAIN)] == 1


# ------------------------------------------------------------------------ property


VALID = [
    query(),
    query(WEB_NAME, "SRV", payload=1232),
    query(f"_http._tcp.{BIG_NAME}", "SRV"),
    query(BIG_NAME, "A", payload=4096),
    query(BIG_NAME, "AAAA", payload=600),
    query("WeB.sHoP.svc.ClusterSet.local.", "A", payload=512),
    query(f"nothing.{ORIGIN}", "TXT"),
    query(ORIGIN, "SOA", payload=100),
    query("example.com.", "A"),
    query(ORIGIN, "AXFR"),
    dns.message.make_query(WEB_NAME, "A", use_edns=1, id=7).to_wire(),
    dns.message.make_query(WEB_NAME, "A", "CH", id=8).to_wire(),
]
HEADER_ONLY = header(qd=1)
HEADER_EDNS = header(qd=1, ar=1)


# Truncation mostly gives FORMERR, so it is drawn less often than the rest.
MUTATIONS = ["flip", "flip", "flip", "set", "set", "insert", "delete", "truncate"]


@st.composite
def mutated_query(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(MUTATIONS))
        if op in ("flip", "set", "delete") and not data:
            continue
        if op == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0, 1, 0x3F, 0x40, 0x80, 0xC0, 0xFF, 41]))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 4))]
    return bytes(data)


messages = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda tail: HEADER_ONLY + tail, st.binary(max_size=300)),
    st.builds(lambda tail: HEADER_EDNS + tail, st.binary(max_size=300)),
    mutated_query(),
    mutated_query(),
    mutated_query(),
)


def _reply_limit(q: bytes, msg: dns.message.Message) -> int:
    """The UDP limit the server had to respect for ``q``, given that it replied ``msg``."""
    if msg.edns < 0:
        return 512
    # An OPT in the reply means the query's OPT parsed: it follows the question.
    qend = 12 + len(name_wire(msg.question[0].name)) + 4
    advertised = int.from_bytes(q[qend + 3 : qend + 5], "big")
    return min(max(advertised, 512), 1232)


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(q=messages, udp=st.booleans())
def test_random_and_mutated_input_never_raises(q: bytes, udp: bool) -> None:
    stats = QueryStats()
    reply = respond(ZONE, q, udp, stats)
    if reply is None:
        assert len(q) < 12 or q[2] & 0x80
        event("dropped")
        return
    assert len(q) >= 12
    assert not q[2] & 0x80
    msg = dns.message.from_wire(reply)
    event(dns.rcode.to_text(msg.rcode()) + (" TC" if msg.flags & dns.flags.TC else ""))
    assert msg.id == int.from_bytes(q[:2], "big")
    assert msg.flags & dns.flags.QR
    assert not msg.flags & dns.flags.RA
    assert msg.opcode() == (q[2] >> 3) & 0x0F
    assert bool(msg.flags & dns.flags.RD) == bool(q[2] & 0x01)
    if udp:
        assert len(reply) <= _reply_limit(q, msg)
    else:
        assert len(reply) <= 65535
    if msg.question:
        # The echoed question is the query's own bytes.
        qend = 12 + len(name_wire(msg.question[0].name)) + 4
        assert reply[12:qend] == q[12:qend]
    assert sum(stats.answered.values()) == 1


def test_the_fast_ipv4_path_agrees_with_ipaddress() -> None:
    import ipaddress
    import random

    from dnsserver import wire

    rng = random.Random(20261122)
    samples = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1", "1.2.3", "1.2.3.4.5"]
    samples += ["256.1.1.1", "-1.1.1.1", " 1.1.1.1", "1.1.1.1 ", "1.2.3.+4", "\uff11.2.3.4"]
    samples += ["fd00::7", "::ffff:1.2.3.4", "1.2.3.04", "1..2.3", ""]
    samples += [".".join(str(rng.randrange(300)) for _ in range(4)) for _ in range(2000)]
    for text in samples:
        try:
            ip = ipaddress.ip_address(text)
            expected: tuple[int, bytes] | None = (ip.version, ip.packed)
        except ValueError:
            expected = None
        try:
            got: tuple[int, bytes] | None = wire.packed_address(text)
        except ValueError:
            got = None
        assert got == expected, text
