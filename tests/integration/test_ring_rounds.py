"""The ring's rounds over real gRPC on loopback: a peer behind a black hole (its call waits
for the deadline) holds back no exchange with the others, and the attempt left unanswered
is counted against it before that deadline; a local change reaches members the rate of
rounds has not reached yet."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.ring.catalog import Catalog, Change
from mesh.ring.peers import PeerTable, PeerTimings
from mesh.transport.gossip import Ring
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc
from tests.unit.records_kit import service

INTERVAL_S = 0.1
TIMINGS = PeerTimings(interval_s=INTERVAL_S, peer_timeout_s=1.0)


async def _ring(cluster: str, seeds: list[str], timings: PeerTimings = TIMINGS) -> tuple[Ring, str]:
    catalog = Catalog(ClusterState(cluster, 1, 0))
    changes: list[Change] = []
    ring = Ring(catalog, PeerTable(cluster, "127.0.0.1:0", seeds, timings), changes.append)
    port = await ring.start("127.0.0.1:0")
    ring.peers.self_address = f"127.0.0.1:{port}"
    return ring, ring.peers.self_address


class _Mute(pb_grpc.GossipServicer):
    """A peer that takes every call and never answers: the call waits for its deadline, as
    across a silently cut link."""

    async def PushPull(self, request: object, context: object) -> object:  # noqa: N802
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def _black_hole() -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    pb_grpc.add_GossipServicer_to_server(_Mute(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _answered(ring: Ring) -> int:
    return ring.stats.messages.get(("sent", "ok"), 0)


async def _until(condition: object, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_black_holed_peer_holds_back_no_round_with_the_others() -> None:
    hole, hole_address = await _black_hole()
    east, east_address = await _ring("east", [])
    west, _ = await _ring("west", [east_address, hole_address])
    west.rpc_timeout_s = 3.0  # the hole's call waits this long before it fails
    runner = asyncio.create_task(west.run(INTERVAL_S))
    try:
        await _until(lambda: _answered(east) >= 4, timeout_s=10.0)
        # Four exchanges with east went by, one round apart, while the first call to the
        # hole still waits for its 3 s deadline: rounds do not wait for the slowest peer.
        assert west.peers.peers[hole_address].failures == 0, dict(west.stats.messages)
        assert hole_address in west._running
        assert west.peers.peers[hole_address].pending_since is not None
        assert west.peers.reachable(east_address, asyncio.get_running_loop().time())
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        assert not west._running  # stopping the ring stops every exchange
        await west.close()
        await east.close()
        await hole.stop(grace=None)


@pytest.mark.asyncio
async def test_a_nudge_during_an_exchange_brings_one_more_after_it() -> None:
    east, east_address = await _ring("east", [])
    west, _ = await _ring("west", [east_address])
    try:
        await west._exchange(east_address)  # first contact, then converged: one round each
        before = _answered(east)
        west._start_exchange(east_address, again=False)
        west._start_exchange(east_address, again=False)  # due again while it runs: nothing
        assert east_address not in west._again
        west._start_exchange(east_address, again=True)  # news while it runs: once more
        assert east_address in west._again
        await _until(lambda: not west._running and not west._again, timeout_s=10.0)
        assert _answered(east) == before + 2
    finally:
        await west.close()
        await east.close()


def _holds(ring: Ring, cluster: str, key: ServiceKey) -> bool:
    state = ring.catalog.get(cluster)
    return state is not None and key in state.services


@pytest.mark.asyncio
async def test_a_change_reaches_members_not_yet_exchanged_with_past_the_rate_of_rounds() -> None:
    # Rounds 60 s apart, one peer a round: west meets its four listed members one a minute.
    slow = PeerTimings(interval_s=60.0, peer_timeout_s=120.0, max_exchanges_per_s=0.01)
    easts = [await _ring(f"east-{i}", []) for i in range(4)]
    west, _ = await _ring("west", [], slow)
    now = asyncio.get_running_loop().time()
    for i, (_, address) in enumerate(easts):
        assert west.peers.learned(f"east-{i}", address, now) == ""  # as a peer lists them
    runner = asyncio.create_task(west.run(slow.interval_s))
    try:
        await _until(lambda: [_answered(e) > 0 for e, _ in easts].count(True) == 1, 10.0)
        # One round went by: one member was exchanged with, three were not. A change now is
        # pushed to all four at once, not to the one that answered alone.
        key = ServiceKey("shop", "cart")
        change = west.catalog.set_local(
            LocalExports(frozenset({"shop"}), {key: service(key, "10.1.0.1")})
        )
        west.publisher.publish(west.catalog.local, change, 0.0)
        west.nudge()
        await _until(lambda: all(_holds(e, "west", key) for e, _ in easts), timeout_s=10.0)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await west.close()
        for east, _ in easts:
            await east.close()
