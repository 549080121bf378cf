"""The commonest service's names and answers, encoded in one go (pure).

Most services of a large clusterset are plain ClusterSetIP services: a few addresses in the
routing policy's order, a port or two, no weights, nothing to leave out. The general encoder
(``records.encode_service``) builds them through machinery every shape needs (per-address
checks, SRV owners by (port, weight), listings, a dict of types per name), tens of Python
calls per service; a catch-up encodes every service of the clusterset at once, and those
calls were most of its cost. ``encode_plain`` builds the same names, in the same order, with
the same answers (the same octets, the same kinds of ``Answer``, one SRV answer shared by
the owners with the same ports) in a few calls per service. When the caller has the
addresses as octets already (``ServiceRecords.packed_v4``: the routing policy's packed
endpoints), it takes those and parses no text.

Given the zone's rotation counters (``nameblob.Turns``), as the zone gives them, it holds
each name's answers in one ``bytes`` instead (``dnsserver.nameblob``: the same octets
sent, about 300 octets less per service), unless an address answer needs cut points or
the rings are too long for a blob; without, type tables as above (which the property
tests compare; tests/unit/test_nameblob.py holds the two forms together).

It declines (None) every service it does not cover, which the zone then encodes the general
way: a headless or weighted service; an address that is not an IP address; a port number out
of range; a name or a ``_<port>._<proto>`` label that cannot be encoded; an SRV answer long
enough to need cut points (over ``NEVER_CUT`` octets: five ports or more of a long name).
So it never has anything to leave out (``Encoded.skipped`` is empty), and everything
``records.py`` says of names, rotation and limits holds for what it builds. A property test
(tests/unit/test_plain_records.py) holds the two encoders together, byte for byte, over
seeded random services of every shape.
"""

from __future__ import annotations

import functools
import struct

from dnsserver import nameblob, wire
from dnsserver.answer import (
    EMPTY_TYPES,
    NEVER_CUT,
    Answer,
    RotatingAnswer,
    rotation_shape,
)
from dnsserver.nameblob import Answers, Part, Turns, pack
from dnsserver.records import MAX_ROTATIONS, Encoded, ServiceRecords
from dnsserver.rotation import rotating

_SRV_FIXED = struct.Struct("!HHH")  # priority, weight, port of an SRV record's rdata
# A ClusterSetIP service's SRV has one target (its own name): priority 0, weight 100 // 1.
_PLAIN_WEIGHT = 100


@functools.lru_cache(maxsize=4096)
def _namespace_suffix(namespace: str, origin: bytes) -> bytes:
    """``<ns>.svc.<origin>`` (``NameEncodingError`` if it cannot be encoded)."""
    return wire.encode_labels((namespace, "svc"), origin)


def _service_name(svc: ServiceRecords, origin: bytes) -> bytes | None:
    """``records.service_wire_name`` of the service; None when it cannot be encoded."""
    name = svc.name
    if not name.isascii():
        return None
    raw = name.lower().encode("ascii")
    if not raw or b"." in raw or len(raw) > wire.MAX_LABEL:
        return None
    out = bytes((len(raw),)) + raw + _namespace_suffix(svc.namespace, origin)
    return out if len(out) <= wire.MAX_NAME else None


# How a plain service's SRV answers are made (``_srv_plan``): each owner as its labels
# before the service name (b"" for the service name itself) with the index of its answer,
# and each answer's records less their target (the service name, which ends each).
SrvPlan = tuple[tuple[tuple[bytes, int], ...], tuple[tuple[bytes, ...], ...]]


@functools.lru_cache(maxsize=1024)
def _srv_plan(ports: tuple[tuple[str, str, int], ...], ttl: int, name_len: int) -> SrvPlan | None:
    """The SRV plan (``SrvPlan``) of a plain service with these ports, TTL and a name of
    ``name_len`` octets (a zone has few distinct sets of ports): the owners are the service
    name, then each ``_<port>._<proto>`` in port order, each with its ports in order without
    duplicates, and owners with the same ports share one answer (as ``records._srv``). None
    for a bad port, a label that cannot be encoded, a name over 255 octets, or an answer
    long enough to need cut points."""
    owners: dict[bytes, dict[int, None]] = {b"": {}}
    for port_name, protocol, port in ports:
        if not 0 <= port <= 0xFFFF:
            return None
        if port_name:
            try:
                labels = wire.encode_labels((f"_{port_name}", f"_{protocol.lower()}"), b"")
            except (wire.NameEncodingError, AttributeError, TypeError):
                return None
            if len(labels) + name_len > wire.MAX_NAME:
                return None
            owners.setdefault(labels, {})[port] = None
        owners[b""][port] = None
    head = wire.rr_head(wire.TYPE_SRV, ttl, _SRV_FIXED.size + name_len)
    shared: dict[tuple[int, ...], int] = {}
    records: list[tuple[bytes, ...]] = []
    plan: list[tuple[bytes, int]] = []
    for labels, numbers in owners.items():
        key = tuple(numbers)
        if key not in shared:
            if len(key) * (len(head) + _SRV_FIXED.size + name_len) > NEVER_CUT:
                return None
            shared[key] = len(records)
            records.append(tuple(head + _SRV_FIXED.pack(0, _PLAIN_WEIGHT, p) for p in key))
        plan.append((labels, shared[key]))
    return tuple(plan), tuple(records)


def _all_ipv4(addresses: tuple[str, ...]) -> bytes | None:
    """The octets of every address, 4 each, when all are dotted quads in canonical form (as
    ``wire.packed_ipv4`` takes them, in a few calls for all); else None."""
    if not addresses or [a.count(".") for a in addresses] != [3] * len(addresses):
        return None
    octets = bytes(map(int, ".".join(addresses).split(".")))
    # Canonical only (no leading zeros, signs, spaces or other digits): as packed_ipv4.
    return octets if ".".join(map(str, octets)) == ".".join(addresses) else None


def _families(
    addresses: tuple[str, ...], packed_v4: bytes
) -> tuple[list[bytes], list[bytes]] | None:
    """The packed IPv4 and IPv6 addresses, in order; None if one is not an address.
    ``packed_v4``: the addresses' octets when the caller has them (``ServiceRecords``),
    taken as they are (then they are the addresses, all IPv4), else b"": parse the texts."""
    if packed_v4 and len(packed_v4) == 4 * len(addresses):
        return [packed_v4[i : i + 4] for i in range(0, len(packed_v4), 4)], []
    try:
        octets = _all_ipv4(addresses)
    except (ValueError, TypeError, AttributeError):  # not text, or a part not an octet
        octets = None
    if octets is not None:
        return [octets[i : i + 4] for i in range(0, len(octets), 4)], []
    v4: list[bytes] = []
    v6: list[bytes] = []
    packed_ipv4 = wire.packed_ipv4
    for address in addresses:
        try:
            octets = packed_ipv4(address)
            if octets is not None:
                v4.append(octets)
                continue
            version, octets = wire.packed_address(address)
        except (ValueError, TypeError, AttributeError):
            return None
        (v4 if version == 4 else v6).append(octets)
    return v4, v6


def _address_part(rtype: int, family: list[bytes], ttl: int, shown: int) -> Part | Answer:
    """What ``records._cluster_set_ip`` builds for one family (not weighted): as a
    ``nameblob.Part`` when it is never cut, else the ``Answer`` (with cut points)."""
    length = len(head := wire.rr_head(rtype, ttl, len(family[0]))) + len(family[0])
    records = [head + octets for octets in family]
    step = -(-len(records) // MAX_ROTATIONS)
    count = -(-len(records) // step)
    shown = min(shown, len(records))
    if not 0 < shown * length <= NEVER_CUT:
        return rotating(records, shown, step)  # none shown, or cut points
    if count < 2:  # what ``rotating`` builds for one rotation, without its checks
        return b"".join(records[:shown]), shown, ()
    # What ``rotating`` builds for a ring shown whole in every message, without its checks.
    return b"".join(records), shown, rotation_shape(step * length, count, shown * length)


def _answer_of(part: Part | Answer) -> Answer:
    """The ``Answer`` of a part (the type-table form, see ``encode_plain``)."""
    if isinstance(part, Answer):
        return part
    body, shown, rotation = part
    if rotation:
        return RotatingAnswer.ring(body, shown, rotation)
    return Answer.records(body, shown)


def _srv_parts(svc: ServiceRecords, name: bytes, ttl: int) -> dict[bytes, Part] | None:
    """Each SRV owner's answer (see ``_srv_plan``), by its name, owners with the same ports
    sharing one part object; None as ``_srv_plan``."""
    for _, _, port in svc.ports:
        if type(port) is not int:  # what the plan's cache would take for an equal int
            return None
    plan = _srv_plan(svc.ports, ttl, len(name))
    if plan is None:
        return None
    owners, records = plan
    # Without their target (the service name): ``nameblob`` adds it per query, ``_tables``
    # to make an ``Answer`` of it.
    made: list[Part] = [(b"".join(rs), len(rs), ()) for rs in records]
    return {labels + name if labels else name: made[index] for labels, index in owners}


def encode_plain(
    svc: ServiceRecords, origin: bytes, ttl: int, turns: Turns | None = None
) -> Encoded | None:
    """``records.encode_service(svc, origin, ttl)`` for a plain ClusterSetIP service (see
    the module docstring); None for any other, which the caller encodes the general way.
    With ``turns`` (the zone's rotation counters) a name whose answers are never cut is one
    ``nameblob`` blob instead of a type table (the same octets sent: ``nameblob.view``)."""
    if svc.headless or svc.weighted:
        return None
    try:
        name = _service_name(svc, origin)
        families = _families(svc.addresses, svc.packed_v4) if name is not None else None
        ttl = ttl if svc.ttl is None else svc.ttl
        srv = _srv_parts(svc, name, ttl) if name is not None and svc.ports else {}
    except (wire.NameEncodingError, AttributeError, TypeError, ValueError):
        return None  # a name, a port or addresses the general encoder leaves out
    if name is None or families is None or srv is None:
        return None
    v4, v6 = families
    a = _address_part(wire.TYPE_A, v4, ttl, svc.max_addresses) if v4 else None
    aaaa = _address_part(wire.TYPE_AAAA, v6, ttl, svc.max_addresses) if v6 else None
    if (
        turns is not None
        and not isinstance(a, Answer)
        and not isinstance(aaaa, Answer)
        and nameblob.rings_fit(a, aaaa)  # not thousands of addresses
    ):
        return _blobs(name, a, aaaa, srv, turns)
    return _tables(name, a, aaaa, srv)


def _tables(
    name: bytes, a: Part | Answer | None, aaaa: Part | Answer | None, srv: dict[bytes, Part]
) -> Encoded:
    """The names as type tables of ``Answer`` objects (one per shared part)."""
    made: dict[int, Answer] = {}
    for part in srv.values():
        if id(part) not in made:
            made[id(part)] = _answer_of((nameblob.with_targets(part[0], name), part[1], ()))
    a_answer = _answer_of(a) if a is not None else None
    aaaa_answer = _answer_of(aaaa) if aaaa is not None else None
    own_srv = made[id(srv[name])] if name in srv else None
    # ANY: the first of A, AAAA, SRV (records.ANY_PREFERENCE)
    first = a_answer or aaaa_answer or own_srv
    names: dict[bytes, Answers] = {
        name: EMPTY_TYPES if first is None else (a_answer, aaaa_answer, own_srv, first)
    }
    for owner, part in srv.items():
        if owner is not name:
            answer = made[id(part)]
            names.setdefault(owner, (None, None, answer, answer))
            names.setdefault(owner[1 + owner[0] :], EMPTY_TYPES)  # ``_<proto>.<svc>``
    return Encoded(names, name, [])


def _blobs(
    name: bytes, a: Part | None, aaaa: Part | None, srv: dict[bytes, Part], turns: Turns
) -> Encoded:
    """The names as ``nameblob`` blobs: an owner whose SRV answer is the service's own maps
    to the service's blob (see ``nameblob``); the others get one of their own."""
    own_srv = srv.get(name)
    end = len(name)
    blob: Answers = EMPTY_TYPES
    if a is not None and aaaa is None and own_srv is not None:  # the commonest
        blob = nameblob.pack_address_srv(end, a, own_srv, turns)
    elif a or aaaa or own_srv:
        blob = pack(end, end, (a, aaaa, own_srv), turns)
    names: dict[bytes, Answers] = {name: blob}
    for owner, part in srv.items():
        if owner is not name:
            shared = part is own_srv
            own = blob if shared else pack(len(owner), end, (None, None, part), turns)
            names.setdefault(owner, own)
            names.setdefault(owner[1 + owner[0] :], EMPTY_TYPES)  # ``_<proto>.<svc>``
    return Encoded(names, name, [])
