"""Agents reduced to their ``Exchange`` (mesh/wire/exchange.py): catalog, peer table, record
store, publisher, exchange; ``call`` is one push-pull with every message serialized and
parsed, as gRPC carries it, and the callee told the caller's certificate's cluster when
the ring has TLS."""

from __future__ import annotations

from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.ring.catalog import Catalog, Change
from mesh.ring.peers import PeerTable
from mesh.ring.records import OriginLog, RecordStore
from mesh.security.seal import StateSeal
from mesh.wire.exchange import Exchange
from mesh.wire.record_codec import Publisher
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import KEYS, service
from tests.unit.test_signing import NOW as WALL  # inside the test certificates' validity


class Agent:
    def __init__(
        self, cluster: str, address: str, generation: int = 1, seal: StateSeal | None = None
    ) -> None:
        self.cluster, self.address = cluster, address
        self.catalog = Catalog(ClusterState(cluster, generation, 0))
        self.store = RecordStore(OriginLog(cluster, "", generation))
        self.publisher = Publisher(self.store.local, None if seal is None else seal.signer)
        self.changes: list[Change] = []
        self.publisher.publish(self.catalog.local, Change(cluster, cluster=True), 0.0)
        self.peers = PeerTable(cluster, address, [])
        self.exchange = Exchange(
            self.catalog, self.peers, self.changes.append, self.store, self.publisher, seal, 1 << 20
        )

    def export(self, tag: str, n: int = 4) -> None:
        services = {k: service(k, f"10.0.{i}.{tag}") for i, k in enumerate(KEYS[:n])}
        change = self.catalog.set_local(LocalExports(frozenset({"shop"}), services))
        if change:
            self.publisher.publish(self.catalog.local, change, 0.0)

    def exports(self) -> dict[ServiceKey, object]:
        return dict(self.catalog.local.services)

    def view(self, cluster: str) -> dict[ServiceKey, object] | None:
        state = self.catalog.get(cluster)
        return None if state is None else dict(state.services)


def call(caller: Agent, callee: Agent, now: float = 1.0, tls: bool = False) -> bool:
    """One push-pull from ``caller`` to ``callee``; True when another should follow."""
    sent = caller.exchange.request_for(callee.address, now)
    request = pb.PushPullRequest.FromString(sent.request.SerializeToString())
    reply = callee.exchange.answer(request, caller.cluster if tls else "", now, WALL)
    reply = pb.PushPullResponse.FromString(reply.SerializeToString())
    return caller.exchange.take_reply(sent, reply, now, WALL)


def exchange(caller: Agent, callee: Agent, now: float = 1.0, tls: bool = False) -> None:
    """Push-pulls until neither side has more (bounded, as the ring's MAX_ROUNDS)."""
    for _ in range(64):
        if not call(caller, callee, now, tls):
            return
