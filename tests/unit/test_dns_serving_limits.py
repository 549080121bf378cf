"""Large answers served on real loopback sockets to a real client (dnspython): what a
client gets when an answer does not fit a UDP response, or even a TCP message.

- A dual-stack headless service (one IPv4 and one IPv6 EndpointSlice, 100 pods): a
  truncated A answer and a truncated AAAA answer cover the same endpoints, as the README
  promises, with and without hostnames, and so do the glue of a truncated SRV answer;
- a service with 10,000 ports: SRV over UDP and over TCP carries records, never an empty
  truncated answer;
- a headless service with 100,000 endpoints: over TCP, what fits 65,535 octets (in
  ``test_dns_limits``, which builds that zone once).
"""

from __future__ import annotations

import ipaddress

import dns.asyncquery
import dns.flags
import dns.message
import dns.rdatatype
import pytest

from dnsserver.server import DnsServerConfig
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, Zone, build_zone
from tests.unit.test_dns_server import WAIT_S, running

ORIGIN = "clusterset.local"
PODS = 100
DUAL = f"dual.shop.svc.{ORIGIN}."


def dual_stack(hostnames: bool) -> ServiceRecords:
    """Pod i is 10.0.0.(i+1) in the IPv4 slice and fd00::(i+1) in the IPv6 slice, listed in
    the same order; with hostnames, both are ``pod-<i>``."""
    v4 = [
        HeadlessEndpoint("east", (f"10.0.0.{i + 1}",), f"pod-{i}" if hostnames else None)
        for i in range(PODS)
    ]
    v6 = [
        HeadlessEndpoint("east", (f"fd00::{i + 1:x}",), f"pod-{i}" if hostnames else None)
        for i in range(PODS)
    ]
    return ServiceRecords("shop", "dual", True, ports=(("http", "TCP", 80),), endpoints=(*v4, *v6))


def pod(address: str) -> int:
    ip = ipaddress.ip_address(address)
    return int(ip) - int(ipaddress.ip_address("10.0.0.0" if ip.version == 4 else "fd00::")) - 1


def pods(msg: dns.message.Message, rdtype: int, section: str = "answer") -> set[int]:
    return {pod(rd.address) for r in getattr(msg, section) if r.rdtype == rdtype for rd in r}


async def ask(
    zone: Zone, name: str, qtype: str, payload: int | None, tcp: bool = False
) -> tuple[dns.message.Message, str]:
    async with running(DnsServerConfig("127.0.0.1", 0), zone) as srv:
        host, port = srv.address
        q = dns.message.make_query(name, qtype, use_edns=0 if payload else None, payload=payload)
        if tcp:
            reply = await dns.asyncquery.tcp(q, host, timeout=WAIT_S, port=port)
        else:
            reply = await dns.asyncquery.udp(q, host, timeout=WAIT_S, port=port)
    seen = f"query {name} {qtype} payload={payload} tcp={tcp}:\n{reply.to_text()[:4000]}"
    return reply, seen


@pytest.mark.asyncio
@pytest.mark.parametrize("hostnames", [True, False], ids=["hostnames", "dashed"])
@pytest.mark.parametrize("payload", [None, 1232], ids=["plain-512", "edns-1232"])
async def test_truncated_a_and_aaaa_answers_cover_the_same_endpoints(
    hostnames: bool, payload: int | None
) -> None:
    zone = build_zone(ORIGIN, [dual_stack(hostnames)], serial=1)
    a, seen_a = await ask(zone, DUAL, "A", payload)
    aaaa, seen_aaaa = await ask(zone, DUAL, "AAAA", payload)
    seen = f"{seen_a}\n{seen_aaaa}"
    assert a.flags & dns.flags.TC, seen
    assert aaaa.flags & dns.flags.TC, seen
    assert pods(a, dns.rdatatype.A), seen
    assert pods(a, dns.rdatatype.A) == pods(aaaa, dns.rdatatype.AAAA), seen
    # The first endpoints, in order.
    assert pods(a, dns.rdatatype.A) == set(range(len(pods(a, dns.rdatatype.A)))), seen
    any_, seen_any = await ask(zone, DUAL, "ANY", payload)
    assert any_.answer == a.answer, f"{seen_any}\n{seen_a}"


@pytest.mark.asyncio
@pytest.mark.parametrize("hostnames", [True, False], ids=["hostnames", "dashed"])
@pytest.mark.parametrize("payload", [None, 1232], ids=["plain-512", "edns-1232"])
async def test_truncated_srv_glue_covers_the_same_endpoints_in_both_families(
    hostnames: bool, payload: int | None
) -> None:
    zone = build_zone(ORIGIN, [dual_stack(hostnames)], serial=1)
    srv, seen = await ask(zone, DUAL, "SRV", payload)
    assert srv.flags & dns.flags.TC, seen
    v4, v6 = pods(srv, dns.rdatatype.A, "additional"), pods(srv, dns.rdatatype.AAAA, "additional")
    assert v4, seen
    assert v4 == v6, seen
    targets = {rd.target for r in srv.answer for rd in r}
    assert {r.name for r in srv.additional} == targets, seen  # no glue without its SRV


@pytest.mark.asyncio
async def test_over_tcp_the_dual_stack_answers_are_complete() -> None:
    zone = build_zone(ORIGIN, [dual_stack(False)], serial=1)
    for qtype, rdtype in (("A", dns.rdatatype.A), ("AAAA", dns.rdatatype.AAAA)):
        reply, seen = await ask(zone, DUAL, qtype, None, tcp=True)
        assert not reply.flags & dns.flags.TC, seen
        assert pods(reply, rdtype) == set(range(PODS)), seen


@pytest.mark.asyncio
async def test_srv_of_10000_ports_carries_records_over_udp_and_tcp() -> None:
    ports = tuple((f"p{n}", "TCP", n) for n in range(1, 10_001))
    zone = build_zone(
        ORIGIN, [ServiceRecords("shop", "wide", False, ("10.1.0.1",), ports)], serial=1
    )
    wide = f"wide.shop.svc.{ORIGIN}."
    for payload, tcp in ((None, False), (1232, False), (None, True)):
        reply, seen = await ask(zone, wide, "SRV", payload, tcp)
        assert reply.flags & dns.flags.TC, seen  # 10,000 records never fit: said so
        srv = [rd for r in reply.answer for rd in r]
        assert srv, seen
        assert [rd.port for rd in srv] == list(range(1, len(srv) + 1)), seen
        if tcp:
            assert len(reply.to_wire()) <= 65535, seen
            assert len(srv) > 1000, seen
