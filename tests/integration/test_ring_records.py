"""The record exchange over real gRPC on loopback: a large catch-up streams in bounded
messages, an idle exchange carries no lists, a flooding caller is refused and counted."""

from __future__ import annotations

import grpc
import pytest

from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.ring.catalog import Catalog, Change
from mesh.ring.limits import Rate, TokenBuckets
from mesh.ring.peers import PeerTable
from mesh.transport.gossip import Ring
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc
from tests.unit.records_kit import service

CHUNK_BYTES = 4096


async def _ring(cluster: str, seeds: list[str], services: int = 0) -> tuple[Ring, str]:
    catalog = Catalog(ClusterState(cluster, 1, 0))
    changes: list[Change] = []
    ring = Ring(catalog, PeerTable(cluster, "127.0.0.1:0", seeds), changes.append)
    ring.chunk_bytes = CHUNK_BYTES
    if services:
        keys = [ServiceKey("shop", f"svc-{i}") for i in range(services)]
        exports = {k: service(k, f"10.{i // 250}.{i % 250}.1") for i, k in enumerate(keys)}
        change = catalog.set_local(LocalExports(frozenset({"shop"}), exports))
        ring.publisher.publish(catalog.local, change, 0.0)
    port = await ring.start("127.0.0.1:0")
    ring.peers.self_address = f"127.0.0.1:{port}"
    return ring, ring.peers.self_address


@pytest.mark.asyncio
async def test_a_large_state_streams_in_bounded_messages_and_then_idles_cheaply() -> None:
    east, east_address = await _ring("east", [], services=400)
    west, _ = await _ring("west", [east_address])
    try:
        await west._exchange(east_address)
        held = west.catalog.get("east")
        assert held is not None
        assert dict(held.services) == dict(east.catalog.local.services)
        rounds = west.stats.messages[("sent", "ok")]
        assert rounds > 5  # it took many bounded messages ...
        # ... none much larger than the chunk bound (plus headers, digests, members)
        assert west.stats.largest["received"] < CHUNK_BYTES + 1024
        # Converged: both hold the same digests and members, so an idle exchange sends
        # hashes, not lists, and nothing else.
        await west._exchange(east_address)
        before = dict(west.stats.bytes)
        await west._exchange(east_address)
        sent = west.stats.bytes["sent"] - before["sent"]
        received = west.stats.bytes["received"] - before["received"]
        assert sent < 200, sent
        assert received < 200, received
        # A change at the origin still reaches west in the next exchange.
        exports = dict(east.catalog.local.services)
        key = ServiceKey("shop", "svc-7")
        exports[key] = service(key, "10.99.0.1")
        change = east.catalog.set_local(LocalExports(frozenset({"shop"}), exports))
        east.publisher.publish(east.catalog.local, change, 0.0)
        await west._exchange(east_address)
        held = west.catalog.get("east")
        assert held is not None
        assert held.services[key] == exports[key]
    finally:
        await west.close()
        await east.close()


@pytest.mark.asyncio
async def test_a_flooding_caller_is_refused_and_counted_without_being_called_dead() -> None:
    east, east_address = await _ring("east", [])
    east.push_pull_limit = TokenBuckets(Rate(per_second=0.001, burst=3))
    try:
        async with grpc.aio.insecure_channel(east_address) as channel:
            stub = pb_grpc.GossipStub(channel)
            for _ in range(3):
                await stub.PushPull(pb.PushPullRequest(), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PushPull(pb.PushPullRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert east.stats.rejected == {"rate_limited": 1}
        # Another connection has its own bucket; once it meets the limit, the agent backs
        # off without marking the peer unreachable.
        west, _ = await _ring("west", [east_address])
        try:
            for _ in range(3):
                await west._exchange(east_address)
            assert west.stats.messages[("sent", "resource_exhausted")] >= 1
            peer = west.peers.peers[east_address]
            assert peer.failures == 0
            assert west.peers.reachable(east_address, peer.last_ok or 0.0)
        finally:
            await west.close()
    finally:
        await east.close()
