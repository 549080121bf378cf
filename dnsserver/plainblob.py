"""The commonest service's names in one call: a plain ClusterSetIP service with IPv4
addresses given as octets and one SRV answer shared by all its SRV owners (pure).

Theory of operation. A catch-up encodes every service of the clusterset at once, and most
are of one shape: a few IPv4 addresses (``ServiceRecords.packed_v4``: the routing policy's
packed endpoints), one port, named or not. ``dnsserver.plain`` encodes those in a dozen
Python calls; here the parts that depend only on the service's ports, TTL and the length of
its name (the SRV records less their target, which owners there are, the shape of its names
for the zone) are made once per zone and shape (``_srv_shape``, cached), and the rest (the
service's wire name, the A part, the blob, its rotation counter) in one call of the C fast
path (``_fastpath.plain_blob``, ``_fastpath_plain.c``), or of its pure-Python twin
``build`` where the extension is absent. ``build`` is written with ``plain``'s own helpers
and ``nameblob.pack_address_srv``, so it builds what ``plain.encode_plain`` builds; it is
the C function's oracle in the seeded property tests (tests/unit/test_plainblob.py), which
also hold ``encode`` to ``encode_plain``: the same names in the same order, the same blobs,
the same counters taken.

The routing policy's side of the same services (``mesh.routing.plain``) needs the texts of
the packed addresses, without duplicates, for ``ServiceRecords.addresses``: ``quad_texts``
makes them in one call (``_fastpath.quad_texts``; ``quad_texts_py`` its twin), or says
None (duplicates, none, too many) and the routing makes them the general way.

``encode`` declines (None) every other service, and every service whose name, addresses or
answer sizes the one call does not cover; the caller then encodes it as before
(``encode_plain``). So it never raises for what a service holds, and never leaves out
anything (``Encoded.skipped`` is empty).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

from dnsserver import nameblob, wire
from dnsserver.answer import EMPTY_TYPES, NEVER_CUT, Answer
from dnsserver.nameblob import Answers, Turns
from dnsserver.plain import _address_part, _namespace_suffix, _srv_plan
from dnsserver.records import Encoded, ServiceRecords

Build = Callable[[str, bytes, bytes, bytes, int, int, int, Turns], "tuple[bytes, bytes] | None"]


def build(
    name: str,
    suffix: bytes,
    octets: bytes,
    srv: bytes,
    srv_count: int,
    ttl: int,
    max_addresses: int,
    turns: Turns,
) -> tuple[bytes, bytes] | None:
    """(The service's wire name ``<name>`` + ``suffix``, its blob with an A answer of
    ``octets`` (4 each) and the SRV answer ``srv`` of ``srv_count`` records less their
    target), or None when the name cannot be encoded or the A answer cannot be a blob's
    (see ``_fastpath_plain.c``, which does the same in one call)."""
    if not (0 < srv_count <= 255 and 0 <= ttl <= 0xFFFFFFFF and octets and len(octets) % 4 == 0):
        return None
    if len(srv) > 0xFFFF - 23 - nameblob.MAX_BODIES:
        return None
    if not name.isascii():  # ``plain._service_name``, with the suffix given
        return None
    raw = name.lower().encode("ascii")
    if not raw or b"." in raw or len(raw) > wire.MAX_LABEL:
        return None
    wire_name = bytes((len(raw),)) + raw + suffix
    if len(wire_name) > wire.MAX_NAME:
        return None
    family = [octets[i : i + 4] for i in range(0, len(octets), 4)]
    part = _address_part(wire.TYPE_A, family, ttl, max_addresses)
    if isinstance(part, Answer) or not nameblob.rings_fit(part):
        return None  # an ``Answer`` with cut points, or a ring too long for a blob
    end = len(wire_name)
    return wire_name, nameblob.pack_address_srv(end, part, (srv, srv_count, ()), turns)


def _c_build() -> Build | None:
    try:
        from dnsserver._fastpath import plain_blob
    except ImportError:  # no C compiler where it was installed: the twin
        return None
    return plain_blob


# The C function when it is there, else the twin (the same results: the property tests).
build_blob: Build = _c_build() or build

QUADS_MAX = 64  # the most addresses ``quad_texts`` formats (more: the general way)
_QUADS = struct.Struct("4B").iter_unpack


def quad_texts_py(octets: bytes) -> tuple[str, ...] | None:
    """The dotted-quad text of each 4 octets, in order; None when there are none, they are
    not a multiple of 4, there are more than ``QUADS_MAX``, or two are the same (the
    routing's plain shortcut then removes duplicates the general way). The twin of
    ``_fastpath.quad_texts``, which does it in one call."""
    if not octets or len(octets) % 4 or len(octets) > 4 * QUADS_MAX:
        return None
    texts = tuple(f"{a}.{b}.{c}.{d}" for a, b, c, d in _QUADS(octets))
    return texts if len(set(texts)) == len(texts) else None


def _c_quads() -> Callable[[bytes], tuple[str, ...] | None] | None:
    try:
        from dnsserver._fastpath import quad_texts
    except ImportError:
        return None
    return quad_texts


quad_texts = _c_quads() or quad_texts_py

# What ``_srv_shape`` gives: the SRV records less their target, how many, each other SRV
# owner's labels before the service name with the labels of its empty parent
# (``_<proto>``), and the service's names as prefixes (``Zone._services``' shape).
SrvShape = tuple[bytes, int, tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]


@functools.lru_cache(maxsize=1024)
def _srv_shape(ports: tuple[tuple[str, str, int], ...], ttl: int, name_len: int) -> SrvShape | None:
    """The parts of a service's names that depend only on its ports, its TTL and the length
    of its name (a zone has few of them): None unless ``plain._srv_plan`` gives one SRV
    answer that every owner shares (one port, named or not: most services)."""
    plan = _srv_plan(ports, ttl, name_len)
    if plan is None:
        return None
    owners, records = plan
    if len(records) != 1:
        return None
    others = tuple((labels, labels[1 + labels[0] :]) for labels, _ in owners if labels)
    shape: list[bytes] = [b""]
    for labels, parent in others:
        shape += [labels, parent]
    # As ``Zone._shape`` makes it: names in order, without repeats.
    return b"".join(records[0]), len(records[0]), others, tuple(dict.fromkeys(shape))


# What ``made`` gives: the service's wire name, its blob, its other SRV owners (each one's
# labels before the name, and its empty parent's) and the shape of its names.
Made = tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]


def made(svc: ServiceRecords, origin: bytes, ttl: int, turns: Turns) -> Made | None:
    """What ``encode`` gives, before it is an ``Encoded`` (``Zone.set_service`` puts it in
    its table as it is; see ``Made``); None for the services ``encode`` declines."""
    octets = svc.packed_v4
    if not octets or svc.headless or svc.weighted or not svc.ports:
        return None
    if type(octets) is not bytes:  # the C function takes bytes only (a TypeError else)
        return None
    if len(octets) != 4 * len(svc.addresses):
        return None  # not the addresses' octets: ``plain`` parses the texts
    if svc.ttl is not None:
        ttl = svc.ttl
    name = svc.name
    if type(name) is not str or type(ttl) is not int or type(svc.max_addresses) is not int:
        return None
    for _, _, port in svc.ports:
        if type(port) is not int:  # what the cache would take for an equal int
            return None
    try:
        suffix = _namespace_suffix(svc.namespace, origin)
        shape = _srv_shape(svc.ports, ttl, 1 + len(name) + len(suffix))
    except (wire.NameEncodingError, AttributeError, TypeError, ValueError):
        return None
    if shape is None:
        return None
    srv, srv_count, others, prefixes = shape
    built = build_blob(name, suffix, octets, srv, srv_count, ttl, svc.max_addresses, turns)
    if built is None:
        return None
    return built[0], built[1], others, prefixes


def encode(svc: ServiceRecords, origin: bytes, ttl: int, turns: Turns) -> Encoded | None:
    """``plain.encode_plain(svc, origin, ttl, turns)`` for the services the one call covers
    (see the module docstring), with their shape (``Encoded.shape``); None for the others."""
    got = made(svc, origin, ttl, turns)
    if got is None:
        return None
    wire_name, blob, others, prefixes = got
    names: dict[bytes, Answers] = {wire_name: blob}
    for labels, parent in others:
        names.setdefault(labels + wire_name, blob)
        names.setdefault(parent + wire_name, EMPTY_TYPES)
    return Encoded(names, wire_name, [], prefixes)


__all__ = ["NEVER_CUT", "build", "build_blob", "encode", "made", "quad_texts", "quad_texts_py"]
