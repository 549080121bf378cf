"""Records as a holder keeps them, able to open their own seal for their set-hash term.

``mesh.ring.record_log`` holds a record's set-hash term (SHA-256 of its body) nowhere: only
a record that is replaced or purged needs it again, and then opens its sealed bytes for it
(``weight``). Opening takes protobuf, which the ring's cores do not import, so the records
that can do it are these subclasses, made by ``mesh.wire.record_codec``: a live service
record, most of what a copy holds, in the compact form (``ServiceRecord``), and any other
record (the cluster's own, a tombstone) as a ``Record``.

Pure: bytes in, numbers out.
"""

from __future__ import annotations

from mesh.model import ExportedService
from mesh.ring.records import ClusterInfo, Held, Record, ServiceRecord, Slot
from mesh.wire.record_batch import digest_of
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
    """A live service record (held compactly) that opens its own seal, as ``SealedRecord``."""

    __slots__ = ()

    @property
    def weight(self) -> int:
        return weight_of(pb.Sealed.FromString(self.sealed).body)


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
