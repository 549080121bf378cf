"""Records on the wire: peers' chunks opened (and this origin's made, in ``publisher``).

``Publisher`` (``mesh.wire.publisher``) makes and seals this origin's records.

``ChunkOpener`` checks everything a peer's ``OriginChunk`` carries before the store sees
it: names, generation, strictly ascending versions above ``from_version``, every record's
and the head's origin signature (with TLS: against the clusterset CA, the key bound to the
chunk's cluster; a record of cluster X is only accepted signed by X's key, on its own or
through a batch of X's that holds its digest), the record
bodies by the codec's rules, and that every record belongs to the chunk's origin and
generation. Any failure rejects the whole chunk with a ``ChunkError`` whose ``reason`` is a
counter label; the stream simply continues from the receiver's progress next exchange.
Each record's body is hashed once: the digest a batch covers is its set-hash term too,
handed to the store with the record (``Chunk.weights``). The common service record is
read straight from its sealed bytes (``mesh.wire.record_fast``, which answers as protobuf
would or not at all); any other record, or one that breaks a rule, through protobuf.

Pure: bytes and keys in, decoded records out; ``now`` (wall-clock, for certificate
validity) is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from hashlib import sha256 as _sha256
from typing import Any

from mesh.model import ServiceKey
from mesh.ring.record_log import Held
from mesh.ring.records import MAX_RECORDS_PER_MESSAGE, Chunk, Head, OutChunk
from mesh.security.signing import (
    HEAD_DOMAIN,
    RECORD_DOMAIN,
    SignedStateError,
    Trust,
    verify_sealed,
)
from mesh.wire.codec import (
    CodecError,
    info_from_pb,
    label,
    replica_of,
    service_from_pb,
    shared,
)
from mesh.wire.publisher import Publisher
from mesh.wire.record_batch import (
    BatchBook,
    ChunkError,
    digest_of,
)
from mesh.wire.record_batch import parse as _parse
from mesh.wire.record_fast import Sealing, read_sealed, record_prefix
from mesh.wire.sealed_record import (
    Batch,
    CanonicalServiceRecord,
    Origin,
    SealedRecord,
    SealedServiceRecord,
)
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
        records, weights, last = self._records(msg, cluster_id, replica, skip, now_wall)
        head = None
        if msg.head:
            sealed = self._sealed(msg.head, cluster_id)
            self._verify(sealed, HEAD_DOMAIN, cluster_id, msg.certificate, now_wall)
            head = self._head(sealed.body, msg, cluster_id, replica, last)
        return replace(shape, records=tuple(records), head=head, weights=tuple(weights))

    def _records(
        self, msg: pb.OriginChunk, cluster_id: str, replica: str, skip: int, now: float
    ) -> tuple[list[Held], list[int], int]:
        """The chunk's records above ``skip``, checked, with their set-hash terms, and the
        version of its last record (``from_version`` if none)."""
        records: list[Held] = []
        weights: list[int] = []
        last = msg.from_version
        generation, certificate = msg.generation, msg.certificate
        prefix = record_prefix(cluster_id, replica, generation)
        shares = _Shares(prefix)
        trust, get_batch = self.trust, self.book.get
        for data in msg.records:
            # The common service record is read straight from its bytes; any other (or
            # one that breaks a rule) through protobuf (mesh.wire.record_fast).
            fast = read_sealed(data, prefix)
            if fast is not None:
                version, first = fast[0], fast[4]
                if version <= last:
                    raise ChunkError("malformed", f"cluster {cluster_id}: versions not ascending")
                last = version
                if version <= skip:
                    continue
                digest = _sha256(data[fast[2] : fast[3]]).digest()
                # The usual case inline: the batch the previous record used covers this one
                # (else ``_cover`` decides, as for any record: its own signature, or why not).
                opened = (
                    None if trust is None or not first else get_batch(first, cluster_id, trust, now)
                )
                if opened is not None and opened.covers(version, digest):
                    batch = opened.sealed
                else:
                    batch = self._cover(
                        data, None, first, version, digest, cluster_id, certificate, now
                    )
                records.append(shares.record(fast, batch))
                weights.append(int.from_bytes(digest, "big"))
                continue
            sealed = self._sealed(data, cluster_id)
            body, first = sealed.body, sealed.batch
            fields = _fields(body, cluster_id)
            version = fields.get("version", 0)
            if version <= last:
                raise ChunkError("malformed", f"cluster {cluster_id}: versions not ascending")
            last = version
            if version <= skip:
                continue
            digest = digest_of(body)
            batch = self._cover(data, sealed, first, version, digest, cluster_id, certificate, now)
            records.append(self._record(fields, msg, cluster_id, replica, data, batch))
            weights.append(int.from_bytes(digest, "big"))
        return records, weights, last

    def _sealed(self, data: bytes, cluster_id: str) -> pb.Sealed:
        return _parse(pb.Sealed(), data, f"cluster {cluster_id}: undecodable seal")

    def _cover(
        self,
        data: bytes,
        sealed: pb.Sealed | None,
        first: int,
        version: int,
        digest: bytes,
        cluster_id: str,
        certificate: bytes,
        now: float,
    ) -> bytes:
        """Check that the record's origin signed it, through the batch it names (``first``)
        when the chunk carries that, else on its own; returns the batch's bytes (b"" for
        none). ``sealed``: ``data`` parsed, None if not yet (then only when needed)."""
        trust = self.trust
        if trust is None:
            return b""  # an insecure ring: nothing is signed, no batch is kept
        if first:
            batch = self.book.get(first, cluster_id, trust, now)
            if batch is not None:
                if not batch.covers(version, digest):
                    # Its origin's signature does not cover these bytes, as for a record
                    # signed on its own: the same counter label.
                    raise ChunkError(
                        "bad_signature", f"cluster {cluster_id}: record {version} not in its batch"
                    )
                return batch.sealed
        if sealed is None:
            sealed = self._sealed(data, cluster_id)
        if first and not sealed.signature:  # an older relay left the batch out
            raise ChunkError("missing_batch", f"cluster {cluster_id}: no batch {first}")
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


class _Shares:
    """What a chunk's records of the common shape share, made once: their origin's bytes
    with their key id, and their batch (``mesh.wire.sealed_record``)."""

    __slots__ = ("_batch", "_key_id", "_origin", "_prefix")

    def __init__(self, prefix: bytes) -> None:
        self._prefix = shared(prefix)
        self._key_id: bytes | None = b""  # (none yet: b"" is never a key id)
        self._origin: Origin = (self._prefix, None)
        self._batch: Batch = (b"", 0)

    def record(self, fast: Sealing, batch: bytes) -> CanonicalServiceRecord:
        """The record ``fast`` read, held without its bytes."""
        version, service, _, _, first, signature, key_id = fast
        if key_id != self._key_id:
            self._key_id = key_id
            self._origin = shared((self._prefix, None if key_id is None else shared(key_id)))
        held = self._batch
        if held[0] is not batch or held[1] != first:
            held = self._batch = shared((batch, first))
        return CanonicalServiceRecord(version, service, self._origin, signature, held)


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
