"""Signed batches of record digests: one origin signature for many records.

Why. Verifying one Ed25519 signature per record was most of a newcomer's catch-up (about
77 us a record, a few hundred thousand records). So the origin also signs, per run of up
to ``BATCH_RECORDS`` consecutive versions it writes, one ``Batch``: its cluster, replica,
generation, first version, and the SHA-256 digest of each record's body in version order.
Each record's ``Sealed`` names its batch (``Sealed.batch``: the batch's first version),
and a chunk carries the sealed batches its records name (``OriginChunk.batches``).

The rules a receiver applies (``BatchBook``, called by ``mesh.wire.record_codec``):

- a batch is verified against its origin's key (domain ``BATCH_DOMAIN``, so no record,
  head or SWIM signature passes for one), and must be of the chunk's cluster, replica and
  generation, with whole digests, at most ``MAX_BATCH_RECORDS`` of them;
- a record is covered when the SHA-256 of its body equals the digest at position
  ``version - first_version`` of the batch it names (its version is inside the body, so a
  relay cannot move it to another slot): a relay can no more forge or alter a record than
  with one signature per record. Dropping records is caught as before, by the signed
  ``Head`` (live count and set hash; the digest is also the record's set-hash term);
- a record that names a batch the chunk lacks falls back to its own signature (an older
  relay forwards records but not batches); without one it is dropped (``missing_batch``).

A verified batch is remembered (by its exact bytes, at most ``MAX_CACHED_BATCHES``, until
its key expires), so a batch that arrives again with the rest of its records (the next
chunk, or the next slice of one) costs no second verification.

Pure: bytes and keys in; ``now`` (wall-clock epoch seconds, for certificate validity) is
passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from mesh.security.signing import BATCH_DOMAIN, SignedStateError, Signer, Trust, verify_sealed
from mesh.wire.v1 import gossip_pb2 as pb

# Records one batch covers when this agent seals: 8 KiB of digests. A newcomer checks one
# signature per batch and looks up each record's batch (64 until this release: four times
# the signatures and batch parses of a catch-up). Any size up to MAX_BATCH_RECORDS is taken
# by this release and the one before (whose bound was the same), so agents sealing 64 and
# 256 share a ring during a rolling upgrade, each verifying the other's batches.
BATCH_RECORDS = 256
MAX_BATCH_RECORDS = 4096  # what a receiver accepts (a later release may seal larger ones)
DIGEST_BYTES = 32
MAX_CACHED_BATCHES = 256


class ChunkError(ValueError):
    """A chunk that must be dropped whole; ``reason`` is a counter label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_M = TypeVar("_M", pb.Sealed, pb.Record, pb.Head, pb.Batch)


def parse(message: _M, data: bytes, what: str) -> _M:
    """``message`` filled from ``data``; a ``ChunkError`` saying ``what`` if it cannot be."""
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise ChunkError("malformed", what) from None
    return message


def digest_of(body: bytes | memoryview) -> bytes:
    return hashlib.sha256(body).digest()


def seal_batch(
    signer: Signer, origin: tuple[str, str, int], first: int, digests: Sequence[bytes]
) -> bytes:
    """The serialized ``Sealed`` batch of ``digests`` (versions ``first`` onwards) of
    ``origin`` (cluster, replica, generation)."""
    cluster_id, replica, generation = origin
    body = pb.Batch(
        cluster_id=cluster_id,
        replica=replica,
        generation=generation,
        first_version=first,
        digests=b"".join(digests),
    ).SerializeToString(deterministic=True)
    seal = signer.seal(BATCH_DOMAIN, body)
    sealed = pb.Sealed(body=seal.body, signature=seal.signature, key_id=seal.key_id)
    return bytes(sealed.SerializeToString())


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A verified batch: its first version, digests, and the bytes it came in."""

    first: int
    digests: bytes
    sealed: bytes
    not_after: float  # when its key's certificate expires

    def covers(self, version: int, digest: bytes) -> bool:
        at = (version - self.first) * DIGEST_BYTES
        return 0 <= at < len(self.digests) and self.digests[at : at + DIGEST_BYTES] == digest


class BatchBook:
    """The batches of one chunk (``begin``), verified on first use (``get``)."""

    def __init__(self) -> None:
        self._verified: dict[tuple[str, bytes], OpenBatch] = {}
        self._index: dict[int, tuple[bytes, pb.Sealed, pb.Batch]] = {}
        self._chunk: pb.OriginChunk | None = None
        # The batch the chunk's previous record used: consecutive records share one.
        self._last: tuple[int, OpenBatch] | None = None

    def forget(self) -> None:
        """Drop what was verified (the trust changed)."""
        self._verified.clear()
        self._last = None

    def begin(self, chunk: pb.OriginChunk, cluster_id: str, replica: str) -> None:
        """Index ``chunk``'s batches by first version; each must be of the chunk's origin."""
        self._index = {}
        self._chunk = chunk
        self._last = None
        for data in chunk.batches:
            sealed = parse(pb.Sealed(), data, f"cluster {cluster_id}: undecodable batch")
            batch = parse(pb.Batch(), sealed.body, f"cluster {cluster_id}: undecodable batch")
            origin = (batch.cluster_id, batch.replica, batch.generation)
            if origin != (cluster_id, replica, chunk.generation):
                raise ChunkError(
                    "cluster_mismatch",
                    f"chunk of {cluster_id}/{replica} gen {chunk.generation} carries a batch "
                    f"of {batch.cluster_id!r}/{batch.replica!r} gen {batch.generation}",
                )
            count, rest = divmod(len(batch.digests), DIGEST_BYTES)
            if rest or not 0 < count <= MAX_BATCH_RECORDS or batch.first_version == 0:
                raise ChunkError("malformed", f"cluster {cluster_id}: bad batch")
            self._index.setdefault(batch.first_version, (data, sealed, batch))

    def get(self, first: int, cluster_id: str, trust: Trust, now: float) -> OpenBatch | None:
        """The chunk's batch starting at ``first``, verified; None if the chunk lacks it."""
        last = self._last
        if last is not None and last[0] == first:
            return last[1]  # (one chunk is opened at one ``now``: still valid)
        opened = self._open(first, cluster_id, trust, now)
        self._last = None if opened is None else (first, opened)
        return opened

    def _open(self, first: int, cluster_id: str, trust: Trust, now: float) -> OpenBatch | None:
        found = self._index.get(first)
        if found is None:
            return None
        data, sealed, batch = found
        held = self._verified.get((cluster_id, data))
        if held is not None and now <= held.not_after:
            return held
        certificate = b"" if self._chunk is None else self._chunk.certificate
        if not sealed.signature:
            raise ChunkError("unsigned", f"cluster {cluster_id}: unsigned batch")
        try:
            verify_sealed(BATCH_DOMAIN, cluster_id, sealed, certificate, trust, now)
            key = trust.key_of(cluster_id, sealed.key_id, b"", now)
        except SignedStateError as exc:
            raise ChunkError(exc.reason, str(exc)) from None
        opened = OpenBatch(batch.first_version, batch.digests, data, key.not_after)
        if len(self._verified) >= MAX_CACHED_BATCHES:
            del self._verified[next(iter(self._verified))]
        self._verified[(cluster_id, data)] = opened
        return opened
