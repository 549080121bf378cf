"""Agents reduced to their record stores, exchanging real wire bytes (no sockets).

``Node`` is what ``mesh.daemon.agent.Agent`` wires for records: a catalog, a record store, a
publisher, a chunk opener. ``send`` is one direction of a push-pull: the sender selects
from the receiver's digests, every chunk is serialized and parsed as gRPC would carry it,
opened (signatures checked when ``signer``/``trust`` are set) and applied.
"""

from __future__ import annotations

from mesh.model import ClusterState, Endpoint, ExportedService, LocalExports, ServiceKey
from mesh.ring.catalog import Catalog, Change
from mesh.ring.records import OriginLog, RecordStore
from mesh.security.signing import Signer, Trust
from mesh.wire.record_batch import BATCH_RECORDS
from mesh.wire.record_codec import ChunkError, ChunkOpener, Publisher, chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb

KEYS = [ServiceKey("shop", f"svc-{i}") for i in range(64)]


def service(key: ServiceKey, *addresses: str) -> ExportedService:
    from mesh.model import ServiceType

    return ExportedService(
        key, ServiceType.HEADLESS, endpoints=tuple(Endpoint((a,)) for a in addresses)
    )


class Node:
    def __init__(
        self,
        cluster: str,
        generation: int = 1,
        *,
        ttl: float = 3600.0,
        signer: Signer | None = None,
        trust: Trust | None = None,
        clusterset: str = "",
        now: float = 0.0,
        replica: str = "",
        per_record: bool = True,
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        self.cluster = cluster
        self.catalog = Catalog(ClusterState(cluster, generation, 0, replica=replica))
        self.store = RecordStore(OriginLog(cluster, replica, generation), tombstone_ttl=ttl)
        self.publisher = Publisher(
            self.store.local, signer, per_record=per_record, batch_records=batch_records
        )
        self.publisher.publish(self.catalog.local, Change(cluster, cluster=True), now)
        self.opener = ChunkOpener(trust)
        self.clusterset = clusterset
        self.changes: list[Change] = []
        self.dropped: list[str] = []

    @property
    def origin(self) -> tuple[str, str]:
        return self.store.local.origin

    def export(self, services: dict[ServiceKey, ExportedService], now: float = 0.0) -> None:
        change = self.catalog.set_local(LocalExports(frozenset({"shop"}), services))
        if change:
            self.publisher.publish(self.catalog.local, change, now)

    def exports(self) -> dict[ServiceKey, ExportedService]:
        return dict(self.catalog.local.services)

    def view(self) -> dict[str, dict[ServiceKey, ExportedService]]:
        """What answers use: every cluster's services."""
        return {s.cluster_id: dict(s.services) for s in self.catalog.clusters()}

    def take(
        self, message: pb.OriginChunk, now: float, wall: float = 0.0, sender: Node | None = None
    ) -> None:
        """``message`` as it arrives from ``sender`` (None: from someone else than its origin;
        a chunk of the sender's own records is its origin's word, as the exchange sees it)."""
        direct = sender is not None and (message.cluster_id, message.replica) == sender.origin
        try:
            wire = pb.OriginChunk.FromString(message.SerializeToString())
            chunk = self.opener.open(wire, wall, self.store.skip_through, direct=direct)
        except ChunkError as exc:
            self.dropped.append(exc.reason)
            return
        applied = self.store.apply(chunk, now)
        for origin in applied.forgot:
            self.catalog.drop(origin)
        if applied.dropped:
            self.dropped.append(applied.dropped)
        if applied.state is not None:
            services = (
                None if applied.everything else frozenset(s for s in applied.slots if s is not None)
            )
            cluster = applied.everything or None in applied.slots
            change = self.catalog.put(applied.state, services, cluster)
            if change:
                self.changes.append(change)


def wire(src: Node, dst: Node, budget: int = 1 << 20) -> tuple[list[pb.OriginChunk], bool]:
    chunks, more = src.store.select(dst.store.digests(), budget)
    return [chunk_to_pb(c, src.clusterset) for c in chunks], more


def send(src: Node, dst: Node, now: float = 0.0, budget: int = 1 << 20) -> bool:
    """``src`` sends ``dst`` what it lacks; True when more was left for another round."""
    messages, more = wire(src, dst, budget)
    for message in messages:
        dst.take(message, now, sender=src)
    return more


def sync(src: Node, dst: Node, now: float = 0.0, budget: int = 1 << 20) -> int:
    """Rounds until ``src`` has nothing more for ``dst`` (bounded)."""
    for rounds in range(1, 10_000):
        if not send(src, dst, now, budget):
            return rounds
    raise AssertionError("no convergence in 10,000 rounds")
