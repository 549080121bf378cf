"""This origin's records, made and sealed (``Publisher``).

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

Pure: the model's state in, sealed bytes held in the local ``OriginLog``; ``now`` (for
tombstones) is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model import ClusterState, ExportedService
from mesh.ring.catalog import Change
from mesh.ring.records import ClusterInfo, Head, OriginLog, Slot
from mesh.security.signing import HEAD_DOMAIN, RECORD_DOMAIN, Signer
from mesh.wire.codec import info_of, info_to_pb, service_to_pb
from mesh.wire.record_batch import BATCH_RECORDS, digest_of, seal_batch
from mesh.wire.sealed_record import held_record
from mesh.wire.v1 import gossip_pb2 as pb


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

    def __init__(
        self,
        log: OriginLog,
        signer: Signer | None,
        *,
        per_record: bool = True,
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        self.log = log
        self.signer = signer
        self.per_record = per_record  # also sign each record (for agents before batches)
        # Records per signed batch, at most (an earlier release sealed 64; tests make one).
        self.batch_records = batch_records
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
        step = self.batch_records
        for start in range(0, len(made), step):
            self._put(made[start : start + step], now)
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
