"""The zone snapshot: every answer of the zone, encoded once, looked up per query.

Theory of operation. The zone's content only changes when the catalog changes, so the
builder turns the current service records into a table ``{lower-case wire name: {qtype:
Answer}}`` at that moment, and a query is answered by one dict lookup plus byte copies
(see ``dnsserver.query``). Every name that exists is in the table, including the empty
non-terminals (``svc.<zone>``, ``<ns>.svc.<zone>``, ``_tcp.<svc>...``), which map to an
empty type table, so a missing type is NODATA and a missing name is NXDOMAIN without
any parsing of the name at query time.

Names follow the Multi-Cluster Services DNS specification (KEP-1645 ``specification.md``),
with CoreDNS's conventions where it is silent:

- ``<svc>.<ns>.svc.<zone>`` A/AAAA, and SRV with one record per distinct (target, port);
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV for named ports;
- ``<hostname>.<clusterid>.<svc>.<ns>.svc.<zone>`` A/AAAA for a headless endpoint;
- ``dns-version.<zone>`` TXT; SOA and NS at the apex;
- negative answers carry the SOA in the authority section, its MINIMUM being the TTL.

An answer is stored as its sections' bytes plus the four possible headers (RD set or not,
EDNS or not), so the query path never packs a header.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from dnsserver import wire

DNS_SCHEMA_VERSION = "1.0.0"
DEFAULT_TTL_S = 5
# What we advertise in our OPT record and the most we ever send over UDP: the size the DNS
# flag day 2020 settled on to avoid IP fragmentation.
MAX_UDP_PAYLOAD = 1232


@dataclass(frozen=True, slots=True)
class HeadlessEndpoint:
    """One ready endpoint of a headless service, in the cluster that exports it."""

    cluster_id: str
    addresses: tuple[str, ...]
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceRecords:
    """What the routing policy decided the zone says about one service.

    ``addresses`` are the A/AAAA answers in order (ClusterSetIP: chosen endpoints;
    headless: every ready endpoint). ``endpoints`` is only used for headless services.
    ``ports`` are (name, protocol, port) with an empty name for unnamed ports.
    """

    namespace: str
    name: str
    headless: bool
    addresses: tuple[str, ...]
    ports: tuple[tuple[str, str, int], ...] = ()
    endpoints: tuple[HeadlessEndpoint, ...] = ()


class Answer:
    """A pre-encoded response, minus the ID and the question (both copied from the query)."""

    __slots__ = ("body", "edns_tail", "heads", "rcode")

    def __init__(
        self, rcode: int, answers: list[bytes], authority: list[bytes], additional: list[bytes]
    ) -> None:
        self.rcode = rcode
        self.body = b"".join(answers) + b"".join(authority) + b"".join(additional)
        an, ns, ar = len(answers), len(authority), len(additional)
        heads = []
        for index in range(4):
            rd, edns = index & 1, index >> 1
            flags = struct.pack("!BB", 0x84 | rd, rcode & 0x0F)
            heads.append(flags + struct.pack("!HHHH", 1, an, ns, ar + edns))
        self.heads: tuple[bytes, ...] = tuple(heads)
        self.edns_tail = wire.opt_record(MAX_UDP_PAYLOAD, rcode >> 4)


@dataclass(slots=True)
class ZoneSnapshot:
    """The immutable answer table of one version of the zone."""

    origin: str
    origin_wire: bytes
    serial: int
    ttl: int
    synced: bool
    table: dict[bytes, dict[int, Answer]] = field(default_factory=dict)
    nxdomain: Answer | None = None
    nodata: Answer | None = None
    servfail: Answer | None = None

    def lookup(self, name: str, qtype: int) -> Answer:
        """The answer for a dotted name (used by tests and tooling, not by the query path)."""
        types = self.table.get(wire.encode_name(name))
        if types is None:
            assert self.nxdomain is not None
            return self.nxdomain
        answer = types.get(qtype)
        if answer is None:
            assert self.nodata is not None
            return self.nodata
        return answer


class _Builder:
    """Accumulates records per (name, type), then freezes them into Answers."""

    def __init__(self, origin: str, serial: int, ttl: int) -> None:
        self.origin = origin.rstrip(".").lower()
        self.origin_wire = wire.encode_name(self.origin)
        self.ttl = ttl
        self.serial = serial
        self.records: dict[bytes, dict[int, list[bytes]]] = {}
        self.additional: dict[tuple[bytes, int], list[bytes]] = {}
        self.soa = wire.rr(
            self.origin_wire,
            wire.TYPE_SOA,
            ttl,
            wire.rdata_soa(
                f"ns.dns.{self.origin}", f"hostmaster.{self.origin}", serial, 7200, 1800, 86400, ttl
            ),
        )

    def name(self, *labels: str) -> bytes:
        return wire.encode_name(".".join((*labels, self.origin)))

    def touch(self, name: bytes) -> None:
        """Make ``name`` and every ancestor down to the apex exist (empty non-terminals)."""
        while len(name) >= len(self.origin_wire):
            self.records.setdefault(name, {})
            if name == self.origin_wire:
                return
            name = name[1 + name[0] :]

    def add(self, name: bytes, rtype: int, rdata: bytes) -> None:
        self.touch(name)
        record = wire.rr(wire.POINTER_TO_QNAME, rtype, self.ttl, rdata)
        existing = self.records[name].setdefault(rtype, [])
        if record not in existing:
            existing.append(record)

    def add_glue(self, name: bytes, rtype: int, glue: Iterable[bytes]) -> None:
        extra = self.additional.setdefault((name, rtype), [])
        extra.extend(g for g in glue if g not in extra)

    def freeze(self, synced: bool) -> ZoneSnapshot:
        snap = ZoneSnapshot(self.origin, self.origin_wire, self.serial, self.ttl, synced)
        for name, types in self.records.items():
            snap.table[name] = {
                rtype: Answer(wire.RCODE_NOERROR, recs, [], self.additional.get((name, rtype), []))
                for rtype, recs in types.items()
            }
        snap.nxdomain = Answer(wire.RCODE_NXDOMAIN, [], [self.soa], [])
        snap.nodata = Answer(wire.RCODE_NOERROR, [], [self.soa], [])
        snap.servfail = Answer(wire.RCODE_SERVFAIL, [], [], [])
        return snap


def _address_records(b: _Builder, name: bytes, addresses: Iterable[str]) -> list[bytes]:
    """Add A/AAAA at ``name``; return the same records owned by ``name`` spelt out (glue)."""
    glue = []
    for address in addresses:
        rtype, packed = wire.rdata_address(address)
        b.add(name, rtype, packed)
        glue.append(wire.rr(name, rtype, b.ttl, packed))
    return glue


def _add_service(b: _Builder, svc: ServiceRecords) -> None:
    if svc.headless and not svc.endpoints:
        return  # a headless service with no ready endpoint does not exist (KEP-1645)
    base = (svc.name, svc.namespace, "svc")
    service_name = b.name(*base)
    b.touch(service_name)
    _address_records(b, service_name, svc.addresses)
    # (target labels, glue records) that SRV answers point at.
    targets: list[tuple[tuple[str, ...], list[bytes]]]
    if svc.headless:
        targets = []
        for ep in svc.endpoints:
            for host, addrs in _endpoint_hosts(ep):
                target = (host, ep.cluster_id, *base)
                targets.append((target, _address_records(b, b.name(*target), addrs)))
    else:
        targets = [(base, [])]
    weight = 100 // max(1, len(targets))
    for port_name, protocol, port in svc.ports:
        port_owner = b.name(f"_{port_name}", f"_{protocol.lower()}", *base) if port_name else None
        for target_labels, glue in targets:
            rdata = wire.rdata_srv(0, weight, port, ".".join((*target_labels, b.origin)))
            b.add(service_name, wire.TYPE_SRV, rdata)
            b.add_glue(service_name, wire.TYPE_SRV, glue)
            if port_owner is not None:
                b.add(port_owner, wire.TYPE_SRV, rdata)
                b.add_glue(port_owner, wire.TYPE_SRV, glue)


def _endpoint_hosts(ep: HeadlessEndpoint) -> list[tuple[str, tuple[str, ...]]]:
    """The DNS host labels of an endpoint: its hostname, else one dashed label per address."""
    if ep.hostname:
        return [(ep.hostname, ep.addresses)]
    return [(wire.dashed(a), (a,)) for a in ep.addresses]


def build_zone(
    origin: str,
    services: Iterable[ServiceRecords],
    *,
    serial: int,
    ttl: int = DEFAULT_TTL_S,
    synced: bool = True,
) -> ZoneSnapshot:
    """Build the whole answer table. Pure: the same input gives the same bytes."""
    b = _Builder(origin, serial, ttl)
    apex = b.origin_wire
    b.add(apex, wire.TYPE_SOA, b.soa[len(apex) + 10 :])
    b.add(apex, wire.TYPE_NS, wire.encode_name(f"ns.dns.{b.origin}"))
    b.add(b.name("dns-version"), wire.TYPE_TXT, wire.rdata_txt(DNS_SCHEMA_VERSION))
    b.touch(b.name("svc"))
    if synced:
        for svc in services:
            _add_service(b, svc)
    return b.freeze(synced)
