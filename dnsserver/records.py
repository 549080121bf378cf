"""Encoding one service's names and answers (the MCS DNS grammar, KEP-1645).

For a service ``<svc>`` in namespace ``<ns>`` of zone ``<zone>``:

- ``<svc>.<ns>.svc.<zone>`` A/AAAA. ClusterSetIP: the addresses the routing policy chose,
  in its order, at most ``max_addresses`` per family, rotated per query through every
  candidate so that each gets its share. Headless: every ready endpoint, in a fixed order
  (``headless.endpoint_groups``), as many as fit a message; a headless service with no
  ready endpoint has no names at all (NXDOMAIN).
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

Limits. Nothing a source or a peer sends can make encoding fail: what cannot be encoded is
left out, noted as a ``Skipped`` with its reason (``SKIP_REASONS``), and the rest of the
service answers (the zone counts and logs them). A name over 255 octets (a 63-character
cluster id, service and namespace leave 40 octets for an endpoint's hostname) loses its
endpoint's name and SRV records; the endpoint's addresses stay in the service's A/AAAA. A
label over 63 octets (``_<port>`` of a 63-character port name) loses that ``_<port>`` name;
the service's own SRV still lists the port. An address that is not one, or a port number
out of range, is left out. An answer longer than a DNS message (65,535 octets: a headless
service's few thousand endpoints, or its SRV with glue of a few hundred) is built with the
groups of records that fit, TC=1 (``answer.Listing``); each endpoint keeps its own name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from dnsserver import wire
from dnsserver.answer import (
    EMPTY_TYPES,
    NEVER_CUT,
    Answer,
    Listing,
    records_answer,
    type_table,
)
from dnsserver.headless import Host, endpoint_groups
from dnsserver.nameblob import Answers
from dnsserver.rotation import rotating, scheduled
from dnsserver.weighted import weighted_rotations

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
    # ``addresses`` again, 4 octets each, when all IPv4 (the plain encoder parses no text).
    packed_v4: bytes = field(default=b"", compare=False)


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something of a service the zone leaves out: ``reason`` (one of ``SKIP_REASONS``), ``what``
    (the same text at each encoding) and ``detail`` for the log (not part of its identity)."""

    reason: str
    what: str
    detail: str = field(default="", compare=False)


SKIP_REASONS = (
    "name_too_long",  # a name over 255 octets
    "label_too_long",  # a label over 63 octets (``_<port>`` of a 63-character port name)
    "bad_label",  # an empty label, a dot inside one, or not ASCII
    "bad_address",  # not an IPv4 or IPv6 address
    "bad_port",  # a port number outside 0-65535
    "message_too_large",  # an answer cut to what fits a 65,535-octet message
    "internal",  # a bug of ours while encoding the service: the service is left out
)

Names = dict[bytes, Answers]  # type tables here; plain.py may give blobs


@dataclass(frozen=True, slots=True)
class Encoded:
    """One service's names with their answers, its own name (empty when it has none), what
    was left out, and the names as prefixes of ``service_name`` in order (``Zone._services``)
    when the encoder has them (``plainblob``: one tuple per shape; None: the zone makes it)."""

    names: Names
    service_name: bytes
    skipped: list[Skipped]
    shape: tuple[bytes, ...] | None = None


@functools.lru_cache(maxsize=4096)
def _namespace_name(namespace: str, origin: bytes) -> bytes:
    """``<ns>.svc.<origin>``: a zone has few namespaces and many services in each."""
    return wire.encode_labels((namespace, "svc"), origin)


def service_wire_name(namespace: str, name: str, origin: bytes) -> bytes:
    """``<name>.<ns>.svc.<origin>`` in wire form (``NameEncodingError`` if it cannot be)."""
    return wire.encode_labels((name,), _namespace_name(namespace, origin))


class _Encoder:
    def __init__(self, svc: ServiceRecords, origin: bytes, ttl: int) -> None:
        self.svc = svc
        self.ttl = ttl
        # Raises NameEncodingError when the service's own name cannot be encoded.
        self.service_name = service_wire_name(svc.namespace, svc.name, origin)
        self.names: Names = {}  # every name, in order; empty non-terminals: EMPTY_TYPES
        self.tables: dict[bytes, dict[int, Answer]] = {}  # the names that have records
        # (as dicts while they are built; ``tables`` turns them into ``TypeTable``s)
        self.skipped: list[Skipped] = []

    @property
    def text(self) -> str:
        """The service's name as text, for what is left out (rare: not made up front)."""
        return wire.name_text(self.service_name)

    def skip(self, reason: str, what: str, detail: str = "") -> None:
        self.skipped.append(Skipped(reason, what, detail))

    def below(self, *labels: str) -> bytes | None:
        """The wire name ``<labels>.<svc>.<ns>.svc.<zone>``; None (left out, and noted)
        when it cannot be encoded."""
        try:
            return wire.encode_labels(labels, self.service_name)
        except wire.NameEncodingError as exc:
            self.skip(exc.reason, f"{'.'.join(labels)}.{self.text}", str(exc))
            return None

    def packed(self, addresses: tuple[str, ...], of: str | None) -> list[tuple[int, bytes, str]]:
        """(4 or 6, packed, text) of each address that is one (the others are noted, as
        addresses of ``of``, None: of this service)."""
        out = []
        for address in addresses:
            try:
                version, packed = wire.packed_address(address)
            except (ValueError, TypeError, AttributeError):
                self.skip("bad_address", f"{address!r} of {of or self.text}")
                continue
            out.append((version, packed, address))
        return out

    def record(self, rtype: int, rdata: bytes, owner: bytes = wire.POINTER_TO_QNAME) -> bytes:
        if owner is wire.POINTER_TO_QNAME:  # most records: one shared head per shape
            return wire.rr_head(rtype, self.ttl, len(rdata)) + rdata
        return wire.rr(owner, rtype, self.ttl, rdata)

    def put(self, name: bytes, rtype: int, answer: Answer) -> None:
        types = self.tables.get(name)
        if types is None:
            types = self.tables[name] = {}
            self.names.setdefault(name, EMPTY_TYPES)  # its place; its table comes at the end
        types[rtype] = answer
        if answer.capped:
            self.skip("message_too_large", f"{wire.name_text(name)} {wire.TYPE_NAMES[rtype]}")

    def touch(self, name: bytes) -> None:
        """``name`` and its ancestors down to the service name exist (empty non-terminals)."""
        while len(name) > len(self.service_name):
            self.names.setdefault(name, EMPTY_TYPES)
            name = name[1 + name[0] :]
        self.names.setdefault(self.service_name, EMPTY_TYPES)


def _cluster_set_ip(enc: _Encoder) -> None:
    v4: list[bytes] = []
    v6: list[bytes] = []
    for version, octets, _ in enc.packed(enc.svc.addresses, None):
        (v4 if version == 4 else v6).append(octets)
    enc.touch(enc.service_name)
    for rtype, family in ((wire.TYPE_A, v4), (wire.TYPE_AAAA, v6)):
        if not family:
            continue
        weighted = _weighted(enc, rtype)
        if weighted is not None:
            enc.put(enc.service_name, rtype, weighted)
            continue
        # Step so that at most MAX_ROTATIONS rotations still let every candidate lead.
        step = -(-len(family) // MAX_ROTATIONS)
        records = [enc.record(rtype, p) for p in family]
        enc.put(enc.service_name, rtype, rotating(records, enc.svc.max_addresses, step))
    _srv(enc, [[Host("", "", name=enc.service_name)]], plain=True)


def _weighted(enc: _Encoder, rtype: int) -> Answer | None:
    """The weighted rotations of one family (see the module docstring); None when the
    service is not weighted, or fewer than two clusters have addresses of this family."""
    version = 4 if rtype == wire.TYPE_A else 6
    groups = []
    for addresses, weight in enc.svc.weighted:
        packed = [p for v, p, _ in enc.packed(addresses, None) if v == version]
        if packed and weight > 0:
            groups.append(([enc.record(rtype, p) for p in packed], weight))
    if len(groups) < 2 or len({w for _, w in groups}) < 2:
        return None
    return scheduled(weighted_rotations(groups, enc.svc.max_addresses))


def _headless(enc: _Encoder) -> bool:
    """Every name of a headless service; False when it has no endpoint to answer."""
    groups = endpoint_groups(enc.svc.endpoints, enc.packed)
    if not groups:
        return False
    listings = {4: Listing(), 6: Listing()}
    for group in groups:
        records: dict[int, list[bytes]] = {4: [], 6: []}
        for host in group:
            _host_names(enc, host, records)
        if not (listings[4].full and listings[6].full):
            # The same cost in both families, so that both answers cut the same groups.
            cost = max(sum(map(len, records[4])), sum(map(len, records[6])))
            for family, listing in listings.items():
                listing.add(records[family], cost)
    for family, rtype in ((4, wire.TYPE_A), (6, wire.TYPE_AAAA)):
        listing = listings[family]
        if listing.full and not listing.count:
            listing = _one_family(enc, groups, family)  # the other family filled it
        if listing.count:
            enc.put(enc.service_name, rtype, listing.build())
    _srv(enc, groups)
    return True


def _host_names(enc: _Encoder, host: Host, records: dict[int, list[bytes]]) -> None:
    """The name of ``host`` with its A and AAAA answers (unless it cannot be encoded), and
    its address records added to ``records``, by family."""
    host.name = enc.below(host.host, host.cluster)
    if host.name is not None:
        enc.touch(host.name)
    for family, rtype in ((4, wire.TYPE_A), (6, wire.TYPE_AAAA)):
        own = host.records(enc.ttl, family)
        records[family] += own
        if own and host.name is not None:
            enc.put(host.name, rtype, records_answer(own))


def _one_family(enc: _Encoder, groups: list[list[Host]], family: int) -> Listing:
    """The listing of one family alone: when so many groups of the other family come
    first that a message is full before any of this one's, this family's answer lists
    its own (rather than none at all, with TC=1)."""
    listing = Listing()
    for group in groups:
        records = [r for host in group for r in host.records(enc.ttl, family)]
        if records and not listing.add(records, sum(map(len, records))):
            break
    return listing


def _srv(enc: _Encoder, groups: list[list[Host]], plain: bool = False) -> None:
    """SRV at the service name (every port) and at ``_<port>._<proto>`` (named ports), to
    every named host of ``groups``, group by group. ``plain``: the one target is the service
    name, with no glue and the default priority and weight (a ClusterSetIP service)."""
    targets = sum(1 for group in groups for host in group if host.name is not None)
    if not enc.svc.ports or not targets:
        return
    weight = 100 // targets
    # Per owner, its (port, weight) pairs in order, without duplicates.
    owners: dict[bytes, dict[tuple[int, int], None]] = {enc.service_name: {}}
    for port_name, protocol, port in enc.svc.ports:
        if not (isinstance(port, int) and 0 <= port <= 0xFFFF):
            enc.skip("bad_port", f"{port_name}/{protocol}/{port!r} of {enc.text}")
            continue
        if port_name:
            owner = enc.below(f"_{port_name}", f"_{protocol.lower()}")
            if owner is not None:
                owners.setdefault(owner, {})[(port, weight)] = None
        owners[enc.service_name][(port, weight)] = None
    # Owners with the same ports get the same answer, one object: a ClusterSetIP service
    # with one named port answers the same SRV at its name and at ``_<port>._<proto>``.
    # Sharing is safe because SRV answers never rotate (``turn`` is unused) and are not
    # changed after this function returns.
    shared: dict[tuple[tuple[int, int], ...], Answer] = {}
    for owner, pairs in owners.items():
        ports = tuple(pairs)
        if not ports:
            continue
        enc.touch(owner)
        answer = shared.get(ports)
        if answer is None:
            answer = _plain_srv(enc, ports) if plain else None
            answer = shared[ports] = answer or _srv_answer(enc, groups, ports)
        enc.put(owner, wire.TYPE_SRV, answer)


_NO_GLUE = (b"", 0)


def _plain_srv(enc: _Encoder, ports: tuple[tuple[int, int], ...]) -> Answer | None:
    """The SRV answer of a ClusterSetIP service: one record per port to the service name,
    priority 0, no glue; None when it is long enough to be cut (``_srv_answer`` then
    builds it with its cut points). The same octets ``_srv_answer`` makes, without
    building a listing for what is one small group."""
    target = enc.service_name
    records = [enc.record(wire.TYPE_SRV, wire.rdata_srv(0, w, p, target)) for p, w in ports]
    if sum(map(len, records)) > NEVER_CUT:
        return None
    return Answer.of(wire.RCODE_NOERROR, records)


def _srv_answer(
    enc: _Encoder, groups: list[list[Host]], ports: tuple[tuple[int, int], ...]
) -> Answer:
    """One record per (target, port), group by group; a target's glue goes with its first."""
    listing = Listing()
    for group in groups:
        records: list[bytes] = []
        glue: list[tuple[bytes, int]] = []
        for host in group:
            if host.name is None:
                continue
            first = host.glue(enc.ttl)
            for i, (port, weight) in enumerate(ports):
                planned = weight if host.weight is None else host.weight
                rdata = wire.rdata_srv(host.priority, planned, port, host.name)
                records.append(enc.record(wire.TYPE_SRV, rdata))
                glue.append(_NO_GLUE if i else first)
        cost = sum(map(len, records)) + sum(len(g) for g, _ in glue)
        if not listing.add(records, cost, glue):
            break
    return listing.build()


# RFC 8482: an ANY query gets one RRset of the name, in this order of preference.
ANY_PREFERENCE = (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_SRV, wire.TYPE_TXT, wire.TYPE_SOA)


def answer_any(types: dict[int, Answer]) -> None:
    """Point ANY at the first RRset of ``ANY_PREFERENCE`` the name has (none: NODATA)."""
    types.pop(wire.TYPE_ANY, None)
    for rtype in ANY_PREFERENCE:
        if rtype in types:
            types[wire.TYPE_ANY] = types[rtype]
            return


def encode_service(svc: ServiceRecords, origin: bytes, ttl: int) -> Encoded:
    """Every name at or below ``<svc>.<ns>.svc.<origin>`` (``origin`` in wire form), with
    its answers, and what had to be left out. Raises only for a bug of ours."""
    try:
        enc = _Encoder(svc, origin, ttl if svc.ttl is None else svc.ttl)
    except wire.NameEncodingError as exc:
        what = f"{svc.name}.{svc.namespace}.svc.{wire.name_text(origin)}"
        return Encoded({}, b"", [Skipped(exc.reason, what, str(exc))])
    if svc.headless:
        if not _headless(enc):
            # A headless service with no ready endpoint does not exist.
            return Encoded({}, b"", enc.skipped)
    else:
        _cluster_set_ip(enc)
    for name, types in enc.tables.items():
        answer_any(types)
        enc.names[name] = type_table(types)
    return Encoded(enc.names, enc.service_name, enc.skipped)
