"""Records on the wire: this origin's records made and sealed, peers' chunks opened.

``Publisher`` turns each local change into records of the local ``OriginLog``: one per
changed service (a tombstone for a removed one) and one for the cluster when its locality,
namespaces, drain or addresses changed, each with the next version, serialized once,
sealed once (signed with the cluster's key when the ring is secure) and kept as those
bytes, which is what every relay forwards. After each change it seals a new ``Head``
(count and set hash).

``ChunkOpener`` checks everything a peer's ``OriginChunk`` carries before the store sees
it: names, generation, strictly ascending versions above ``from_version``, every record's
and the head's origin signature (with TLS: against the clusterset CA, the key bound to the
chunk's cluster; a record of cluster X is only accepted signed by X's key), the record
bodies by the codec's rules, and that every record belongs to the chunk's origin and
generation. Any failure rejects the whole chunk with a ``ChunkError`` whose ``reason`` is a
counter label; the stream simply continues from the receiver's progress next exchange.

Pure: bytes and keys in, decoded records out; ``now`` (wall-clock, for certificate
validity) is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from mesh.model import ClusterState, ServiceKey
from mesh.ring.catalog import Change
from mesh.ring.records import (
    MAX_RECORDS_PER_MESSAGE,
    Chunk,
    Head,
    OriginLog,
    OutChunk,
    Record,
    Slot,
)
from mesh.security.signing import (
    HEAD_DOMAIN,
    RECORD_DOMAIN,
    SignedStateError,
    Signer,
    Trust,
    verify_sealed,
)
from mesh.wire.codec import (
    CodecError,
    info_from_pb,
    info_of,
    info_to_pb,
    label,
    replica_of,
    service_from_pb,
    service_to_pb,
)
from mesh.wire.v1 import gossip_pb2 as pb


class ChunkError(ValueError):
    """A chunk that must be dropped whole; ``reason`` is a counter label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def weight_of(body: bytes) -> int:
    return int.from_bytes(hashlib.sha256(body).digest(), "big")


class SealedRecord(Record):
    """A record that opens its own seal for its set-hash term (``Record.weight``), so the
    term need not be held (see ``mesh.ring.record_log``)."""

    __slots__ = ()

    @property
    def weight(self) -> int:
        return weight_of(pb.Sealed.FromString(self.sealed).body)


def _seal(signer: Signer | None, domain: bytes, body: bytes) -> bytes:
    if signer is None:
        return bytes(pb.Sealed(body=body).SerializeToString())
    seal = signer.seal(domain, body)
    sealed = pb.Sealed(body=seal.body, signature=seal.signature, key_id=seal.key_id)
    return bytes(sealed.SerializeToString())


class Publisher:
    """Makes the local origin's records from its changes (see the module docstring)."""

    def __init__(self, log: OriginLog, signer: Signer | None) -> None:
        self.log = log
        self.signer = signer
        if signer is not None:
            log.certificate = signer.key.certificate_der

    def publish(self, state: ClusterState, change: Change, now: float) -> None:
        """Records for what ``change`` changed in ``state`` (this origin's new state)."""
        slots: list[Slot] = [*sorted(change.services)]
        if change.cluster or change.announced or None not in self.log.records:
            slots.insert(0, None)
        self._write(state, slots, now)

    def republish(self, state: ClusterState, generation: int, signer: Signer | None) -> None:
        """Start ``generation`` afresh (new signing key): every record sealed anew."""
        self.log.restart(generation)
        self.signer = signer
        if signer is not None:
            self.log.certificate = signer.key.certificate_der
        self._write(state, [None, *sorted(state.services)], 0.0)

    def _write(self, state: ClusterState, slots: Iterable[Slot], now: float) -> None:
        log = self.log
        for slot in slots:
            version = log.progress + 1
            msg = pb.Record(
                cluster_id=log.cluster_id,
                replica=log.replica,
                generation=log.generation,
                version=version,
            )
            service = None if slot is None else state.services.get(slot)
            info = None
            if slot is None:
                info = info_of(state)
                msg.info.CopyFrom(info_to_pb(info))
            elif service is not None:
                msg.service.CopyFrom(service_to_pb(service))
            else:
                msg.deleted.CopyFrom(pb.ServiceRef(namespace=slot.namespace, name=slot.name))
            body = msg.SerializeToString(deterministic=True)
            sealed = _seal(self.signer, RECORD_DOMAIN, body)
            record = SealedRecord(version, slot, service, info, sealed, since=now)
            log.put(record)
            log.progress = version
        head = pb.Head(
            cluster_id=log.cluster_id,
            replica=log.replica,
            generation=log.generation,
            version=log.progress,
            live=log.live,
            set_hash=log.set_hash.to_bytes(32, "big"),
        )
        sealed_head = _seal(self.signer, HEAD_DOMAIN, head.SerializeToString(deterministic=True))
        log.head = Head(log.progress, log.live, log.set_hash, sealed_head)


def chunk_to_pb(chunk: OutChunk, clusterset: str) -> pb.OriginChunk:
    return pb.OriginChunk(
        cluster_id=chunk.cluster_id,
        replica=chunk.replica,
        generation=chunk.generation,
        from_version=chunk.from_version,
        reset=chunk.reset,
        records=chunk.records,
        head=chunk.head,
        certificate=chunk.certificate,
        clusterset=clusterset,
        target=chunk.target,
    )


class ChunkOpener:
    """Opens peers' chunks; ``trust`` None: the ring is insecure and nothing is verified."""

    def __init__(self, trust: Trust | None) -> None:
        self.trust = trust

    def open(
        self,
        msg: pb.OriginChunk,
        now_wall: float,
        skip_through: Callable[[Chunk], int] | None = None,
        *,
        direct: bool = False,
    ) -> Chunk:
        """The chunk, checked. ``skip_through`` (given the chunk without its records) says
        up to which version the receiver already holds this copy: records at or below it
        would be ignored, so they are left out without checking their signatures.
        ``direct``: the message came from the chunk's origin itself (the caller knows)."""
        try:
            cluster_id = label(msg.cluster_id, "cluster id")
            replica = replica_of(msg.replica)
        except CodecError as exc:
            raise ChunkError("malformed", str(exc)) from None
        if msg.generation == 0:
            raise ChunkError("malformed", f"cluster {cluster_id}: generation 0")
        if len(msg.records) > MAX_RECORDS_PER_MESSAGE:
            raise ChunkError("too_large", f"cluster {cluster_id}: {len(msg.records)} records")
        if self.trust is not None and msg.clusterset != self.trust.clusterset:
            raise ChunkError("clusterset_mismatch", f"clusterset {msg.clusterset!r}")
        shape = Chunk(
            cluster_id,
            replica,
            msg.generation,
            msg.from_version,
            msg.reset,
            (),
            None,
            msg.certificate if self.trust is not None else b"",
            msg.target,
            direct,
        )
        skip = 0 if skip_through is None else skip_through(shape)
        records = []
        last = msg.from_version
        for data in msg.records:
            sealed = self._sealed(data, cluster_id)
            version = _version_of(sealed.body, cluster_id)
            if version <= last:
                raise ChunkError("malformed", f"cluster {cluster_id}: versions not ascending")
            last = version
            if version <= skip:
                continue
            self._verify(sealed, RECORD_DOMAIN, cluster_id, msg.certificate, now_wall)
            records.append(self._record(sealed.body, msg, cluster_id, replica, data))
        head = None
        if msg.head:
            sealed = self._sealed(msg.head, cluster_id)
            self._verify(sealed, HEAD_DOMAIN, cluster_id, msg.certificate, now_wall)
            head = self._head(sealed.body, msg, cluster_id, replica, last)
        return replace(shape, records=tuple(records), head=head)

    def _sealed(self, data: bytes, cluster_id: str) -> pb.Sealed:
        return _parse(pb.Sealed(), data, f"cluster {cluster_id}: undecodable seal")

    def _verify(
        self, sealed: pb.Sealed, domain: bytes, cluster_id: str, certificate: bytes, now: float
    ) -> None:
        if self.trust is None:
            return
        if not sealed.signature:
            raise ChunkError("unsigned", f"cluster {cluster_id}: unsigned record")
        try:
            verify_sealed(domain, cluster_id, sealed, certificate, self.trust, now)
        except SignedStateError as exc:
            raise ChunkError(exc.reason, str(exc)) from None

    def _record(
        self, body: bytes, chunk: pb.OriginChunk, cluster_id: str, replica: str, sealed: bytes
    ) -> Record:
        msg = _parse(pb.Record(), body, f"cluster {cluster_id}: undecodable record")
        _same_origin(msg, chunk, cluster_id, replica)
        kind = msg.WhichOneof("body")
        try:
            if kind == "service":
                service = service_from_pb(msg.service, cluster_id)
                return SealedRecord(msg.version, service.key, service, None, sealed)
            if kind == "info":
                return SealedRecord(msg.version, None, None, info_from_pb(msg.info), sealed)
            if kind == "deleted":
                key = ServiceKey(
                    label(msg.deleted.namespace, "namespace"), label(msg.deleted.name, "name")
                )
                return SealedRecord(msg.version, key, None, None, sealed)
        except CodecError as exc:
            raise ChunkError("invalid_record", str(exc)) from None
        raise ChunkError("invalid_record", f"cluster {cluster_id}: record without a body")

    def _head(
        self, body: bytes, chunk: pb.OriginChunk, cluster_id: str, replica: str, last: int
    ) -> Head:
        msg = _parse(pb.Head(), body, f"cluster {cluster_id}: undecodable head")
        _same_origin(msg, chunk, cluster_id, replica)
        if msg.version < last or len(msg.set_hash) != 32:
            raise ChunkError("malformed", f"cluster {cluster_id}: head below its records")
        return Head(msg.version, msg.live, int.from_bytes(msg.set_hash, "big"), chunk.head)


_M = TypeVar("_M", pb.Sealed, pb.Record, pb.Head)


def _parse(message: _M, data: bytes, what: str) -> _M:
    """``message`` filled from ``data``; a ``ChunkError`` saying ``what`` if it cannot be."""
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise ChunkError("malformed", what) from None
    return message


def _version_of(body: bytes, cluster_id: str) -> int:
    record = _parse(pb.Record(), body, f"cluster {cluster_id}: undecodable record")
    return int(record.version)


def _same_origin(
    msg: pb.Record | pb.Head, chunk: pb.OriginChunk, cluster_id: str, replica: str
) -> None:
    if (msg.cluster_id, msg.replica, msg.generation) != (cluster_id, replica, chunk.generation):
        raise ChunkError(
            "cluster_mismatch",
            f"chunk of {cluster_id}/{replica} gen {chunk.generation} carries "
            f"{msg.cluster_id!r}/{msg.replica!r} gen {msg.generation}",
        )
