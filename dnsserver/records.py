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

Weighted ClusterSetIP answers (``ServiceRecords.weighted``): the addresses of each cluster
with its weight; each rotation is led by an address of the cluster a smooth weighted
round-robin (nginx's) picks, followed by the others in interleaved order, so over a cycle of
rotations the share of answers each cluster leads is its weight (to 1/``MAX_SCHEDULE``).
The schedule is built here, when data changes; a query still sends one slice.

SRV: for a headless service each endpoint target carries the priority (its cluster's
failover tier) and weight (its share of its tier) the routing policy gave it (RFC 2782);
without them, weights split 100 evenly between targets, as CoreDNS does, with priority 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnsserver import wire
from dnsserver.answer import (
    EMPTY_TYPES,
    Answer,
    TypeTable,
    Unit,
    rotating,
    scheduled,
    type_table,
)

DNS_SCHEMA_VERSION = "1.0.0"
DEFAULT_MAX_ADDRESSES = 8
# Rotations kept per answer; beyond this many candidates, rotations step by more than one.
MAX_ROTATIONS = 64
# Rotations of a weighted answer: the shares are exact to 1/MAX_SCHEDULE.
MAX_SCHEDULE = 100


@dataclass(frozen=True, slots=True)
class HeadlessEndpoint:
    """One ready endpoint of a headless service, in the cluster that exports it."""

    cluster_id: str
    addresses: tuple[str, ...]
    hostname: str | None = None
    priority: int = 0  # SRV priority: the failover tier of its cluster, 0 first
    weight: int | None = None  # SRV weight (0-65535): its share of its tier; None: even split


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
    # ClusterSetIP with weights: each cluster's addresses (in ``addresses`` too) and weight.
    weighted: tuple[tuple[tuple[str, ...], int], ...] = ()
    ttl: int | None = None  # this service's TTL (meshd.io/ttl); None: the zone's


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
        weighted = _weighted(enc, rtype)
        if weighted is not None:
            enc.put(enc.service_name, rtype, weighted)
            continue
        # Step so that at most MAX_ROTATIONS rotations still let every candidate lead.
        step = -(-len(packed) // MAX_ROTATIONS)
        records = [enc.record(rtype, p) for p in packed]
        enc.put(enc.service_name, rtype, rotating(records, enc.svc.max_addresses, step))
    _srv(enc, [(enc.base, [], 0, None)])


def schedule(weights: list[int], length: int = MAX_SCHEDULE) -> list[int]:
    """Indexes into ``weights`` (all > 0), ``length`` long at most, each index as often as
    its weight's share (largest remainder), spread evenly (smooth weighted round-robin)."""
    total = sum(weights)
    length = min(length, total // _gcd(weights))
    exact = [w * length / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: length - sum(counts)]:
        counts[i] += 1
    current = [0] * len(counts)
    order = []
    for _ in range(length):
        for i, count in enumerate(counts):
            current[i] += count
        best = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[best] -= length
        order.append(best)
    return order


def _gcd(numbers: list[int]) -> int:
    result = 0
    for n in numbers:
        result = math.gcd(result, n)
    return max(result, 1)


def _weighted(enc: _Encoder, rtype: int) -> Answer | None:
    """The weighted rotations of one family (see the module docstring); None when the
    service is not weighted, or fewer than two clusters have addresses of this family."""
    family = 0 if rtype == wire.TYPE_A else 1
    groups = []
    for addresses, weight in enc.svc.weighted:
        packed = _family(addresses)[family]
        if packed and weight > 0:
            groups.append(([enc.record(rtype, p) for p in packed], weight))
    if len(groups) < 2 or len({w for _, w in groups}) < 2:
        return None
    interleaved = [
        g[0][i] for i in range(max(len(g[0]) for g in groups)) for g in groups if i < len(g[0])
    ]
    shown = min(enc.svc.max_addresses, len(interleaved))
    cursors = [0] * len(groups)
    rotations = []
    for index in schedule([w for _, w in groups]):
        records = groups[index][0]
        leader = records[cursors[index] % len(records)]
        cursors[index] += 1
        start = interleaved.index(leader)
        rest = interleaved[start + 1 :] + interleaved[:start]
        rotations.append([leader, *rest[: shown - 1]])
    return scheduled(rotations)


def _endpoint_hosts(ep: HeadlessEndpoint) -> list[tuple[str, tuple[str, ...]]]:
    if ep.hostname:
        return [(ep.hostname, ep.addresses)]
    return [(wire.dashed(a), (a,)) for a in ep.addresses]


def _headless(enc: _Encoder) -> None:
    hosts: dict[tuple[str, ...], list[str]] = {}
    plans: dict[tuple[str, ...], tuple[int, int | None]] = {}  # SRV priority and weight
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
            plans.setdefault((host, ep.cluster_id, *enc.base), (ep.priority, ep.weight))
    for rtype in (wire.TYPE_A, wire.TYPE_AAAA):
        if any(u.answer_count for u in units[rtype]):
            enc.put(enc.service_name, rtype, Answer.of_units(units[rtype]))
    targets: list[tuple[tuple[str, ...], list[bytes], int, int | None]] = []
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
        targets.append((labels, glue, *plans[labels]))
    _srv(enc, targets)


def _srv(
    enc: _Encoder, targets: list[tuple[tuple[str, ...], list[bytes], int, int | None]]
) -> None:
    """SRV at the service name (every port) and at ``_<port>._<proto>`` (named ports); each
    target is (labels, glue, priority, weight or None for an even split)."""
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
        for labels, glue, priority, planned in targets:
            target = enc.text_name(*labels)
            records = [
                enc.record(
                    wire.TYPE_SRV,
                    wire.rdata_srv(priority, w if planned is None else planned, p, target),
                )
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
    enc = _Encoder(svc, origin, ttl if svc.ttl is None else svc.ttl)
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
