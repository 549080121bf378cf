"""Encoding one service's names and answers (the MCS DNS grammar, KEP-1645).

For a service ``<svc>`` in namespace ``<ns>`` of zone ``<zone>``:

- ``<svc>.<ns>.svc.<zone>`` A/AAAA. ClusterSetIP: the addresses the routing policy chose,
  in its order, at most ``max_addresses`` per family, rotated per query through every
  candidate so that each gets its share. Headless: every ready endpoint, in a fixed order,
  with no cap; a headless service with no ready endpoint has no names at all (NXDOMAIN).
- ``<svc>.<ns>.svc.<zone>`` SRV: one record per distinct (target, port); the target is the
  service name (ClusterSetIP) or each endpoint's name (headless, with its A/AAAA as glue in
  the additional section).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV for each named port (unnamed ports have
  none); ``_<proto>.<svc>...`` is an empty non-terminal.
- ``<host>.<cluster>.<svc>.<ns>.svc.<zone>`` A/AAAA for each headless endpoint, ``<host>``
  being the EndpointSlice hostname or else the dashed address (``10-2-0-7``,
  ``fd00--7``). ``<cluster>.<svc>...`` is reserved by the specification and answers nothing:
  it is an empty non-terminal (NODATA), not NXDOMAIN, because names exist below it and an
  NXDOMAIN there would let RFC 8020 resolvers deny every endpoint name under it.

SRV weights split 100 evenly between targets, as CoreDNS does; priority is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnsserver import wire
from dnsserver.answer import EMPTY_TYPES, Answer, TypeTable, Unit, rotating, type_table

DNS_SCHEMA_VERSION = "1.0.0"
DEFAULT_MAX_ADDRESSES = 8
# Rotations kept per answer; beyond this many candidates, rotations step by more than one.
MAX_ROTATIONS = 64


@dataclass(frozen=True, slots=True)
class HeadlessEndpoint:
    """One ready endpoint of a headless service, in the cluster that exports it."""

    cluster_id: str
    addresses: tuple[str, ...]
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceRecords:
    """What the routing policy decided the zone says about one service.

    ``addresses``: ClusterSetIP only, the candidate addresses in preference order (the
    zone shows ``max_addresses`` per family and rotates). Headless services take their
    addresses from ``endpoints``. ``ports`` are (name, protocol, port), empty name for an
    unnamed port.
    """

    namespace: str
    name: str
    headless: bool
    addresses: tuple[str, ...] = ()
    ports: tuple[tuple[str, str, int], ...] = ()
    endpoints: tuple[HeadlessEndpoint, ...] = ()
    max_addresses: int = DEFAULT_MAX_ADDRESSES


Names = dict[bytes, TypeTable]


class _Encoder:
    def __init__(self, svc: ServiceRecords, origin: str, ttl: int) -> None:
        self.svc = svc
        self.origin = origin
        self.ttl = ttl
        self.base = (svc.name, svc.namespace, "svc")
        self.names: Names = {}  # every name, in order; empty non-terminals: EMPTY_TYPES
        self.tables: dict[bytes, dict[int, Answer]] = {}  # the names that have records
        # (as dicts while they are built; ``tables`` turns them into ``TypeTable``s)
        self.service_name = self.wire_name(*self.base)

    def wire_name(self, *labels: str) -> bytes:
        return wire.encode_name(".".join((*labels, self.origin)))

    def text_name(self, *labels: str) -> str:
        return ".".join((*labels, self.origin))

    def record(self, rtype: int, rdata: bytes, owner: bytes = wire.POINTER_TO_QNAME) -> bytes:
        return wire.rr(owner, rtype, self.ttl, rdata)

    def put(self, name: bytes, rtype: int, answer: Answer) -> None:
        types = self.tables.get(name)
        if types is None:
            types = self.tables[name] = {}
            self.names.setdefault(name, EMPTY_TYPES)  # its place; its table comes at the end
        types[rtype] = answer

    def touch(self, name: bytes) -> None:
        """``name`` and its ancestors down to the service name exist (empty non-terminals)."""
        while len(name) > len(self.service_name):
            self.names.setdefault(name, EMPTY_TYPES)
            name = name[1 + name[0] :]
        self.names.setdefault(self.service_name, EMPTY_TYPES)


def _family(addresses: tuple[str, ...]) -> tuple[list[bytes], list[bytes]]:
    v4: list[bytes] = []
    v6: list[bytes] = []
    for address in addresses:
        version, packed = wire.packed_address(address)
        (v4 if version == 4 else v6).append(packed)
    return v4, v6


def _cluster_set_ip(enc: _Encoder) -> None:
    v4, v6 = _family(enc.svc.addresses)
    enc.touch(enc.service_name)
    for rtype, packed in ((wire.TYPE_A, v4), (wire.TYPE_AAAA, v6)):
        if not packed:
            continue
        # Step so that at most MAX_ROTATIONS rotations still let every candidate lead.
        step = -(-len(packed) // MAX_ROTATIONS)
        records = [enc.record(rtype, p) for p in packed]
        enc.put(enc.service_name, rtype, rotating(records, enc.svc.max_addresses, step))
    _srv(enc, [(enc.base, [])])


def _endpoint_hosts(ep: HeadlessEndpoint) -> list[tuple[str, tuple[str, ...]]]:
    if ep.hostname:
        return [(ep.hostname, ep.addresses)]
    return [(wire.dashed(a), (a,)) for a in ep.addresses]


def _headless(enc: _Encoder) -> None:
    hosts: dict[tuple[str, ...], list[str]] = {}
    units: dict[int, list[Unit]] = {wire.TYPE_A: [], wire.TYPE_AAAA: []}
    for ep in enc.svc.endpoints:
        # One unit per endpoint, with the same cost in A and AAAA (the larger of the two),
        # even when it has no address of a family, so both answers cut the same endpoints.
        v4, v6 = _family(ep.addresses)
        a = b"".join(enc.record(wire.TYPE_A, p) for p in v4)
        aaaa = b"".join(enc.record(wire.TYPE_AAAA, p) for p in v6)
        cost = max(len(a), len(aaaa))
        units[wire.TYPE_A].append(Unit(a, len(v4), b"", 0, cost))
        units[wire.TYPE_AAAA].append(Unit(aaaa, len(v6), b"", 0, cost))
        for host, addresses in _endpoint_hosts(ep):
            hosts.setdefault((host, ep.cluster_id, *enc.base), []).extend(addresses)
    for rtype in (wire.TYPE_A, wire.TYPE_AAAA):
        if any(u.answer_count for u in units[rtype]):
            enc.put(enc.service_name, rtype, Answer.of_units(units[rtype]))
    targets: list[tuple[tuple[str, ...], list[bytes]]] = []
    for labels, host_addresses in hosts.items():
        name = enc.wire_name(*labels)
        enc.touch(name)
        v4, v6 = _family(tuple(dict.fromkeys(host_addresses)))
        glue = []
        for rtype, packed in ((wire.TYPE_A, v4), (wire.TYPE_AAAA, v6)):
            if packed:
                enc.put(
                    name,
                    rtype,
                    Answer.of(wire.RCODE_NOERROR, [enc.record(rtype, p) for p in packed]),
                )
                glue += [enc.record(rtype, p, name) for p in packed]
        targets.append((labels, glue))
    _srv(enc, targets)


def _srv(enc: _Encoder, targets: list[tuple[tuple[str, ...], list[bytes]]]) -> None:
    """SRV at the service name (every port) and at ``_<port>._<proto>`` (named ports)."""
    if not enc.svc.ports or not targets:
        return
    weight = 100 // len(targets)
    owners: dict[bytes, list[tuple[int, int]]] = {enc.service_name: []}
    for port_name, protocol, port in enc.svc.ports:
        if port_name:
            owner = enc.wire_name(f"_{port_name}", f"_{protocol.lower()}", *enc.base)
            owners.setdefault(owner, []).append((port, weight))
        if (port, weight) not in owners[enc.service_name]:
            owners[enc.service_name].append((port, weight))
    # Owners with the same ports get the same answer, one object: a ClusterSetIP service
    # with one named port answers the same SRV at its name and at ``_<port>._<proto>``.
    # Sharing is safe because SRV answers never rotate (``turn`` is unused) and are not
    # changed after this function returns.
    shared: dict[tuple[tuple[int, int], ...], Answer] = {}
    for owner, ports in owners.items():
        enc.touch(owner)
        same = shared.get(tuple(ports))
        if same is not None:
            enc.put(owner, wire.TYPE_SRV, same)
            continue
        units = []
        for labels, glue in targets:
            records = [
                enc.record(wire.TYPE_SRV, wire.rdata_srv(0, w, p, enc.text_name(*labels)))
                for p, w in ports
            ]
            answer, additional = b"".join(records), b"".join(glue)
            cost = len(answer) + len(additional)
            units.append(Unit(answer, len(records), additional, len(glue), cost))
        # One target (a ClusterSetIP service) needs no cut points: cutting it leaves nothing.
        srv = Answer.of_units(units) if len(units) > 1 else Answer.of_units(units).uncut()
        enc.put(owner, wire.TYPE_SRV, srv)
        shared[tuple(ports)] = srv


# RFC 8482: an ANY query gets one RRset of the name, in this order of preference.
ANY_PREFERENCE = (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_SRV, wire.TYPE_TXT, wire.TYPE_SOA)


def answer_any(types: dict[int, Answer]) -> None:
    """Point ANY at the first RRset of ``ANY_PREFERENCE`` the name has (none: NODATA)."""
    types.pop(wire.TYPE_ANY, None)
    for rtype in ANY_PREFERENCE:
        if rtype in types:
            types[wire.TYPE_ANY] = types[rtype]
            return


def encode_service(svc: ServiceRecords, origin: str, ttl: int) -> Names:
    """Every name at or below ``<svc>.<ns>.svc.<origin>``, with its answers."""
    enc = _Encoder(svc, origin, ttl)
    if svc.headless:
        if not svc.endpoints:
            return {}  # a headless service with no ready endpoint does not exist
        _headless(enc)
    else:
        _cluster_set_ip(enc)
    for name, types in enc.tables.items():
        answer_any(types)
        enc.names[name] = type_table(types)
    return enc.names
