"""A fast path for decoding the common service record, with protobuf as the reference.

Why. A newcomer's catch-up decodes every service record of the clusterset, and through
protobuf's Python objects that costs about 10 us a record (each field read makes or looks
up a wrapper object): most of the time of taking the records. Nearly every record has one
shape: a service whose endpoints are ready, with one IPv4 address each and no hostname or
zone, encoded the way every agent encodes it (protobuf's deterministic serialization:
fields in number order, each once). ``fast_service`` reads exactly that shape from the
record's bytes with one regular expression match (C code) and a few Python operations;
``fast_sealed`` does the same through the record's ``Sealed`` wrapper (its body, and the
batch it names), so that a record verified through its batch needs no protobuf at all.

The rule that makes this safe: the expression accepts only bytes whose protobuf meaning is
unambiguous, and gives exactly that meaning, with every check the general path
(``mesh.wire.service_decode``) applies; anything else (another shape, an IPv6 address, an
unknown field, a field out of order, a length that does not add up, a rule broken) is
``None``, and the caller decodes the record through protobuf as before, which also reports
what is wrong. So for every input the fast path's answer is the general path's answer or
no answer (``tests/unit/test_record_fast.py`` checks this on seeded random records and on
mutations of them). How each piece is pinned down:

- a length-prefixed label (cluster, replica, namespace, name) is captured with its length
  byte, which must equal the label's length (no label character is a field tag, so the
  label cannot run into the next field);
- a length-prefixed address (an endpoint's, the cluster IP) is matched by one alternative
  per possible length byte ``n``, whose lookahead says that exactly ``n`` characters of
  its class follow (the next byte, a field tag or the end, is not of the class); the
  dotted-quad rule must then consume all ``n`` of them for the match to continue, and an
  endpoint's own length byte is tied to its address's (``n + 4``);
- a signature and key id, when the seal has them, are of the lengths (and the key id of
  the characters) that ``mesh.security.signing`` makes;
- a varint is 1-9 bytes (below 2^63, where protobuf and this decoder agree);
- a list of ports (``ports``, ``endpoint_ports``) is matched by its structure, and its
  bytes must then be a list already decoded by protobuf (the table ``_PORT_LISTS``, filled
  on first sight by parsing those bytes alone) whose ports passed the codec's checks and
  whose bytes are exactly what ``encode_sealed`` makes of them (so every length in them is
  right, and no port carries a field the model does not keep: protobuf's own re-encoding
  would keep an unknown field, the model's would not), and of at most
  ``MAX_PORT_LIST_BYTES`` (what is read here is kept before the record's seal is checked);
- the service's own length must reach exactly the end of the record (it is the last field).

A record it reads is also the only encoding of what it says (its numbers and lengths are
written as protobuf writes them, a present ``exported_at`` is positive, the ports lists
re-encode to their bytes), so ``encode_sealed`` makes its sealed bytes again, byte for
byte, from what was read: a holder keeps the decoded record and not its bytes
(``mesh.wire.sealed_record.CanonicalServiceRecord``), and what it relays is unchanged
(``mesh.wire.record_remake``).
Its endpoints are all plain IPv4, so they are held packed (``PackedEndpoints``), made from
the matched octets without making their address texts.

Pure: bytes in, model values (or None) out, and back.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from mesh.model import (
    Endpoints,
    ExportedService,
    PackedEndpoints,
    ServicePort,
    ServiceType,
    new_key,
    new_service,
)
from mesh.wire.record_remake import encode_body, encode_sealed, port_bytes, record_prefix
from mesh.wire.service_decode import MAX_SHARED, CodecError, port_list, shared
from mesh.wire.v1 import gossip_pb2 as pb

__all__ = [
    "MAX_PORT_LIST_BYTES",
    "Sealing",
    "encode_body",
    "encode_sealed",
    "fast_sealed",
    "fast_service",
    "read_sealed",
    "record_prefix",
]

_LABEL = rb"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123 (as model.is_dns_label)
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_QUAD = rb"(?:" + _OCTET + rb"\.){3}" + _OCTET  # canonical, as mesh.address takes it
_VARINT = rb"[\x80-\xff]{0,8}[\x00-\x7f]"
# A positive number as protobuf writes it (no needless last byte): the record's numbers
# and lengths, so that its bytes are the one encoding of what they say (``encode_sealed``).
_NUMBER = rb"(?:[\x80-\xff]{1,8}[\x01-\x7f]|[\x01-\x7f])"


def _sized(chars: bytes, rule: bytes, sizes: range, *, own: bool = False) -> bytes:
    """A length byte n in ``sizes`` then exactly n ``chars`` that match ``rule`` whole
    (captured if ``own`` is false). ``own``: an endpoint's own length byte (n + 4) and its
    address field's tag come first."""
    options = []
    for n in sizes:
        prefix = re.escape(bytes([n + 4])) + b"\n" if own else b""
        ahead = chars + b"{%d}(?!" % n + chars + b")"
        options.append(prefix + re.escape(bytes([n])) + b"(?=" + ahead + b")")
    return b"(?:" + b"|".join(options) + (b")(?:" if own else b")(") + rule + b")"


_LABEL_CHARS = b"[-a-z0-9]"
_ADDRESS_CHARS = b"[0-9.]"
# A label field's length byte and the label (both captured: the caller checks that the
# length is the label's; no label character is a field tag, so the label ends there).
_LABEL_FIELD = b"([\x01-\x3f])(" + _LABEL + b")"
_ENDPOINT = b"\\*" + _sized(_ADDRESS_CHARS, _QUAD, range(7, 16), own=True) + b"\x10\x01"
# A port's structure; its lengths are checked through protobuf (``_ports``). Its protocol
# and number are required (the codec refuses a port without) and its name is at most a
# label long, so a port is matched one way only: nothing gives back, and the lists below
# are possessive (``*+``), so bytes that fail late fail once, not once per port (a crafted
# 64 KiB record took 25-60 ms, backtracking through every port, name byte and endpoint).
_PORT = (
    b"[\x00-\x7f](?:\n[\x01-\x3f]" + _LABEL_CHARS + b"{1,63})?"
    b"\x12(?:\x03TCP|\x03UDP|\x04SCTP)\x18" + _VARINT
)
# The record's fields, each group numbered as ``_read`` takes them (groups 1 and 2, the
# body's length and the body, are the sealed record's).
_RECORD = b"".join(
    [
        b"\n" + _LABEL_FIELD,  # 3, 4: cluster_id = 1
        b"(?:\x12" + _LABEL_FIELD + b")?",  # 5, 6: replica = 2
        b"\x18(" + _NUMBER + b")",  # 7: generation = 3
        b" (" + _NUMBER + b")",  # 8: version = 4
        b"\\*(" + _NUMBER + b")",  # 9: service = 5: its length, then it to the end
        b"\n" + _LABEL_FIELD,  # 10, 11: namespace = 1
        b"\x12" + _LABEL_FIELD,  # 12, 13: name = 2
        b"\x18([\x01\x02])",  # 14: type = 3 (CLUSTER_SET_IP, HEADLESS)
        b"((?:\x22" + _PORT + b")*+)",  # 15: ports = 4
        b"((?:" + _ENDPOINT + b")*+)",  # 16: endpoints = 5 (ready, one IPv4 address each)
        b"(?:1(.{8}))?",  # 17: exported_at = 6 (a double)
        b"((?:R" + _PORT + b")*+)",  # 18: endpoint_ports = 10
        b"(?:Z" + _sized(_ADDRESS_CHARS, _QUAD, range(7, 16)) + b")?",  # 19: cluster_ips = 11
    ]
)
_BODY = re.compile(b"()(" + _RECORD + b")", re.DOTALL)
# A sealed record (``Sealed``): the record's bytes, then its own signature and key id (of
# the lengths and, for the key id, the characters ``mesh.security.signing`` makes: valid
# text, as protobuf requires of a string) if it has one (20, 21), then the batch naming it
# (22).
_SEALED = re.compile(
    b"\n(" + _NUMBER + b")(" + _RECORD + b")"
    b"(?:\x12@(.{64})\x1a ([0-9a-f]{32}))?(?:\xa0\x01(" + _NUMBER + b"))?",
    re.DOTALL,
)
# The octets of the endpoints' addresses: no tag or length byte of an endpoint is a digit,
# so the octets' texts are the digit runs: every other byte made a space, then split on
# spaces (in C, about half the time of a regular expression's ``findall``). Each is
# canonical (``_OCTET``), so one of these texts: looked up, faster than ``int``.
_NOT_DIGITS_TO_SPACES = bytes(b if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_OCTET_VALUE = {str(n).encode(): n for n in range(256)}.__getitem__
_DOUBLE = struct.Struct("<d")
_TYPES = {1: ServiceType.CLUSTER_SET_IP, 2: ServiceType.HEADLESS}

# Lists of ports seen, by their bytes (each list checked once; bounded like ``shared``).
_PORT_LISTS: dict[bytes, tuple[ServicePort, ...]] = {}
# The longest list of ports read here (about 14 named ports; nearly every service has 1-3).
# A record is read before its signature is checked, and what is read here is kept (this
# table, ``shared``): without a bound, any relay could pin ten times the bytes it sends
# (65,536 lists of any length). A longer list is protobuf's, which checks the seal first.
MAX_PORT_LIST_BYTES = 256


def _varint(data: bytes) -> int:
    size = len(data)
    if size == 2:  # (versions and batches up to 16,383: most of a large origin's)
        return data[0] & 0x7F | data[1] << 7
    if size == 1:
        return data[0]
    value = 0
    for shift, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * shift)
    return value


def fast_service(
    body: bytes, cluster_id: str, replica: str, generation: int
) -> tuple[int, ExportedService] | None:
    """(version, service) of the record ``body`` when it has the common shape, is of the
    origin (``cluster_id``, ``replica``, ``generation``) and breaks no rule; else None."""
    prefix = _prefix_or_none(cluster_id, replica, generation)
    if prefix is None:
        return None
    m = _BODY.fullmatch(body)
    if m is None or not body.startswith(prefix):
        return None
    return _read(m.groups(), m.end(2) - m.end(9))


# What ``fast_sealed`` reads from a sealed record: (version, service, where its body starts
# and ends in the sealed bytes, the batch it names (0: none), its own signature and key id
# if it has them). A plain tuple: one is made per record of a catch-up.
Sealing = tuple[int, ExportedService, int, int, int, bytes | None, bytes | None]


def fast_sealed(data: bytes, cluster_id: str, replica: str, generation: int) -> Sealing | None:
    """As ``fast_service`` for the record sealed in ``data`` (a ``Sealed``). Such a record's
    bytes are the only encoding of what they say: ``encode_sealed`` makes them again."""
    prefix = _prefix_or_none(cluster_id, replica, generation)
    return None if prefix is None else read_sealed(data, prefix)


def read_sealed(data: bytes, prefix: bytes) -> Sealing | None:
    """``fast_sealed`` for the origin whose records open with ``prefix`` (``record_prefix``
    of its cluster, replica and generation: a chunk's records share it, made once).

    Why the prefix is the whole origin check: the expression has read the record's first
    fields as a label (with its length byte), an optional label, and a canonical varint,
    each ended by a byte that cannot continue it (no label character is a field tag, and
    a varint ends at its first byte below 0x80). So a body that opens with the prefix's
    bytes holds exactly the prefix's cluster, replica and generation, and one that does
    not holds another origin (or a non-canonical encoding of it, which is not read here)."""
    m = _SEALED.fullmatch(data)
    if m is None:
        return None
    groups = m.groups()
    start, end = m.span(2)
    length = groups[0]  # (below 128, nearly every length and number is its one byte)
    if (length[0] if len(length) == 1 else _varint(length)) != end - start:
        return None
    if not data.startswith(prefix, start):
        return None  # another origin's record, or this origin's of another generation
    read = _read(groups, end - m.end(9))
    if read is None:
        return None
    signature, key_id, batch = groups[19:22]
    first = 0 if batch is None else batch[0] if len(batch) == 1 else _varint(batch)
    return read[0], read[1], start, end, first, signature, key_id


def _prefix_or_none(cluster_id: str, replica: str, generation: int) -> bytes | None:
    """``record_prefix``, None for an origin whose records the expression never reads (a
    name too long for a one-byte length, text that is not UTF-8, a generation below 1)."""
    if generation < 1:
        return None
    try:
        return record_prefix(cluster_id, replica, generation)
    except (ValueError, UnicodeError):
        return None


def _read(groups: tuple[Any, ...], rest: int) -> tuple[int, ExportedService] | None:
    """The record whose match groups are ``groups``, checked (see ``fast_service``; its
    origin is checked by the caller); ``rest``: the bytes after the service's length."""
    # (Lengths and numbers below 128, nearly all of them, are their one byte.)
    (
        version_b,
        size,
        namespace_n,
        namespace,
        name_n,
        name,
        kind,
        ports,
        found,
        exported,
        endpoint_ports,
        ip,
    ) = groups[7:19]
    if (size[0] if len(size) == 1 else _varint(size)) != rest:
        return None  # the service does not end where the record does
    if namespace_n[0] != len(namespace) or name_n[0] != len(name):
        return None
    if ports:
        held_ports = _PORT_LISTS.get(ports) or _ports(ports, 4)
        if held_ports is None:
            return None
    else:
        held_ports = ()
    if endpoint_ports:
        held_endpoint_ports = _PORT_LISTS.get(endpoint_ports) or _ports(endpoint_ports, 10)
        if held_endpoint_ports is None:
            return None
    else:
        held_endpoint_ports = ()
    exported_at = 0.0
    if exported is not None:  # present: positive (protobuf leaves 0.0 out)
        exported_at = _DOUBLE.unpack(exported)[0]
        if not (math.isfinite(exported_at) and exported_at > 0):
            return None
    endpoints: Endpoints = ()
    if found:  # canonical dotted quads (``_QUAD``), packed without making their text
        octets = found.translate(_NOT_DIGITS_TO_SPACES).split()
        endpoints = PackedEndpoints(bytes(map(_OCTET_VALUE, octets)))
    held_namespace = _NAMESPACES.get(namespace)
    if held_namespace is None:
        held_namespace = _namespace(namespace)
    version = version_b[0] if len(version_b) == 1 else _varint(version_b)
    service = new_service(
        new_key(held_namespace, name.decode()),
        _TYPES[kind[0]],
        held_ports,
        endpoints,
        exported_at,
        (),
        held_endpoint_ports,
        () if ip is None else (ip.decode(),),
        "",
        0,
    )
    return version, service


# Namespaces by their bytes, as ``shared`` holds their text: a catch-up meets a few dozen
# namespaces in tens of thousands of records (bounded as ``shared``).
_NAMESPACES: dict[bytes, str] = {}


def _namespace(data: bytes) -> str:
    if len(_NAMESPACES) >= MAX_SHARED:
        _NAMESPACES.clear()
    held = _NAMESPACES[data] = shared(data.decode())
    return held


def _ports(data: bytes, number: int) -> tuple[ServicePort, ...] | None:
    """The list of ports (field ``number`` of a Service) these bytes hold, None if they do
    not hold one that the general path takes (see the module docstring)."""
    if not data:
        return ()
    if len(data) > MAX_PORT_LIST_BYTES:
        return None
    held = _PORT_LISTS.get(data)
    if held is not None:
        return held
    try:
        msg = pb.Service.FromString(data)
    except Exception:  # protobuf's DecodeError (and anything it may raise on bad bytes)
        return None
    fields = msg.ListFields()
    if len(fields) != 1 or fields[0][0].number != number:
        return None
    try:
        ports = port_list(fields[0][1])
    except CodecError:
        return None
    # Exactly the bytes ``encode_sealed`` makes of these ports, or not ours to read: protobuf
    # re-serializes what it kept, unknown fields of a port included, which the model drops.
    if port_bytes(number, ports) != data:
        return None
    if len(_PORT_LISTS) >= MAX_SHARED:
        _PORT_LISTS.clear()
    _PORT_LISTS[data] = ports
    return ports
