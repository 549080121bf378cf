"""The ring's state exchange: push-pull of cluster states between agents over gRPC.

Every ``interval_s`` the agent calls ``PushPull`` on each peer that is due (see
``mesh.peers``), pushing its members, its digests and the states that peer lacked at their
last exchange (all of them the first time); the callee merges what is newer and answers
with the states newer than the caller's digests, and its own digests. A local change
``nudge``s the loop, so it reaches every reachable peer in one round trip. Each side merges
through ``Catalog.merge``, so duplicates and reordering are harmless. A state that fails
validation (or, with TLS, its origin's signature) is dropped and counted; the rest of the
message is still used. The ``Swim`` RPC carries the membership protocol's datagrams
(``mesh.membership``).

Messages are bounded by ``max_message_bytes`` on both ends (gRPC's own limit is 4 MiB);
chunked catch-up and SWIM membership replace this exchange in the ring issue.

With ``tls`` (``mesh.tls.RingTls``) the server demands client certificates and refuses
callers of another clusterset, and channels are mutual TLS, redialled when the certificate
files change; without it the ring is plaintext (``--insecure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from mesh.catalog import Catalog, Change, Digest
from mesh.codec import CodecError, digest_from_pb, digest_to_pb, state_from_pb, state_to_pb
from mesh.model import ClusterState, is_dns_label
from mesh.peers import PeerTable, valid_host_port
from mesh.seal import StateSeal

if TYPE_CHECKING:
    from mesh.membership import SwimPump
from mesh.tls import RingTls
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc

log = logging.getLogger("meshd.ring")

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class RingStats:
    """Plain counters, read by the metrics adapter at scrape time."""

    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # (direction, outcome)
    bytes: dict[str, int] = field(default_factory=dict)  # direction
    rejected_states: int = 0
    rejected_members: int = 0
    rejected_unsigned: int = 0
    last_merge: float | None = None  # loop time of the last state taken from a peer

    def count(self, direction: str, outcome: str, size: int) -> None:
        key = (direction, outcome)
        self.messages[key] = self.messages.get(key, 0) + 1
        self.bytes[direction] = self.bytes.get(direction, 0) + size


class Ring(pb_grpc.GossipServicer):
    def __init__(
        self,
        catalog: Catalog,
        peers: PeerTable,
        on_change: Callable[[Change], None],
        *,
        rpc_timeout_s: float = 1.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: RingTls | None = None,
        seal: StateSeal | None = None,
    ) -> None:
        self.catalog = catalog
        self.peers = peers
        self.on_change = on_change
        self.rpc_timeout_s = rpc_timeout_s
        self.max_message_bytes = max_message_bytes
        self.stats = RingStats()
        self.exchanged_once = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.tls = tls  # None: plaintext (--insecure)
        self.seal = seal  # None: states travel unsigned (--insecure)
        self.swim: SwimPump | None = None  # set by the agent once membership runs
        self._their_digests: dict[str, list[Digest]] = {}  # peer address -> what it held
        self._nudged = asyncio.Event()
        self.swim_timeout_s = 0.5
        self._tls_generation = 0
        self._retiring: set[asyncio.Task[None]] = set()
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # gRPC's own reconnect backoff grows to 120 s; a peer that was down must be found
            # again within our own (capped) retry schedule, not minutes later.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]

    # --- server side -------------------------------------------------------------------

    async def start(self, listen: str) -> int:
        """Bind the gossip server; returns the bound port (for port 0)."""
        tls_options = self.tls.server_options() if self.tls is not None else []
        self._server = grpc.aio.server(options=self._options + tls_options)
        pb_grpc.add_GossipServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        if self.tls is not None:
            port = int(self._server.add_secure_port(listen, self.tls.server_credentials()))
        else:
            port = int(self._server.add_insecure_port(listen))
        if port == 0:
            raise OSError(f"cannot listen for gossip on {listen}")
        await self._server.start()
        return port

    async def PushPull(  # noqa: N802 (the generated servicer's name)
        self,
        request: pb.PushPullRequest,
        context: grpc.aio.ServicerContext[pb.PushPullRequest, pb.PushPullResponse],
    ) -> pb.PushPullResponse:
        if self.tls is not None:
            refused = self.tls.check_peer(context)
            if refused is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
        now = asyncio.get_running_loop().time()
        self.stats.count("received", "ok", request.ByteSize())
        sender = request.sender
        if _valid_member(sender):
            self.peers.succeeded(sender.address, sender.cluster_id, now, sender.replica)
        self._absorb(request.members, request.states, request.signed_states, now)
        try:
            digests = [digest_from_pb(d) for d in request.digests]
        except CodecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        reply = pb.PushPullResponse(
            responder=self._me(),
            members=self._members(now),
            digests=[digest_to_pb(d) for d in self.catalog.digests()],
        )
        self._put_states(reply, self.catalog.newer_than(digests))
        self.stats.count("sent", "ok", reply.ByteSize())
        return reply

    async def Swim(  # noqa: N802 (the generated servicer's name)
        self,
        request: pb.SwimDatagram,
        context: grpc.aio.ServicerContext[pb.SwimDatagram, pb.SwimReceipt],
    ) -> pb.SwimReceipt:
        if self.tls is not None:
            refused = self.tls.check_peer(context)
            if refused is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
        self.stats.count("received", "swim", request.ByteSize())
        if self.swim is not None:
            self.swim.receive(request, context.peer())
        return pb.SwimReceipt()

    async def send_swim(self, address: str, datagram: pb.SwimDatagram) -> bool:
        """One SWIM datagram; False when it could not be delivered (a lost datagram)."""
        stub = pb_grpc.GossipStub(self._channel(address))  # type: ignore[no-untyped-call]
        try:
            await stub.Swim(datagram, timeout=self.swim_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.stats.count("sent", f"swim_{exc.code().name.lower()}", datagram.ByteSize())
            return False
        self.stats.count("sent", "swim", datagram.ByteSize())
        return True

    # --- client side -------------------------------------------------------------------

    async def run(self, interval_s: float) -> None:
        """Exchange with every due peer, forever; at once with every reachable peer when
        ``nudge`` says this agent's own state changed (a change spreads in one round trip)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            targets = set(self.peers.due(now))
            if self._nudged.is_set():
                self._nudged.clear()
                targets.update(a for a in self.peers.peers if self.peers.reachable(a, now))
            if targets:
                await asyncio.gather(*(self._exchange(a) for a in sorted(targets)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), interval_s)

    def nudge(self) -> None:
        """Our own state changed: push it now rather than at the next round."""
        self._nudged.set()

    async def _exchange(self, address: str) -> None:
        loop = asyncio.get_running_loop()
        request = pb.PushPullRequest(
            sender=self._me(),
            members=self._members(loop.time()),
            digests=[digest_to_pb(d) for d in self.catalog.digests()],
        )
        # Push what the peer lacked at our last exchange (everything, the first time).
        theirs = self._their_digests.get(address)
        self._put_states(
            request, self.catalog.states() if theirs is None else self.catalog.newer_than(theirs)
        )
        stub = pb_grpc.GossipStub(self._channel(address))  # type: ignore[no-untyped-call]
        try:
            reply = await stub.PushPull(request, timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.stats.count("sent", exc.code().name.lower(), request.ByteSize())
            if self.tls is not None:
                self.tls.observe_failure(exc.details())
            self.peers.failed(address, loop.time())
            return
        now = loop.time()
        self.stats.count("sent", "ok", request.ByteSize())
        self.stats.count("received", "ok", reply.ByteSize())
        if reply.responder.cluster_id == self.catalog.local_id and (
            reply.responder.address == self.peers.self_address
        ):
            self.peers.forget(address)  # a seed list that names this agent itself
            return
        if is_dns_label(reply.responder.cluster_id) and _valid_replica(reply.responder.replica):
            self.peers.succeeded(address, reply.responder.cluster_id, now, reply.responder.replica)
        self._absorb(reply.members, reply.states, reply.signed_states, now)
        try:
            self._their_digests[address] = [digest_from_pb(d) for d in reply.digests]
        except CodecError:
            self._their_digests.pop(address, None)  # next time, push everything again
        self.exchanged_once.set()

    def _channel(self, address: str) -> grpc.aio.Channel:
        if self.tls is not None:
            return self._tls_channel(address, self.tls)
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    def _tls_channel(self, address: str, tls: RingTls) -> grpc.aio.Channel:
        creds, options, generation = tls.channel_security()
        if generation != self._tls_generation:  # the certificate files changed: redial
            self._tls_generation = generation
            for old in self._channels.values():
                task = asyncio.get_running_loop().create_task(old.close(grace=1.0))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            self._channels.clear()
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.secure_channel(address, creds, options=self._options + options)
            self._channels[address] = channel
        return channel

    # --- shared --------------------------------------------------------------------------

    def _me(self) -> pb.Member:
        return pb.Member(
            cluster_id=self.catalog.local_id,
            address=self.peers.self_address,
            replica=self.catalog.local.replica,
        )

    def _members(self, now: float) -> list[pb.Member]:
        return [
            pb.Member(cluster_id=c, address=a, replica=r) for c, a, r in self.peers.members(now)
        ]

    def _put_states(
        self, message: pb.PushPullRequest | pb.PushPullResponse, states: list[ClusterState]
    ) -> None:
        """The states, signed by their origins when the ring is secure, else in the clear."""
        if self.seal is None:
            message.states.extend(state_to_pb(s) for s in states)
        else:
            message.signed_states.extend(self.seal.envelopes(states, self.catalog.local_id))

    def _absorb(
        self,
        members: Iterable[pb.Member],
        states: Sequence[pb.ClusterState],
        signed: Sequence[pb.SignedClusterState],
        now: float,
    ) -> None:
        for m in members:
            if _valid_member(m):
                self.peers.learned(m.cluster_id, m.address, now, m.replica)
            else:
                self.stats.rejected_members += 1
        accepted: list[tuple[ClusterState, pb.SignedClusterState | None]]
        if self.seal is not None:
            if states:  # a peer without signatures cannot tell us anything
                self.stats.rejected_unsigned += len(states)
            accepted = list(self.seal.open(signed, time.time()))
        else:
            accepted = [(s, None) for s in self._decode(states)]
        for state, envelope in accepted:
            change = self.catalog.merge(state)
            if change is not None:
                if envelope is not None and self.seal is not None:
                    self.seal.keep(envelope, state)
                self.stats.last_merge = now
                if change:
                    self.on_change(change)

    def _decode(self, states: Sequence[pb.ClusterState]) -> list[ClusterState]:
        decoded = []
        for msg in states:
            try:
                decoded.append(state_from_pb(msg))
            except CodecError as exc:
                self.stats.rejected_states += 1
                log.warning("dropped a cluster state from a peer: %s", exc)
        return decoded

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for channel in self._channels.values():
            await channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)


def _valid_replica(replica: str) -> bool:
    return not replica or is_dns_label(replica)


def _valid_member(member: pb.Member) -> bool:
    return (
        is_dns_label(member.cluster_id)
        and valid_host_port(member.address)
        and _valid_replica(member.replica)
    )
