"""What the zone does past the limits of the DNS format (issue 13): names over 255 octets,
labels over 63, answers over a 65,535-octet message, counts over 65,535.

The rule under test: what cannot be encoded is left out of the answers, counted once by
reason (``Zone.skipped``) and logged once per service and reason; the rest of the service
and of the zone answers; nothing raises out of a zone update. Queries are packed by
dnspython, answered by ``dnsserver.query.respond`` and parsed back by dnspython; each failure
message carries the query and the answer.
"""

from __future__ import annotations

import logging

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnsserver import records as records_module
from dnsserver.answer import MAX_TCP_MESSAGE
from dnsserver.query import QueryStats, respond
from dnsserver.server import DnsServerConfig
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, Zone, build_zone
from tests.unit.test_dns_server import WAIT_S, running

ORIGIN = "clusterset.local"
L63 = "x" * 63
HOST41 = "h" * 41


def ask(
    zone: Zone, name: str, qtype: str, udp: bool = True, payload: int | None = None
) -> tuple[bytes, dns.message.Message, str]:
    """(raw reply, parsed reply, a description of both for failure messages)."""
    q = dns.message.make_query(name, qtype, use_edns=0 if payload else None, payload=payload)
    raw = respond(zone, q.to_wire(), udp, QueryStats())
    assert raw is not None, f"no reply to {q.question}"
    msg = dns.message.from_wire(raw)
    where = f"{'UDP' if udp else 'TCP'} payload={payload}"
    return raw, msg, f"query {name} {qtype} ({where}):\n{msg.to_text()[:3000]}"


def rdatas(msg: dns.message.Message, rdtype: int, section: str = "answer") -> list[str]:
    return [
        rd.to_text() for rrset in getattr(msg, section) if rrset.rdtype == rdtype for rd in rrset
    ]


def long_names_service() -> ServiceRecords:
    """All legal in Kubernetes: 63-character cluster id, service and namespace, and a
    41-character hostname, whose endpoint name is 256 octets."""
    return ServiceRecords(
        namespace=L63,
        name=L63,
        headless=True,
        ports=(("http", "TCP", 80),),
        endpoints=(
            HeadlessEndpoint(L63, ("10.0.0.1",), HOST41),
            HeadlessEndpoint(L63, ("10.0.0.2",), "db-1"),
        ),
    )


def test_an_endpoint_name_over_255_octets_is_left_out_and_the_rest_answers() -> None:
    zone = build_zone(ORIGIN, [long_names_service()], serial=1)
    service = f"{L63}.{L63}.svc.{ORIGIN}."
    _, msg, seen = ask(zone, service, "A")
    assert msg.rcode() == dns.rcode.NOERROR, seen
    # Both endpoints' addresses answer for the service; only the long name is missing.
    assert sorted(rdatas(msg, dns.rdatatype.A)) == ["10.0.0.1", "10.0.0.2"], seen
    _, msg, seen = ask(zone, service, "SRV", payload=1232)
    assert rdatas(msg, dns.rdatatype.SRV) == [f"0 100 80 db-1.{L63}.{service}"], seen
    assert rdatas(msg, dns.rdatatype.A, "additional") == ["10.0.0.2"], seen
    _, msg, seen = ask(zone, f"db-1.{L63}.{service}", "A")
    assert rdatas(msg, dns.rdatatype.A) == ["10.0.0.2"], seen
    assert zone.skipped == {"name_too_long": 1}


def test_a_port_named_with_63_characters_loses_only_its_srv_name() -> None:
    """``_<63 characters>`` is a 64-octet label: that one SRV name cannot exist; the port
    is still in the service's own SRV, and every other name answers."""
    svc = ServiceRecords(
        "shop", "web", False, ("10.1.0.1",), ports=((L63, "TCP", 8443), ("http", "TCP", 80))
    )
    zone = build_zone(ORIGIN, [svc], serial=1)
    web = f"web.shop.svc.{ORIGIN}."
    _, msg, seen = ask(zone, web, "SRV")
    assert sorted(rdatas(msg, dns.rdatatype.SRV)) == [f"0 100 80 {web}", f"0 100 8443 {web}"]
    _, msg, seen = ask(zone, f"_http._tcp.{web}", "SRV")
    assert rdatas(msg, dns.rdatatype.SRV) == [f"0 100 80 {web}"], seen
    _, msg, seen = ask(zone, web, "A")
    assert rdatas(msg, dns.rdatatype.A) == ["10.1.0.1"], seen
    assert zone.skipped == {"label_too_long": 1}


def test_bad_addresses_and_ports_are_left_out_and_counted() -> None:
    svc = ServiceRecords(
        "shop",
        "db",
        True,
        ports=(("pg", "TCP", 5432), ("bad", "TCP", 70000)),
        endpoints=(
            HeadlessEndpoint("east", ("10.0.0.1", "not-an-address")),
            HeadlessEndpoint("east", ("10.0.0.300",), "db-9"),
        ),
    )
    zone = build_zone(ORIGIN, [svc], serial=1)
    _, msg, seen = ask(zone, f"db.shop.svc.{ORIGIN}", "A")
    assert rdatas(msg, dns.rdatatype.A) == ["10.0.0.1"], seen
    _, msg, seen = ask(zone, f"db.shop.svc.{ORIGIN}", "SRV")
    assert rdatas(msg, dns.rdatatype.SRV) == [f"0 100 5432 10-0-0-1.east.db.shop.svc.{ORIGIN}."]
    assert zone.skipped == {"bad_address": 2, "bad_port": 1}


def test_what_is_left_out_is_counted_and_logged_once_until_it_is_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = long_names_service()
    fixed = ServiceRecords(bad.namespace, bad.name, True, (), bad.ports, bad.endpoints[1:])
    zone = Zone(ORIGIN, serial=1)
    zone.synced = True
    with caplog.at_level(logging.WARNING, logger="meshd.dns"):
        for records in (bad, bad, bad):  # rebuilt three times, reported once
            zone.set_service(L63, L63, records)
        assert zone.skipped == {"name_too_long": 1}
        [line] = [r.getMessage() for r in caplog.records]
        assert f"{L63}/{L63}" in line, line
        assert "name_too_long" in line, line
        assert HOST41 in line, line
        zone.set_service(L63, L63, fixed)
        zone.set_service(L63, L63, bad)  # broken again: a new occurrence
    assert zone.skipped == {"name_too_long": 2}
    assert len(caplog.records) == 2
    quiet = Zone(ORIGIN, serial=1, on_skipped=None)  # a DNS worker: its agent reports
    caplog.clear()
    quiet.set_service(L63, L63, bad)
    assert quiet.skipped == {"name_too_long": 1}
    assert not caplog.records


def test_a_bug_while_encoding_one_service_leaves_only_that_service_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(enc: object) -> bool:
        raise RuntimeError("simulated bug")

    web = ServiceRecords("shop", "web", False, ("10.1.0.1",))
    db = ServiceRecords("shop", "db", True, endpoints=(HeadlessEndpoint("east", ("10.0.0.1",)),))
    monkeypatch.setattr(records_module, "_headless", broken)
    zone = build_zone(ORIGIN, [web, db], serial=1)
    assert zone.skipped == {"internal": 1}
    assert ask(zone, f"db.shop.svc.{ORIGIN}", "A")[1].rcode() == dns.rcode.NXDOMAIN
    _, msg, seen = ask(zone, f"web.shop.svc.{ORIGIN}", "A")
    assert rdatas(msg, dns.rdatatype.A) == ["10.1.0.1"], seen


# ------------------------------------------------------------------ large answers

BIG_COUNT = 100_000


@pytest.fixture(scope="module")
def big_zone() -> Zone:
    """A headless service with 100,000 ready endpoints (the README allows a few hundred
    thousand per service), one named port. Its A answer alone is 1.6 MB."""
    endpoints = tuple(
        HeadlessEndpoint(f"c{n % 3}", (f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",))
        for n in range(BIG_COUNT)
    )
    svc = ServiceRecords("shop", "big", True, ports=(("http", "TCP", 80),), endpoints=endpoints)
    return build_zone(ORIGIN, [svc], serial=1)


def address(n: int) -> str:
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


def test_a_service_of_100000_endpoints_answers_what_fits_a_message(big_zone: Zone) -> None:
    big = f"big.shop.svc.{ORIGIN}."
    for qtype, rdtype in (("A", dns.rdatatype.A), ("SRV", dns.rdatatype.SRV)):
        raw, msg, seen = ask(big_zone, big, qtype, udp=False)
        shown = rdatas(msg, rdtype)
        assert len(raw) <= MAX_TCP_MESSAGE, seen
        assert msg.flags & dns.flags.TC, seen  # not all of it: said so
        assert 500 < len(shown) < BIG_COUNT, seen
        if qtype == "A":  # the first endpoints, in order
            assert sorted(shown) == sorted(address(n) for n in range(len(shown))), seen
        else:  # each target with its glue
            targets = {rd.target.to_text() for rrset in msg.answer for rd in rrset}
            assert {r.name.to_text() for r in msg.additional} == targets, seen
        for payload in (None, 1232):
            raw, msg, seen = ask(big_zone, big, qtype, payload=payload)
            assert len(raw) <= (payload or 512), seen
            assert msg.flags & dns.flags.TC, seen
            assert rdatas(msg, rdtype), seen
    # Every endpoint keeps its own name.
    last = f"{address(BIG_COUNT - 1).replace('.', '-')}.c{(BIG_COUNT - 1) % 3}.{big}"
    _, msg, seen = ask(big_zone, last, "A")
    assert rdatas(msg, dns.rdatatype.A) == [address(BIG_COUNT - 1)], seen
    # Left out of the service's A, its SRV and its _http._tcp SRV: counted, once each.
    assert big_zone.skipped == {"message_too_large": 3}


@pytest.mark.asyncio
async def test_100000_endpoints_served_over_tcp_get_what_fits_a_message(big_zone: Zone) -> None:
    """The same on a real socket, to a real client: dnspython over TCP and UDP."""
    big = f"big.shop.svc.{ORIGIN}."
    async with running(DnsServerConfig("127.0.0.1", 0), big_zone) as srv:
        host, port = srv.address
        for qtype in ("A", "SRV"):
            q = dns.message.make_query(big, qtype)
            reply = await dns.asyncquery.tcp(q, host, timeout=WAIT_S, port=port)
            seen = f"query {big} {qtype} over TCP:\n{reply.to_text()[:3000]}"
            assert reply.flags & dns.flags.TC, seen
            assert sum(len(r) for r in reply.answer) > 500, seen
            assert len(reply.to_wire()) <= MAX_TCP_MESSAGE, seen
            reply = await dns.asyncquery.udp(q, host, timeout=WAIT_S, port=port)
            seen = f"query {big} {qtype} over UDP:\n{reply.to_text()[:3000]}"
            assert reply.flags & dns.flags.TC, seen
            assert reply.answer, seen


def test_a_service_with_10000_ports_answers_srv_over_both_transports() -> None:
    ports = tuple((f"p{n}", "TCP", n) for n in range(1, 10_001))
    wide_svc = ServiceRecords("shop", "wide", False, ("10.1.0.1",), ports)
    zone = build_zone(ORIGIN, [wide_svc], serial=1)
    wide = f"wide.shop.svc.{ORIGIN}."
    for udp, payload in ((False, None), (True, None), (True, 1232)):
        raw, msg, seen = ask(zone, wide, "SRV", udp=udp, payload=payload)
        assert msg.flags & dns.flags.TC, seen
        limit = (payload or 512) if udp else MAX_TCP_MESSAGE
        assert len(raw) <= limit, seen
        assert rdatas(msg, dns.rdatatype.SRV), seen  # never an empty truncated answer
    _, msg, seen = ask(zone, f"_p9999._tcp.{wide}", "SRV")
    assert rdatas(msg, dns.rdatatype.SRV) == [f"0 100 9999 {wide}"], seen
    assert zone.skipped == {"message_too_large": 1}


# ------------------------------------------------------------------ property


LABELS = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=70),
    st.text(max_size=8),  # empty, dots, upper case, non-ASCII
)
ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.text(max_size=12)
)
PORTS = st.tuples(
    st.one_of(st.just(""), LABELS),
    st.sampled_from(["TCP", "UDP", "SCTP", "tcp", "", "x" * 70]),
    st.integers(-5, 70_000),
)
ENDPOINTS = st.builds(
    HeadlessEndpoint,
    LABELS,
    st.lists(ADDRESSES, max_size=3).map(tuple),
    st.one_of(st.none(), LABELS),
)
SERVICES = st.builds(
    ServiceRecords,
    LABELS,
    LABELS,
    st.booleans(),
    st.lists(ADDRESSES, max_size=6).map(tuple),
    st.lists(PORTS, max_size=4).map(tuple),
    st.lists(ENDPOINTS, max_size=8).map(tuple),
    st.integers(-3, 100),
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(services=st.lists(SERVICES, max_size=4))
@example(
    services=[ServiceRecords("0", "0", True, endpoints=(HeadlessEndpoint("\\?", ("0.0.0.0",)),))]
)
def test_any_service_records_build_a_zone_that_answers(services: list[ServiceRecords]) -> None:
    """Arbitrary names, addresses, ports and counts: the zone builds without raising, leaves
    out no service for a bug of ours, and every name answers within the limits."""
    zone = build_zone(ORIGIN, services, serial=1)
    assert "internal" not in zone.skipped, zone.skipped
    for name in list(zone.table)[:24]:
        # As dnspython writes it: a label may hold a backslash or another character the
        # text form must escape (raw labels joined with dots asked "\\?" as "?").
        labels = [name[i + 1 : i + 1 + name[i]] for i in _label_offsets(name)]
        text = dns.name.Name([*labels, b""]).to_text(omit_final_dot=True)
        for qtype in ("A", "AAAA", "SRV", "ANY"):
            for udp, payload in ((True, None), (True, 1232), (False, None)):
                raw, msg, seen = ask(zone, text + ".", qtype, udp, payload)
                limit = (payload or 512) if udp else MAX_TCP_MESSAGE
                assert len(raw) <= limit, seen
                assert msg.rcode() == dns.rcode.NOERROR, seen


def _label_offsets(name: bytes) -> list[int]:
    offsets, i = [], 0
    while name[i]:
        offsets.append(i)
        i += 1 + name[i]
    return offsets
