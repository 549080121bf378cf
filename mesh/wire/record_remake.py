"""The common service record's sealed bytes, made again from what was read of them.

``mesh.wire.record_fast`` reads a record only when its bytes are the one encoding of what
they say (protobuf's deterministic serialization of the record, fields in number order,
lengths and numbers as protobuf writes them, each port list as this module writes it). So
a holder keeps the decoded record and not its bytes, and makes them here again, byte for
byte, when it relays the record or needs its set-hash term
(``mesh.wire.sealed_record.CanonicalServiceRecord``); ``tests/unit/test_record_fast.py``
and ``test_record_fast_attack.py`` check that every record read is made again exactly.

Pure: model values in, bytes out.
"""

from __future__ import annotations

import struct

from mesh.model import ExportedService, PackedEndpoints, ServicePort, ServiceType
from mesh.wire.service_decode import MAX_SHARED
from mesh.wire.v1 import gossip_pb2 as pb

_DOUBLE = struct.Struct("<d")
_TYPE_NUMBERS = {ServiceType.CLUSTER_SET_IP: b"\x01", ServiceType.HEADLESS: b"\x02"}
_PORT_BYTES: dict[tuple[int, tuple[ServicePort, ...]], bytes] = {}


def encode_varint(value: int) -> bytes:
    """A non-negative integer as protobuf writes it (7 bits a byte, low first)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def record_prefix(cluster_id: str, replica: str, generation: int) -> bytes:
    """The bytes every record of an origin's generation opens with (fields 1-3)."""
    cluster, held = cluster_id.encode(), replica.encode()
    named = b"\x12" + bytes([len(held)]) + held if held else b""
    return b"\n" + bytes([len(cluster)]) + cluster + named + b"\x18" + encode_varint(generation)


def encode_body(prefix: bytes, version: int, service: ExportedService) -> bytes:
    """The record's bytes, for a record that ``fast_sealed`` read (of its shape)."""
    namespace, name = service.key.namespace.encode(), service.key.name.encode()
    parts = [
        b"\n",
        bytes([len(namespace)]),
        namespace,
        b"\x12",
        bytes([len(name)]),
        name,
        b"\x18",
        _TYPE_NUMBERS[service.type],
        port_bytes(4, service.ports),
    ]
    found = service.endpoints
    texts = (
        found.addresses() if isinstance(found, PackedEndpoints) else [e.addresses[0] for e in found]
    )
    for text in texts:
        address = text.encode()  # (str: one address, as ``fast_sealed`` read it)
        parts.append(b"*" + bytes([len(address) + 4, 10, len(address)]) + address + b"\x10\x01")
    if service.exported_at:
        parts += [b"1", _DOUBLE.pack(service.exported_at)]
    parts.append(port_bytes(10, service.endpoint_ports))
    if service.cluster_ips:
        address = service.cluster_ips[0].encode()
        parts += [b"Z", bytes([len(address)]), address]
    held = b"".join(parts)
    return b"".join([prefix, b" ", encode_varint(version), b"*", encode_varint(len(held)), held])


def encode_sealed(
    prefix: bytes,
    version: int,
    service: ExportedService,
    signature: bytes | None,
    key_id: bytes | None,
    first: int,
) -> bytes:
    """The sealed record ``fast_sealed`` read, byte for byte, from what it read."""
    body = encode_body(prefix, version, service)
    parts = [b"\n", encode_varint(len(body)), body]
    if signature is not None and key_id is not None:
        parts += [b"\x12@", signature, b"\x1a ", key_id]
    if first:
        parts += [b"\xa0\x01", encode_varint(first)]
    return b"".join(parts)


def port_bytes(number: int, ports: tuple[ServicePort, ...]) -> bytes:
    if not ports:
        return b""
    held = _PORT_BYTES.get((number, ports))
    if held is None:
        items = [pb.Port(name=p.name, protocol=p.protocol, port=p.port) for p in ports]
        msg = pb.Service(ports=items) if number == 4 else pb.Service(endpoint_ports=items)
        held = msg.SerializeToString(deterministic=True)
        if len(_PORT_BYTES) >= MAX_SHARED:
            _PORT_BYTES.clear()
        _PORT_BYTES[(number, ports)] = held
    return held
