"""What the zone answers: table-driven cases, in the style of CoreDNS's kubernetes handler tests.

Each case is (query name, qtype, expected rcode, expected answer, authority and additional
sections as zone-file lines). A query is packed by dnspython, answered by
``dnsserver.query.respond`` and the reply parsed back by dnspython; sections are compared as
sets of records (order does not matter), and the header counts are checked too, so a
duplicated record is caught.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from dnsserver.answer import Answer
from dnsserver.query import QueryStats, respond
from dnsserver.rotation import rotating
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, Zone, build_zone

SERIAL = 42
TTL = 5

WEB = ServiceRecords(
    namespace="shop",
    name="web",
    headless=False,
    addresses=("10.1.0.10", "10.2.0.20", "fd00:1::10"),
    ports=(("http", "TCP", 80), ("", "TCP", 9090)),
)
DB = ServiceRecords(
    namespace="shop",
    name="db",
    headless=True,
    addresses=("10.1.0.5", "10.2.0.7", "fd00::7"),
    ports=(("pg", "TCP", 5432),),
    endpoints=(
        HeadlessEndpoint("east", ("10.1.0.5",), hostname="db-0"),
        HeadlessEndpoint("west", ("10.2.0.7", "fd00::7")),
    ),
)
EMPTY = ServiceRecords(
    namespace="shop", name="empty", headless=True, addresses=(), ports=(("pg", "TCP", 5432),)
)
SERVICES = (WEB, DB, EMPTY)

Record = tuple[dns.name.Name, int, int, int, object]


def soa(origin: str = "clusterset.local.", serial: int = SERIAL, ttl: int = TTL) -> str:
    return (
        f"{origin} {ttl} IN SOA ns.dns.{origin} hostmaster.{origin} {serial} 7200 1800 86400 {ttl}"
    )


SOA = soa()


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: str
    rcode: int
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    qclass: str = "IN"


def nxdomain(qname: str, qtype: str = "A") -> Case:
    return Case(qname, qtype, dns.rcode.NXDOMAIN, authority=(SOA,))


def nodata(qname: str, qtype: str) -> Case:
    return Case(qname, qtype, dns.rcode.NOERROR, authority=(SOA,))


def refused(qname: str, qtype: str = "A", qclass: str = "IN") -> Case:
    return Case(qname, qtype, dns.rcode.REFUSED, qclass=qclass)


W = "web.shop.svc.clusterset.local."
D = "db.shop.svc.clusterset.local."
DB_GLUE = (
    f"db-0.east.{D} 5 IN A 10.1.0.5",
    f"10-2-0-7.west.{D} 5 IN A 10.2.0.7",
    f"fd00--7.west.{D} 5 IN AAAA fd00::7",
)
DB_SRV = (
    f"0 33 5432 db-0.east.{D}",
    f"0 33 5432 10-2-0-7.west.{D}",
    f"0 33 5432 fd00--7.west.{D}",
)

CASES: list[Case] = [
    # ClusterSetIP service: addresses, SRV for every port, _<port>._<proto> for named ports.
    Case(W, "A", dns.rcode.NOERROR, (f"{W} 5 IN A 10.1.0.10", f"{W} 5 IN A 10.2.0.20")),
    Case(W, "AAAA", dns.rcode.NOERROR, (f"{W} 5 IN AAAA fd00:1::10",)),
    Case(
        W,
        "SRV",
        dns.rcode.NOERROR,
        (f"{W} 5 IN SRV 0 100 80 {W}", f"{W} 5 IN SRV 0 100 9090 {W}"),
    ),
    Case(f"_http._tcp.{W}", "SRV", dns.rcode.NOERROR, (f"_http._tcp.{W} 5 IN SRV 0 100 80 {W}",)),
    nodata(f"_http._tcp.{W}", "A"),
    # ANY (RFC 8482): one RRset of the name, A first; none at an empty non-terminal.
    Case(W, "ANY", dns.rcode.NOERROR, (f"{W} 5 IN A 10.1.0.10", f"{W} 5 IN A 10.2.0.20")),
    Case(f"_http._tcp.{W}", "ANY", dns.rcode.NOERROR, (f"_http._tcp.{W} 5 IN SRV 0 100 80 {W}",)),
    nodata(f"_tcp.{W}", "ANY"),
    nodata(f"_tcp.{W}", "SRV"),  # empty non-terminal
    nxdomain(f"_9090._tcp.{W}", "SRV"),  # the unnamed port has no _<port> name
    nxdomain(f"_http._udp.{W}", "SRV"),
    nxdomain(f"_pg._tcp.{W}", "SRV"),
    nodata(W, "TXT"),
    nodata(W, "MX"),
    nodata(W, "SOA"),
    nodata(W, "NS"),
    nxdomain(f"x.{W}"),
    # Headless service: every endpoint, SRV per endpoint name with glue.
    Case(D, "A", dns.rcode.NOERROR, (f"{D} 5 IN A 10.1.0.5", f"{D} 5 IN A 10.2.0.7")),
    Case(D, "AAAA", dns.rcode.NOERROR, (f"{D} 5 IN AAAA fd00::7",)),
    Case(D, "SRV", dns.rcode.NOERROR, tuple(f"{D} 5 IN SRV {s}" for s in DB_SRV), (), DB_GLUE),
    Case(
        f"_pg._tcp.{D}",
        "SRV",
        dns.rcode.NOERROR,
        tuple(f"_pg._tcp.{D} 5 IN SRV {s}" for s in DB_SRV),
        (),
        DB_GLUE,
    ),
    Case(f"db-0.east.{D}", "A", dns.rcode.NOERROR, (f"db-0.east.{D} 5 IN A 10.1.0.5",)),
    nodata(f"db-0.east.{D}", "AAAA"),
    Case(f"10-2-0-7.west.{D}", "A", dns.rcode.NOERROR, (f"10-2-0-7.west.{D} 5 IN A 10.2.0.7",)),
    nodata(f"10-2-0-7.west.{D}", "AAAA"),
    Case(f"fd00--7.west.{D}", "AAAA", dns.rcode.NOERROR, (f"fd00--7.west.{D} 5 IN AAAA fd00::7",)),
    nodata(f"fd00--7.west.{D}", "A"),
    nodata(f"east.{D}", "A"),  # cluster label: empty non-terminal
    nodata(f"west.{D}", "AAAA"),
    nxdomain(f"10-1-0-5.east.{D}"),  # an endpoint with a hostname has no dashed name
    nxdomain(f"db-0.west.{D}"),  # the hostname is per cluster
    nxdomain(f"db-0.north.{D}"),
    nxdomain(f"nope.east.{D}"),
    # A headless service without endpoints does not exist.
    nxdomain("empty.shop.svc.clusterset.local."),
    nxdomain("empty.shop.svc.clusterset.local.", "SRV"),
    nxdomain("_pg._tcp.empty.shop.svc.clusterset.local.", "SRV"),
    nxdomain("missing.shop.svc.clusterset.local."),
    # Empty non-terminals and missing namespaces.
    nodata("svc.clusterset.local.", "A"),
    nodata("svc.clusterset.local.", "SRV"),
    nodata("shop.svc.clusterset.local.", "A"),
    nodata("shop.svc.clusterset.local.", "SRV"),
    nxdomain("other.svc.clusterset.local."),
    nxdomain("web.other.svc.clusterset.local."),
    nxdomain("web.shop.clusterset.local."),
    nxdomain("nothing.clusterset.local."),
    nxdomain("ns.dns.clusterset.local."),
    # Apex and dns-version.
    Case("clusterset.local.", "SOA", dns.rcode.NOERROR, (SOA,)),
    Case(
        "clusterset.local.",
        "NS",
        dns.rcode.NOERROR,
        ("clusterset.local. 5 IN NS ns.dns.clusterset.local.",),
    ),
    nodata("clusterset.local.", "A"),
    nodata("clusterset.local.", "TXT"),
    Case(
        "dns-version.clusterset.local.",
        "TXT",
        dns.rcode.NOERROR,
        ('dns-version.clusterset.local. 5 IN TXT "1.0.0"',),
    ),
    nodata("dns-version.clusterset.local.", "A"),
    # Outside the zone, zone transfers, other classes.
    refused("example.com."),
    refused("web.shop.svc.cluster.local."),
    refused("local.", "SOA"),
    refused(".", "NS"),
    refused("evilclusterset.local."),
    refused("web.shop.svc.evilclusterset.local."),
    refused(r"x\010clusterset.local."),  # the zone's wire bytes inside a label
    refused("clusterset.local.evil.com."),
    refused("clusterset.local.", "AXFR"),
    refused("clusterset.local.", "IXFR"),
    refused(W, "AXFR"),
    refused("version.bind.", "TXT", "CH"),
    refused("clusterset.local.", "SOA", "CH"),
    refused(W, "A", "CH"),
    refused(W, "A", "ANY"),
]


def flatten(rrsets: Iterable[dns.rrset.RRset]) -> list[Record]:
    return [(r.name, r.ttl, r.rdclass, r.rdtype, rd) for r in rrsets for rd in r]


def records(lines: Sequence[str]) -> list[Record]:
    """Zone-file lines (owner ttl class type rdata) as comparable records."""
    out: list[Record] = []
    for line in lines:
        owner, ttl, rdclass, rdtype, rdata = line.split(None, 4)
        out.extend(flatten([dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata)]))
    return out


def make_query(
    qname: str,
    qtype: str,
    qclass: str = "IN",
    *,
    qid: int = 0x1234,
    rd: bool = True,
    edns: bool = False,
) -> bytes:
    q = dns.message.make_query(
        qname,
        qtype,
        qclass,
        use_edns=0 if edns else None,
        id=qid,
        flags=dns.flags.RD if rd else 0,
    )
    return q.to_wire()


def ask(zone: Zone, wire: bytes, udp: bool = True) -> tuple[bytes, dns.message.Message]:
    raw = respond(zone, wire, udp, QueryStats())
    assert raw is not None
    return raw, dns.message.from_wire(raw)


def counts(raw: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack("!HHHH", raw[4:12])
    return qd, an, ns, ar


def check_sections(raw: bytes, msg: dns.message.Message, case: Case, edns: bool) -> None:
    assert set(flatten(msg.answer)) == set(records(case.answer))
    assert set(flatten(msg.authority)) == set(records(case.authority))
    assert set(flatten(msg.additional)) == set(records(case.additional))
    # The header counts match record for record (no duplicates hidden by rrset merging).
    assert counts(raw) == (
        1,
        len(case.answer),
        len(case.authority),
        len(case.additional) + int(edns),
    )


@pytest.fixture(scope="module")
def zone() -> Zone:
    return build_zone("clusterset.local", SERVICES, serial=SERIAL, ttl=TTL)


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.qname}/{c.qclass}/{c.qtype}" for c in CASES])
def test_answers(zone: Zone, case: Case, edns: bool) -> None:
    wire = make_query(case.qname, case.qtype, case.qclass, qid=0xBEEF, edns=edns)
    raw, msg = ask(zone, wire)
    assert msg.rcode() == case.rcode, dns.rcode.to_text(msg.rcode())
    assert msg.id == 0xBEEF
    assert msg.flags & dns.flags.QR
    assert not msg.flags & dns.flags.RA
    assert not msg.flags & dns.flags.TC
    assert msg.flags & dns.flags.RD
    if case.rcode != dns.rcode.REFUSED:
        assert msg.flags & dns.flags.AA
    # The question is echoed byte for byte.
    qend = 12 + len(dns.name.from_text(case.qname).to_wire() or b"") + 4
    assert raw[12:qend] == wire[12:qend]
    assert msg.question[0].name == dns.name.from_text(case.qname)
    assert msg.question[0].rdtype == dns.rdatatype.from_text(case.qtype)
    assert msg.question[0].rdclass == dns.rdataclass.from_text(case.qclass)
    check_sections(raw, msg, case, edns)
    if edns:
        assert msg.edns == 0
        assert msg.payload == 1232
    else:
        assert msg.edns == -1


def test_negative_answers_carry_soa_with_minimum_equal_to_ttl() -> None:
    zone = build_zone("clusterset.local", SERVICES, serial=7, ttl=30)
    for qname, qtype, rcode in [
        ("nothing.clusterset.local.", "A", dns.rcode.NXDOMAIN),
        ("svc.clusterset.local.", "A", dns.rcode.NOERROR),
        (W, "TXT", dns.rcode.NOERROR),
    ]:
        _, msg = ask(zone, make_query(qname, qtype))
        assert msg.rcode() == rcode
        assert msg.answer == []
        [rrset] = msg.authority
        assert rrset.rdtype == dns.rdatatype.SOA
        assert rrset.name == dns.name.from_text("clusterset.local.")
        [rd] = rrset
        assert rrset.ttl == 30
        assert rd.minimum == 30
        assert rd.serial == 7
    _, msg = ask(zone, make_query(W, "A"))
    assert {r.ttl for r in msg.answer} == {30}


@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("qid", [0, 1, 0x8000, 0xFFFF])
def test_flags_and_id(zone: Zone, rd: bool, qid: int) -> None:
    for qname, qtype in [
        (W, "A"),
        ("nothing.clusterset.local.", "A"),
        ("svc.clusterset.local.", "A"),
        ("example.com.", "A"),
        ("clusterset.local.", "AXFR"),
    ]:
        raw, msg = ask(zone, make_query(qname, qtype, qid=qid, rd=rd))
        assert raw[:2] == qid.to_bytes(2, "big")
        assert msg.id == qid
        assert bool(msg.flags & dns.flags.QR)
        assert bool(msg.flags & dns.flags.RD) == rd
        assert not msg.flags & dns.flags.RA
        assert msg.opcode() == 0
        if msg.rcode() != dns.rcode.REFUSED:
            assert msg.flags & dns.flags.AA


def test_unsynced_zone_servfails_service_names_but_apex_answers() -> None:
    zone = build_zone("clusterset.local", SERVICES, serial=SERIAL, ttl=TTL, synced=False)
    assert not zone.synced
    for qname, qtype in [
        (W, "A"),
        (W, "SRV"),
        (f"_http._tcp.{W}", "SRV"),
        (D, "A"),
        (f"db-0.east.{D}", "A"),
        ("empty.shop.svc.clusterset.local.", "A"),
        ("nothing.clusterset.local.", "A"),
    ]:
        raw, msg = ask(zone, make_query(qname, qtype))
        assert msg.rcode() == dns.rcode.SERVFAIL, (qname, qtype)
        assert counts(raw) == (1, 0, 0, 0)
    _, msg = ask(zone, make_query("clusterset.local.", "SOA"))
    assert msg.rcode() == dns.rcode.NOERROR
    assert set(flatten(msg.answer)) == set(records([SOA]))
    _, msg = ask(zone, make_query("dns-version.clusterset.local.", "TXT"))
    assert msg.rcode() == dns.rcode.NOERROR
    assert len(msg.answer) == 1
    _, msg = ask(zone, make_query("example.com.", "A"))
    assert msg.rcode() == dns.rcode.REFUSED


def test_query_case_is_echoed_and_matches(zone: Zone) -> None:
    qname = "WeB.ShOp.svc.CLUSTERSET.local."
    wire = make_query(qname, "A")
    raw, msg = ask(zone, wire)
    assert msg.rcode() == dns.rcode.NOERROR
    # The raw question bytes are the query's, case included.
    qwire = b"\x03WeB\x04ShOp\x03svc\x0aCLUSTERSET\x05local\x00"
    assert wire[12 : 12 + len(qwire)] == qwire
    assert raw[12 : 12 + len(qwire) + 4] == wire[12 : 12 + len(qwire) + 4]
    # Every answer's owner is the query name with its case (dnspython keeps the case it read).
    assert msg.question[0].name.to_text() == qname
    assert len(msg.answer) == 1
    assert msg.answer[0].name.to_text() == qname
    assert {rd.address for rd in msg.answer[0]} == {"10.1.0.10", "10.2.0.20"}
    # Same for an SRV with glue and for a negative answer.
    _, msg = ask(zone, make_query("_PG._Tcp.DB.shop.SVC.clusterset.LOCAL.", "SRV"))
    assert msg.answer[0].name.to_text() == "_PG._Tcp.DB.shop.SVC.clusterset.LOCAL."
    assert len(msg.answer[0]) == 3
    assert len(flatten(msg.additional)) == 3
    _, msg = ask(zone, make_query("NoThInG.ClusterSet.Local.", "A"))
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.question[0].name.to_text() == "NoThInG.ClusterSet.Local."
    _, msg = ask(zone, make_query("CLUSTERSET.LOCAL.", "SOA"))
    assert msg.answer[0].name.to_text() == "CLUSTERSET.LOCAL."
    assert set(flatten(msg.answer)) == set(records([SOA]))


def test_serial_changes_between_zones() -> None:
    old = build_zone("clusterset.local", SERVICES, serial=1, ttl=TTL)
    new = build_zone("clusterset.local", SERVICES, serial=2, ttl=TTL)
    serials = []
    for zone in (old, new):
        _, msg = ask(zone, make_query("clusterset.local.", "SOA"))
        [rd] = msg.answer[0]
        _, negative = ask(zone, make_query("nothing.clusterset.local.", "A"))
        [neg] = negative.authority[0]
        assert neg.serial == rd.serial
        serials.append(rd.serial)
    assert serials == [1, 2]
    # Everything but the SOA is the same.
    for qname, qtype in [(W, "A"), (D, "SRV"), ("dns-version.clusterset.local.", "TXT")]:
        wire = make_query(qname, qtype)
        assert ask(old, wire)[1] == ask(new, wire)[1]


def test_custom_zone_name() -> None:
    zone = build_zone("Mesh.Example.", SERVICES, serial=9, ttl=TTL)
    origin = "mesh.example."
    cases = [
        Case(
            f"web.shop.svc.{origin}",
            "A",
            dns.rcode.NOERROR,
            (f"web.shop.svc.{origin} 5 IN A 10.1.0.10", f"web.shop.svc.{origin} 5 IN A 10.2.0.20"),
        ),
        Case(
            f"_http._tcp.web.shop.svc.{origin}",
            "SRV",
            dns.rcode.NOERROR,
            (f"_http._tcp.web.shop.svc.{origin} 5 IN SRV 0 100 80 web.shop.svc.{origin}",),
        ),
        Case(
            f"db.shop.svc.{origin}",
            "SRV",
            dns.rcode.NOERROR,
            tuple(
                f"db.shop.svc.{origin} 5 IN SRV {s.replace('clusterset.local.', origin)}"
                for s in DB_SRV
            ),
            (),
            tuple(g.replace("clusterset.local.", origin) for g in DB_GLUE),
        ),
        Case(origin, "SOA", dns.rcode.NOERROR, (soa(origin, 9),)),
        Case(origin, "NS", dns.rcode.NOERROR, (f"{origin} 5 IN NS ns.dns.{origin}",)),
        Case(
            f"dns-version.{origin}",
            "TXT",
            dns.rcode.NOERROR,
            (f'dns-version.{origin} 5 IN TXT "1.0.0"',),
        ),
        Case(f"nothing.{origin}", "A", dns.rcode.NXDOMAIN, authority=(soa(origin, 9),)),
        Case(f"svc.{origin}", "A", dns.rcode.NOERROR, authority=(soa(origin, 9),)),
        refused(W),
        refused("clusterset.local.", "SOA"),
        refused("example.", "SOA"),
        refused("evilmesh.example."),
    ]
    for case in cases:
        raw, msg = ask(zone, make_query(case.qname, case.qtype, case.qclass))
        assert msg.rcode() == case.rcode, case
        check_sections(raw, msg, case, edns=False)


def test_build_zone_is_pure() -> None:
    a = build_zone("clusterset.local", SERVICES, serial=3, ttl=TTL)
    b = build_zone("clusterset.local", SERVICES, serial=3, ttl=TTL)
    for qname, qtype in [
        (W, "A"),
        (W, "SRV"),
        (D, "SRV"),
        (D, "A"),
        ("nothing.clusterset.local.", "A"),
    ]:
        wire = make_query(qname, qtype, edns=True)
        assert ask(a, wire)[1] == ask(b, wire)[1]


# ------------------------------------------------------------------------ updates in place


def test_namespace_empty_non_terminal_follows_its_services() -> None:
    """``<ns>.svc`` is NODATA while any service of the namespace exists, then NXDOMAIN."""
    zone = build_zone("clusterset.local", [WEB, DB], serial=1, ttl=TTL)
    shop = "shop.svc.clusterset.local."

    def rcode(qname: str) -> int:
        return ask(zone, make_query(qname, "A"))[1].rcode()

    zone.set_service("shop", "web", None)
    assert rcode(W) == dns.rcode.NXDOMAIN
    assert rcode(D) == dns.rcode.NOERROR
    assert rcode(shop) == dns.rcode.NOERROR
    zone.set_service("shop", "db", DB)  # replaced by itself: still one service in shop
    assert rcode(shop) == dns.rcode.NOERROR
    zone.set_service("shop", "db", None)
    assert rcode(D) == dns.rcode.NXDOMAIN
    assert rcode(f"db-0.east.{D}") == dns.rcode.NXDOMAIN
    assert rcode(shop) == dns.rcode.NXDOMAIN
    assert rcode("svc.clusterset.local.") == dns.rcode.NOERROR
    zone.set_service("shop", "web", WEB)
    assert rcode(shop) == dns.rcode.NOERROR
    assert rcode(W) == dns.rcode.NOERROR


# ------------------------------------------------------------------------ rotation


def a_answers(zone: Zone, qname: str, stats: QueryStats, qtype: str = "A") -> list[str]:
    raw = respond(zone, make_query(qname, qtype), True, stats)
    assert raw is not None
    return [rd.address for rrset in dns.message.from_wire(raw).answer for rd in rrset]


def test_cluster_set_ip_answers_at_most_eight_per_family_and_rotates() -> None:
    candidates = [f"10.9.0.{i}" for i in range(1, 13)]
    svc = ServiceRecords("shop", "many", False, (*candidates, "fd00::1", "fd00::2"))
    zone = build_zone("clusterset.local", [svc], serial=1, ttl=TTL)
    qname = "many.shop.svc.clusterset.local."
    stats = QueryStats()
    seen: set[str] = set()
    leaders: set[str] = set()
    for _ in range(len(candidates)):
        answer = a_answers(zone, qname, stats)
        assert len(answer) == 8
        assert len(set(answer)) == 8
        seen.update(answer)
        leaders.add(answer[0])
    assert seen == set(candidates)
    assert leaders == set(candidates)
    assert set(a_answers(zone, qname, stats, "AAAA")) == {"fd00::1", "fd00::2"}


def test_every_candidate_address_is_answered_in_turn() -> None:
    """records.py: ClusterSetIP addresses are "rotated per query through every candidate
    so that each gets its share"; with 100 candidates, each must show up eventually."""
    candidates = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(100)]
    svc = ServiceRecords("shop", "many", False, tuple(candidates))
    zone = build_zone("clusterset.local", [svc], serial=1, ttl=TTL)
    stats = QueryStats()
    seen: set[str] = set()
    for _ in range(400):
        seen.update(a_answers(zone, "many.shop.svc.clusterset.local.", stats))
    assert sorted(set(candidates) - seen) == []


@pytest.mark.parametrize(
    ("count", "shown", "step"), [(2, 8, 1), (3, 3, 1), (12, 8, 1), (130, 8, 3), (5, 1, 1)]
)
def test_each_rotation_is_the_records_turned(count: int, shown: int, step: int) -> None:
    """answer.py: a rotating answer holds one ring of records, and rotation ``i`` is the
    records turned by ``i * step``, cut to ``shown``: the slice the query paths send."""
    records = [bytes([i % 256, i // 256]) * 8 for i in range(count)]
    answer = rotating(records, shown, step)
    assert answer.rotation
    stride, rotations, size = answer.rotation
    assert rotations == -(-count // step)
    assert answer.body == b"".join(records)  # each record once: rotations wrap around it
    for i in range(rotations):
        start = i * step
        turned = (records[start:] + records[:start])[:shown]
        assert answer.rotation_at(i) == b"".join(turned)
        assert len(turned) * len(records[0]) == size
        assert stride == step * len(records[0])
    assert answer.heads == Answer.of(0, records[:shown]).heads


def test_a_rotation_is_not_frozen_by_interleaved_aaaa_queries() -> None:
    """Stub resolvers ask A and AAAA together; the A answers must still rotate."""
    svc = ServiceRecords("shop", "ds", False, ("10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"))
    zone = build_zone("clusterset.local", [svc], serial=1, ttl=TTL)
    qname = "ds.shop.svc.clusterset.local."
    stats = QueryStats()
    leaders = set()
    for _ in range(10):
        leaders.add(a_answers(zone, qname, stats, "A")[0])
        a_answers(zone, qname, stats, "AAAA")
    assert leaders == {"10.0.0.1", "10.0.0.2"}
