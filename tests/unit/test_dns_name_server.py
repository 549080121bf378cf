"""The zone's name server ``ns.dns.<zone>`` has an address (RFC 1912 section 2.3).

The apex NS names a host inside the zone, so the zone itself must answer its A or AAAA: the
agent's advertised DNS address (``--dns-advertise``), also carried as glue in the additional
section of the apex NS answer. Cases in the style of ``test_dns_answers`` (zone-file lines,
compared through dnspython, header counts checked); the C fast path answers the same bytes.
Then the default of ``--dns-advertise`` and its parser.
"""

from __future__ import annotations

import socket

import dns.rcode
import pytest

from dnsserver import server as server_module
from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone
from mesh.daemon import hostinfo
from mesh.daemon.values import address_port
from tests.unit.test_dns_answers import (
    SERVICES,
    SOA,
    Case,
    ask,
    check_sections,
    make_query,
    nodata,
)

ORIGIN = "clusterset.local."
NS = f"ns.dns.{ORIGIN}"
APEX_NS = f"{ORIGIN} 5 IN NS {NS}"


def zone_with(ns_address: str | None) -> Zone:
    zone = Zone("clusterset.local", serial=42, ttl=5, ns_address=ns_address)
    zone.synced = True
    for svc in SERVICES:
        zone.set_service(svc.namespace, svc.name, svc)
    return zone


V4_CASES = [
    Case(ORIGIN, "NS", dns.rcode.NOERROR, (APEX_NS,), (), (f"{NS} 5 IN A 192.0.2.53",)),
    Case(NS, "A", dns.rcode.NOERROR, (f"{NS} 5 IN A 192.0.2.53",)),
    Case(NS, "ANY", dns.rcode.NOERROR, (f"{NS} 5 IN A 192.0.2.53",)),
    Case("NS.Dns.ClusterSet.Local.", "A", dns.rcode.NOERROR, (f"{NS} 5 IN A 192.0.2.53",)),
    nodata(NS, "AAAA"),
    nodata(f"dns.{ORIGIN}", "A"),  # an empty non-terminal, not NXDOMAIN (RFC 8020)
    Case(f"x.{NS}", "A", dns.rcode.NXDOMAIN, authority=(SOA,)),
    Case(ORIGIN, "SOA", dns.rcode.NOERROR, (SOA,)),
]
V6_CASES = [
    Case(ORIGIN, "NS", dns.rcode.NOERROR, (APEX_NS,), (), (f"{NS} 5 IN AAAA fd00::53",)),
    Case(NS, "AAAA", dns.rcode.NOERROR, (f"{NS} 5 IN AAAA fd00::53",)),
    nodata(NS, "A"),
]


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
@pytest.mark.parametrize(
    ("ns_address", "case"),
    [("192.0.2.53", c) for c in V4_CASES] + [("fd00::53", c) for c in V6_CASES],
    ids=lambda v: f"{v.qname}/{v.qtype}" if isinstance(v, Case) else str(v),
)
def test_the_name_server_answers_with_its_address(ns_address: str, case: Case, edns: bool) -> None:
    raw, msg = ask(zone_with(ns_address), make_query(case.qname, case.qtype, edns=edns))
    assert msg.rcode() == case.rcode, (case, dns.rcode.to_text(msg.rcode()))
    check_sections(raw, msg, case, edns)


def test_without_an_address_the_name_server_has_none() -> None:
    """The library's default (no ``ns_address``): the apex NS alone, as before."""
    zone = zone_with(None)
    raw, msg = ask(zone, make_query(ORIGIN, "NS"))
    check_sections(raw, msg, Case(ORIGIN, "NS", dns.rcode.NOERROR, (APEX_NS,)), edns=False)
    assert ask(zone, make_query(NS, "A"))[1].rcode() == dns.rcode.NXDOMAIN


def test_the_address_must_be_an_ip_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        Zone("clusterset.local", serial=1, ns_address="ns.example.com")


@pytest.mark.parametrize("ns_address", ["192.0.2.53", "fd00::53"])
def test_the_fast_path_answers_the_same_bytes(ns_address: str) -> None:
    fastpath = server_module._fastpath
    assert fastpath is not None
    zone_c, zone_py = zone_with(ns_address), zone_with(ns_address)
    for name in (ORIGIN, NS, f"dns.{ORIGIN}"):
        for rdtype in ("NS", "A", "AAAA", "ANY", "SOA"):
            for edns in (False, True):
                query = make_query(name, rdtype, edns=edns)
                fast = fastpath.answer(zone_c, query, QueryStats(), respond)
                assert fast == respond(zone_py, query, True, QueryStats()), (name, rdtype)


# ------------------------------------------------------------------ --dns-advertise


@pytest.mark.parametrize(
    ("dns_listen", "advertise", "grpc_listen", "expected"),
    [
        # A --dns-listen host is the one address the server answers on.
        ("127.0.0.2:5353", "10.0.0.5:7946", "0.0.0.0:7946", "127.0.0.2:5353"),
        # A wildcard: the --advertise host, with the DNS port.
        ("0.0.0.0:53", "10.0.0.5:7946", "0.0.0.0:7946", "10.0.0.5:53"),
        ("[::]:5353", "[fd00::5]:7946", "[::]:7946", "[fd00::5]:5353"),
        # No --advertise: --grpc-listen's host, as --advertise itself is derived.
        ("0.0.0.0:53", None, "10.0.0.6:7946", "10.0.0.6:53"),
        # Wildcards all the way: this host's address.
        ("0.0.0.0:53", None, "0.0.0.0:7946", "10.9.8.7:53"),
    ],
)
def test_the_default_dns_advertise(
    monkeypatch: pytest.MonkeyPatch,
    dns_listen: str,
    advertise: str | None,
    grpc_listen: str,
    expected: str,
) -> None:
    monkeypatch.setattr(hostinfo, "local_address", lambda: "10.9.8.7")
    assert hostinfo.default_dns_advertise(dns_listen, advertise, grpc_listen) == expected


def test_address_of_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hostinfo.address_of("10.0.0.1") == "10.0.0.1"
    assert hostinfo.address_of("fd00::1") == "fd00::1"

    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "meshd.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.4.0.9", 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert hostinfo.address_of("meshd.example") == "10.4.0.9"
    assert hostinfo.address_of("nowhere.example") is None


@pytest.mark.parametrize("value", ["10.0.0.5:53", "[fd00::5]:5353"])
def test_dns_advertise_accepts_an_address(value: str) -> None:
    assert address_port(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("dns.example:53", "an IP address"),
        ("0.0.0.0:53", "not a wildcard"),
        ("[::]:53", "not a wildcard"),
        ("10.0.0.5:0", "port 0"),
        ("10.0.0.5", "HOST:PORT"),
    ],
)
def test_dns_advertise_refuses(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        address_port(value)
