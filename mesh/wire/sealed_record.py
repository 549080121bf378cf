"""Records as a holder keeps them, able to open their own seal for their set-hash term.

``mesh.ring.record_log`` holds a record's set-hash term (SHA-256 of its body) nowhere: only
a record that is replaced or purged needs it again, and then opens its sealed bytes for it
(``weight``). Opening takes protobuf, which the ring's cores do not import, so the records
that can do it are these subclasses, made by ``mesh.wire.record_codec``: a live service
record, most of what a copy holds, in a compact form (``ServiceRecord``: of the common
shape, without its sealed bytes, which are made again when needed; else with them), and
any other record (the cluster's own, a tombstone) as a ``Record``.

Pure: bytes in, numbers out.
"""

from __future__ import annotations

from mesh.model import ExportedService
from mesh.ring.record_log import ClusterInfo, Held, Record, ServiceRecord, Slot
from mesh.ring.record_log import set_service as _set_service
from mesh.ring.record_log import set_version as _set_version
from mesh.wire.record_batch import digest_of
from mesh.wire.record_remake import encode_body, encode_sealed
from mesh.wire.v1 import gossip_pb2 as pb


def weight_of(body: bytes) -> int:
    return int.from_bytes(digest_of(body), "big")


class SealedRecord(Record):
    """A record that opens its own seal for its set-hash term (``Record.weight``), so the
    term need not be held (see ``mesh.ring.record_log``)."""

    __slots__ = ()

    @property
    def weight(self) -> int:
        return weight_of(pb.Sealed.FromString(self.sealed).body)


class SealedServiceRecord(ServiceRecord):
    """A live service record holding the bytes it arrived in (any shape)."""

    __slots__ = ("_batch", "_sealed")
    _batch: bytes
    _sealed: bytes

    def __init__(self, version: int, service: ExportedService, sealed: bytes, batch: bytes) -> None:
        _set_version(self, version)
        _set_service(self, service)
        _set_sealed(self, sealed)
        _set_batch(self, batch)

    @property
    def sealed(self) -> bytes:
        return self._sealed

    @property
    def batch(self) -> bytes:
        return self._batch

    @property
    def weight(self) -> int:
        return weight_of(pb.Sealed.FromString(self._sealed).body)


_set_sealed, _set_batch = (
    SealedServiceRecord.__dict__[name].__set__ for name in ("_sealed", "_batch")
)

# What records of one origin (and key) share: the bytes their bodies open with and the
# key id that follows their own signatures; and of one batch: its bytes and first version.
Origin = tuple[bytes, bytes | None]
Batch = tuple[bytes, int]


class CanonicalServiceRecord(ServiceRecord):
    """A live service record of the common shape (``mesh.wire.record_fast``), whose sealed
    bytes are the one encoding of what it holds: so they are not held but made again when
    it is sent on (``encode_sealed``), from its service, version, own signature (kept:
    agents of earlier releases check it) and what it shares with its origin's and its
    batch's other records. About 130 octets less than the bytes a record arrives in."""

    __slots__ = ("_batch", "_origin", "_signature")
    _batch: Batch
    _origin: Origin
    _signature: bytes | None

    def __init__(
        self,
        version: int,
        service: ExportedService,
        origin: Origin,
        signature: bytes | None,
        batch: Batch,
    ) -> None:
        _set_version(self, version)
        _set_service(self, service)
        _set_origin(self, origin)
        _set_signature(self, signature)
        _set_canonical_batch(self, batch)

    @property
    def sealed(self) -> bytes:
        (prefix, key_id), (_, first) = self._origin, self._batch
        signature = self._signature
        return encode_sealed(prefix, self.version, self.service, signature, key_id, first)

    @property
    def batch(self) -> bytes:
        return self._batch[0]

    @property
    def weight(self) -> int:
        return weight_of(encode_body(self._origin[0], self.version, self.service))


_set_origin, _set_signature, _set_canonical_batch = (
    CanonicalServiceRecord.__dict__[name].__set__ for name in ("_origin", "_signature", "_batch")
)


def held_record(
    version: int,
    slot: Slot,
    service: ExportedService | None,
    info: ClusterInfo | None,
    sealed: bytes,
    batch: bytes,
    since: float = 0.0,
) -> Held:
    """The record as a copy holds it: compact for a live service record."""
    if service is not None:
        return SealedServiceRecord(version, service, sealed, batch)
    return SealedRecord(version, slot, service, info, sealed, since=since, batch=batch)
