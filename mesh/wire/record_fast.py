"""A fast path for decoding the common service record, with protobuf as the reference.

Why. A newcomer's catch-up decodes every service record of the clusterset, and through
protobuf's Python objects that costs about 10 us a record (each field read makes or looks
up a wrapper object): most of the time of taking the records. Nearly every record has one
shape: a service whose endpoints are ready, with one IPv4 address each and no hostname or
zone, encoded the way every agent encodes it (protobuf's deterministic serialization:
fields in number order, each once). ``fast_service`` reads exactly that shape from the
record's bytes with one regular expression match (C code) and a few Python operations.

The rule that makes this safe: the expression accepts only bytes whose protobuf meaning is
unambiguous, and gives exactly that meaning, with every check the general path
(``mesh.wire.service_decode``) applies; anything else (another shape, an IPv6 address, an
unknown field, a field out of order, a length that does not add up, a rule broken) is
``None``, and the caller decodes the record through protobuf as before, which also reports
what is wrong. So for every input the fast path's answer is the general path's answer or
no answer (``tests/unit/test_record_fast.py`` checks this on seeded random records and on
mutations of them). How each piece is pinned down:

- a length-prefixed label or address (cluster, replica, namespace, name, port name,
  endpoint address, cluster IP) is matched by one alternative per possible length byte
  ``n``, whose lookahead says that exactly ``n`` characters of its class follow (the next
  byte, a field tag or the end, is not of the class); the label or dotted-quad rule must
  then consume all ``n`` of them for the match to continue;
- an endpoint's own length byte is likewise tied to its address's (``n + 4``);
- a varint is 1-9 bytes (below 2^63, where protobuf and this decoder agree);
- a list of ports (``ports``, ``endpoint_ports``) is matched by its structure, and its
  bytes must then be a list already decoded by protobuf (the table ``_PORT_LISTS``, filled
  on first sight by parsing those bytes alone and checking that they re-encode to the same
  bytes: so every length in them is right) whose ports passed the codec's checks;
- the service's own length must reach exactly the end of the record (it is the last field).

Pure: bytes in, model values (or None) out.
"""

from __future__ import annotations

import math
import re
import struct

from mesh.model import (
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
    new_service,
    plain_endpoint,
)
from mesh.wire.service_decode import MAX_SHARED, CodecError, port_list, shared
from mesh.wire.v1 import gossip_pb2 as pb

_LABEL = rb"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123 (as model.is_dns_label)
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_QUAD = rb"(?:" + _OCTET + rb"\.){3}" + _OCTET  # canonical, as mesh.address takes it
_VARINT = rb"[\x80-\xff]{0,8}[\x00-\x7f]"


def _sized(chars: bytes, rule: bytes, sizes: range, name: str = "", own: bool = False) -> bytes:
    """A length byte n in ``sizes`` then exactly n ``chars`` that match ``rule`` whole,
    captured as group ``name`` if given. ``own``: an endpoint's own length byte (n + 4)
    and its address field's tag come first."""
    options = []
    for n in sizes:
        prefix = re.escape(bytes([n + 4])) + b"\n" if own else b""
        ahead = chars + b"{%d}(?!" % n + chars + b")"
        options.append(prefix + re.escape(bytes([n])) + b"(?=" + ahead + b")")
    held = b"(?P<" + name.encode() + b">" if name else b"(?:"
    return b"(?:" + b"|".join(options) + b")" + held + rule + b")"


_LABEL_CHARS = b"[-a-z0-9]"
_ADDRESS_CHARS = b"[0-9.]"
_ENDPOINT = b"\\*" + _sized(_ADDRESS_CHARS, _QUAD, range(7, 16), own=True) + b"\x10\x01"
_PORT = (  # a port's structure; its lengths are checked through protobuf (``_ports``)
    b"[\x00-\x7f](?:\n[\x01-\x3f]" + _LABEL_CHARS + b"+)?"
    b"(?:\x12(?:\x03TCP|\x03UDP|\x04SCTP))?(?:\x18" + _VARINT + b")?"
)
_RECORD = b"".join(
    [
        b"\n" + _sized(_LABEL_CHARS, _LABEL, range(1, 64), "cluster"),  # cluster_id = 1
        b"(?:\x12" + _sized(_LABEL_CHARS, _LABEL, range(1, 64), "replica") + b")?",  # = 2
        b"\x18(?P<generation>" + _VARINT + b")",  # generation = 3
        b" (?P<version>" + _VARINT + b")",  # version = 4
        b"\\*(?P<size>" + _VARINT + b")",  # service = 5: its length, then it to the end
        b"\n" + _sized(_LABEL_CHARS, _LABEL, range(1, 64), "namespace"),  # namespace = 1
        b"\x12" + _sized(_LABEL_CHARS, _LABEL, range(1, 64), "name"),  # name = 2
        b"\x18(?P<type>[\x01\x02])",  # type = 3 (CLUSTER_SET_IP, HEADLESS)
        b"(?P<ports>(?:\x22" + _PORT + b")*)",  # ports = 4
        b"(?P<endpoints>(?:" + _ENDPOINT + b")*)",  # endpoints = 5 (ready, one IPv4 each)
        b"(?:1(?P<exported_at>.{8}))?",  # exported_at = 6 (a double)
        b"(?P<endpoint_ports>(?:R" + _PORT + b")*)",  # endpoint_ports = 10
        b"(?:Z" + _sized(_ADDRESS_CHARS, _QUAD, range(7, 16), "cluster_ip") + b")?",  # = 11
    ]
)
_BODY = re.compile(_RECORD, re.DOTALL)
# A sealed record (``Sealed``): the record's bytes, then its own signature and key id (of
# the lengths and, for the key id, the characters ``mesh.security.signing`` makes: valid
# text, as protobuf requires of a string) if it has one, then the batch naming it.
_SEALED = re.compile(
    b"\n(?P<length>" + _VARINT + b")(?P<body>" + _RECORD + b")"
    b"(?:\x12@.{64}\x1a [0-9a-f]{32})?(?:\xa0\x01(?P<batch>" + _VARINT + b"))?",
    re.DOTALL,
)
_ADDRESSES = re.compile(r"[0-9.]+")
_DOUBLE = struct.Struct("<d")
_TYPES = {1: ServiceType.CLUSTER_SET_IP, 2: ServiceType.HEADLESS}

# Lists of ports seen, by their bytes (each list checked once; bounded like ``shared``).
_PORT_LISTS: dict[bytes, tuple[ServicePort, ...]] = {}


def _varint(data: bytes) -> int:
    if len(data) == 1:
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
    m = _BODY.fullmatch(body)
    return None if m is None else _read(m, len(body), cluster_id, replica, generation)


def fast_sealed(
    data: bytes, cluster_id: str, replica: str, generation: int
) -> tuple[int, ExportedService, int, int, int] | None:
    """As ``fast_service`` for the record sealed in ``data`` (a ``Sealed``): (version,
    service, where its body starts and ends in ``data``, the batch it names or 0)."""
    m = _SEALED.fullmatch(data)
    if m is None:
        return None
    start, end = m.span("body")
    if _varint(m.group("length")) != end - start:
        return None
    read = _read(m, end, cluster_id, replica, generation)
    if read is None:
        return None
    batch = m.group("batch")
    return read[0], read[1], start, end, 0 if batch is None else _varint(batch)


def _read(
    m: re.Match[bytes], end: int, cluster_id: str, replica: str, generation: int
) -> tuple[int, ExportedService] | None:
    """The record matched by ``m`` (its body ending at ``end``), checked (see ``fast_service``)."""
    got = m.groupdict()
    if _varint(got["size"]) != end - m.end("size"):
        return None  # the service does not end where the record does
    held_replica = got["replica"]
    if got["cluster"].decode() != cluster_id or (held_replica or b"").decode() != replica:
        return None
    if _varint(got["generation"]) != generation:
        return None
    ports = _ports(got["ports"], 4)
    endpoint_ports = _ports(got["endpoint_ports"], 10)
    if ports is None or endpoint_ports is None:
        return None
    exported_at = 0.0
    if got["exported_at"] is not None:
        exported_at = _DOUBLE.unpack(got["exported_at"])[0]
        if not (math.isfinite(exported_at) and exported_at >= 0):
            return None
    found = got["endpoints"]
    endpoints: tuple[Endpoint, ...] = ()
    if found:
        endpoints = tuple(map(plain_endpoint, _ADDRESSES.findall(found.decode())))
    cluster_ip = got["cluster_ip"]
    service = new_service(
        ServiceKey(shared(got["namespace"].decode()), got["name"].decode()),
        _TYPES[got["type"][0]],
        ports,
        endpoints,
        exported_at or 0.0,
        (),
        endpoint_ports,
        () if cluster_ip is None else (cluster_ip.decode(),),
        "",
        0,
    )
    return _varint(got["version"]), service


def _ports(data: bytes, number: int) -> tuple[ServicePort, ...] | None:
    """The list of ports (field ``number`` of a Service) these bytes hold, None if they do
    not hold one that the general path takes (see the module docstring)."""
    if not data:
        return ()
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
    if msg.SerializeToString(deterministic=True) != data:
        return None  # not its canonical encoding: leave it to the general path
    try:
        ports = port_list(fields[0][1])
    except CodecError:
        return None
    if len(_PORT_LISTS) >= MAX_SHARED:
        _PORT_LISTS.clear()
    _PORT_LISTS[data] = ports
    return ports
