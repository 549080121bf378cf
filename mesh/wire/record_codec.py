"""Records on the wire: this origin's records made and sealed, peers' chunks opened.

``Publisher`` turns each local change into records of the local ``OriginLog``: one per
changed service (a tombstone for a removed one) and one for the cluster when its locality,
namespaces, drain or addresses changed, each with the next version, serialized once,
sealed once (signed with the cluster's key when the ring is secure) and kept as those
bytes, which is what every relay forwards. With a key, each run of up to
``BATCH_RECORDS`` records written together is also covered by one signed batch of their
digests (``mesh.wire.record_batch``); ``per_record`` (``--record-signatures both``, the
default of this release) signs each record on its own as well, for agents of earlier
releases, which ignore batches. After each change it seals a new ``Head`` (count and set
hash).

``ChunkOpener`` checks everything a peer's ``OriginChunk`` carries before the store sees
it: names, generation, strictly ascending versions above ``from_version``, every record's
and the head's origin signature (with TLS: against the clusterset CA, the key bound to the
chunk's cluster; a record of cluster X is only accepted signed by X's key, on its own or
through a batch of X's that holds its digest), the record
bodies by the codec's rules, and that every record belongs to the chunk's origin and
generation. Any failure rejects the whole chunk with a ``ChunkError`` whose ``reason`` is a
counter label; the stream simply continues from the receiver's progress next exchange.
Each record's body is hashed once: the digest a batch covers is its set-hash term too,
handed to the store with the record (``Chunk.weights``).

Pure: bytes and keys in, decoded records out; ``now`` (wall-clock, for certificate
validity) is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from mesh.model import ClusterState, ExportedService, ServiceKey
from mesh.ring.catalog import Change
from mesh.ring.records import (
    MAX_RECORDS_PER_MESSAGE,
    Chunk,
    ClusterInfo,
    Head,
    Held,
    OriginLog,
    OutChunk,
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
from mesh.wire.record_batch import (
    BATCH_RECORDS,
    BatchBook,
    ChunkError,
    digest_of,
    seal_batch,
)
from mesh.wire.record_batch import parse as _parse
from mesh.wire.record_fast import fast_service
from mesh.wire.sealed_record import SealedRecord, SealedServiceRecord, held_record
from mesh.wire.v1 import gossip_pb2 as pb

__all__ = [
    "ChunkError",
    "ChunkOpener",
    "Publisher",
    "SealedRecord",
    "SealedServiceRecord",
    "chunk_to_pb",
]


# A record's fields by descriptor, as ``ListFields`` gives them: the name of each.
_RECORD_NAMES: dict[Any, str] = dict(
    (fd, name) for name, fd in pb.Record.DESCRIPTOR.fields_by_name.items()
)


def _seal(signer: Signer | None, domain: bytes, body: bytes, batch: int = 0) -> bytes:
    """``body`` sealed: signed unless ``signer`` is None, and naming ``batch`` if not 0."""
    if signer is None:
        return bytes(pb.Sealed(body=body, batch=batch).SerializeToString())
    seal = signer.seal(domain, body)
    sealed = pb.Sealed(body=seal.body, signature=seal.signature, key_id=seal.key_id, batch=batch)
    return bytes(sealed.SerializeToString())


# A record as the publisher makes it, before it is sealed: version, slot, body.
_Made = tuple[int, Slot, ExportedService | None, ClusterInfo | None, bytes]


class Publisher:
    """Makes the local origin's records from its changes (see the module docstring)."""

    def __init__(self, log: OriginLog, signer: Signer | None, *, per_record: bool = True) -> None:
        self.log = log
        self.signer = signer
        self.per_record = per_record  # also sign each record (for agents before batches)
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
        made = [self._made(state, slot, log.progress + 1 + i) for i, slot in enumerate(slots)]
        for start in range(0, len(made), BATCH_RECORDS):
            self._put(made[start : start + BATCH_RECORDS], now)
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

    def _made(self, state: ClusterState, slot: Slot, version: int) -> _Made:
        log = self.log
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
        return version, slot, service, info, msg.SerializeToString(deterministic=True)

    def _put(self, made: list[_Made], now: float) -> None:
        """Seal consecutive records (one batch with a key) and hold them."""
        log, signer = self.log, self.signer
        digests = [digest_of(m[4]) for m in made]
        batch, first = b"", 0
        if signer is not None:
            first = made[0][0]
            origin = (log.cluster_id, log.replica, log.generation)
            batch = seal_batch(signer, origin, first, digests)
        own = signer if self.per_record else None
        for (version, slot, service, info, body), digest in zip(made, digests, strict=True):
            sealed = _seal(own, RECORD_DOMAIN, body, first)
            record = held_record(version, slot, service, info, sealed, batch, now)
            log.put(record, int.from_bytes(digest, "big"))
            log.progress = version


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
        batches=chunk.batches,
    )


class ChunkOpener:
    """Opens peers' chunks; ``trust`` None: the ring is insecure and nothing is verified."""

    def __init__(self, trust: Trust | None) -> None:
        self._trust = trust
        self.book = BatchBook()

    @property
    def trust(self) -> Trust | None:
        return self._trust

    @trust.setter
    def trust(self, trust: Trust | None) -> None:
        self._trust = trust
        self.book.forget()  # batches verified with the old trust are checked again

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
        if max(len(msg.records), len(msg.batches)) > MAX_RECORDS_PER_MESSAGE:
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
        if self.trust is not None:
            self.book.begin(msg, cluster_id, replica)
        records: list[Held] = []
        weights: list[int] = []
        last = msg.from_version
        generation = msg.generation
        for data in msg.records:
            sealed = self._sealed(data, cluster_id)
            body = sealed.body
            # The common service record is read straight from its bytes; any other (or
            # one that breaks a rule) through protobuf (mesh.wire.record_fast).
            fast = fast_service(body, cluster_id, replica, generation)
            fields = None if fast is not None else _fields(body, cluster_id)
            version = fast[0] if fast is not None else fields.get("version", 0)  # type: ignore[union-attr]
            if version <= last:
                raise ChunkError("malformed", f"cluster {cluster_id}: versions not ascending")
            last = version
            if version <= skip:
                continue
            digest = digest_of(body)
            batch = self._cover(sealed, version, digest, cluster_id, msg.certificate, now_wall)
            if fast is not None:
                service = fast[1]
                records.append(SealedServiceRecord(version, service, data, batch))
            else:
                assert fields is not None
                records.append(self._record(fields, msg, cluster_id, replica, data, batch))
            weights.append(int.from_bytes(digest, "big"))
        head = None
        if msg.head:
            sealed = self._sealed(msg.head, cluster_id)
            self._verify(sealed, HEAD_DOMAIN, cluster_id, msg.certificate, now_wall)
            head = self._head(sealed.body, msg, cluster_id, replica, last)
        return replace(shape, records=tuple(records), head=head, weights=tuple(weights))

    def _sealed(self, data: bytes, cluster_id: str) -> pb.Sealed:
        return _parse(pb.Sealed(), data, f"cluster {cluster_id}: undecodable seal")

    def _cover(
        self,
        sealed: pb.Sealed,
        version: int,
        digest: bytes,
        cluster_id: str,
        certificate: bytes,
        now: float,
    ) -> bytes:
        """Check that the record's origin signed it, through its batch when it names one
        the chunk carries, else on its own; returns the batch's bytes (b"" for none)."""
        trust = self.trust
        if trust is None:
            return b""  # an insecure ring: nothing is signed, no batch is kept
        if sealed.batch:
            batch = self.book.get(sealed.batch, cluster_id, trust, now)
            if batch is not None:
                if not batch.covers(version, digest):
                    # Its origin's signature does not cover these bytes, as for a record
                    # signed on its own: the same counter label.
                    raise ChunkError(
                        "bad_signature", f"cluster {cluster_id}: record {version} not in its batch"
                    )
                return batch.sealed
            if not sealed.signature:  # an older relay left the batch out: its own signature
                raise ChunkError("missing_batch", f"cluster {cluster_id}: no batch {sealed.batch}")
        self._verify(sealed, RECORD_DOMAIN, cluster_id, certificate, now)
        return b""

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
        self,
        fields: dict[str, Any],
        chunk: pb.OriginChunk,
        cluster_id: str,
        replica: str,
        sealed: bytes,
        batch: bytes,
    ) -> Held:
        origin = (
            fields.get("cluster_id", ""),
            fields.get("replica", ""),
            fields.get("generation", 0),
        )
        if origin != (cluster_id, replica, chunk.generation):
            raise _mismatch(chunk, cluster_id, replica, *origin)
        version = fields["version"]  # above the chunk's from_version: set
        try:
            if "service" in fields:
                service = service_from_pb(fields["service"], cluster_id)
                return SealedServiceRecord(version, service, sealed, batch)
            if "info" in fields:
                info = info_from_pb(fields["info"])
                return SealedRecord(version, None, None, info, sealed, batch=batch)
            if "deleted" in fields:
                deleted = fields["deleted"]
                key = ServiceKey(label(deleted.namespace, "namespace"), label(deleted.name, "name"))
                return SealedRecord(version, key, None, None, sealed, batch=batch)
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


def _fields(body: bytes, cluster_id: str) -> dict[str, Any]:
    """A record's fields by name, read in one call (see mesh.wire.service_decode for why)."""
    record = _parse(pb.Record(), body, f"cluster {cluster_id}: undecodable record")
    return {_RECORD_NAMES[fd]: value for fd, value in record.ListFields()}


def _same_origin(msg: pb.Head, chunk: pb.OriginChunk, cluster_id: str, replica: str) -> None:
    if (msg.cluster_id, msg.replica, msg.generation) != (cluster_id, replica, chunk.generation):
        raise _mismatch(chunk, cluster_id, replica, msg.cluster_id, msg.replica, msg.generation)


def _mismatch(
    chunk: pb.OriginChunk, cluster_id: str, replica: str, theirs: str, their_replica: str, gen: int
) -> ChunkError:
    return ChunkError(
        "cluster_mismatch",
        f"chunk of {cluster_id}/{replica} gen {chunk.generation} carries "
        f"{theirs!r}/{their_replica!r} gen {gen}",
    )
