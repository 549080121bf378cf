"""The ring's state exchange: push-pull of per-service records between agents over gRPC.

The agent calls ``PushPull`` on each peer that is due (``mesh.peers``: every
``interval_s``, less often on a ring too large for that): it pushes its members, its
digests (per origin: generation, progress, the last head checked, a copy's snapshot) and
the records that peer lacked at their last exchange; the callee takes what continues its
copies and answers with the records above the caller's digests, and its own digests. Each
side leaves out a list whose hash the other already reported (``mesh.ring_lists``), so an
idle exchange is small.
The rules of what is sent and taken live in ``mesh.records`` (Scuttlebutt with tombstones,
resets built aside, heads checked); bytes on the wire in ``mesh.record_codec``. Each
message carries at most ``chunk_bytes`` of records; when either side had more, the caller
exchanges again at once (at most ``MAX_ROUNDS`` in a row), so a large catch-up streams in
bounded messages and never meets gRPC's message limit. A local change ``nudge``s the loop,
so it reaches every reachable peer in one round trip. The ``Swim`` RPC carries the
membership protocol's datagrams (``mesh.membership``).

Peers are untrusted: a chunk that fails validation or, with TLS, its origin's signatures is
dropped whole and counted by reason; each caller is rate limited (``mesh.limits``); with
TLS the server demands client certificates, refuses callers of another clusterset, and
refuses a caller whose messages claim another cluster than its certificate's (a member
cannot speak for another cluster's agents). Channels are mutual TLS, redialled when the
certificate files change; without TLS the ring is plaintext (``--insecure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from mesh.catalog import Catalog, Change, Digest
from mesh.codec import CodecError, digest_from_pb
from mesh.limits import PUSH_PULL_RATE, SWIM_RATE, TokenBuckets
from mesh.model import ServiceKey, is_dns_label
from mesh.peers import PeerTable, valid_host_port
from mesh.record_codec import ChunkError, ChunkOpener, Publisher, chunk_to_pb
from mesh.records import (
    DEFAULT_CHUNK_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    OriginLog,
    OutChunk,
    RecordStore,
)
from mesh.ring_lists import Lists
from mesh.seal import StateSeal

if TYPE_CHECKING:
    from mesh.membership import SwimPump
from mesh.tls import RingTls
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc

log = logging.getLogger("meshd.ring")

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ROUNDS = 64  # exchanges in a row with one peer while either side has more
EXPIRY_CHECK_S = 30.0  # how often tombstones are looked at for expiry


@dataclass(slots=True)
class RingStats:
    """Plain counters, read by the metrics adapter at scrape time."""

    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # (direction, outcome)
    bytes: dict[str, int] = field(default_factory=dict)  # direction
    rejected: dict[str, int] = field(default_factory=dict)  # kind -> items dropped
    largest: dict[str, int] = field(default_factory=dict)  # direction -> largest message
    last_merge: float | None = None  # loop time of the last record taken from a peer

    def count(self, direction: str, outcome: str, size: int) -> None:
        key = (direction, outcome)
        self.messages[key] = self.messages.get(key, 0) + 1
        self.bytes[direction] = self.bytes.get(direction, 0) + size
        self.largest[direction] = max(self.largest.get(direction, 0), size)

    def reject(self, kind: str, count: int = 1) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + count


class Ring(pb_grpc.GossipServicer):
    def __init__(
        self,
        catalog: Catalog,
        peers: PeerTable,
        on_change: Callable[[Change], None],
        store: RecordStore | None = None,
        publisher: Publisher | None = None,
        *,
        rpc_timeout_s: float = 1.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        tls: RingTls | None = None,
        seal: StateSeal | None = None,
    ) -> None:
        self.catalog = catalog
        self.peers = peers
        self.on_change = on_change
        if store is None or publisher is None:  # a ring of its own (tests, tools)
            local = catalog.local
            store = RecordStore(OriginLog(local.cluster_id, local.replica, local.generation))
            publisher = Publisher(store.local, None if seal is None else seal.signer)
            everything = Change(local.cluster_id, frozenset(local.services), cluster=True)
            publisher.publish(local, everything, 0.0)
        self.store = store
        self.publisher = publisher
        self.rpc_timeout_s = rpc_timeout_s
        self.max_message_bytes = max_message_bytes
        self.chunk_bytes = min(chunk_bytes, max_message_bytes // 2)
        self.stats = RingStats()
        self.exchanged_once = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.tls = tls  # None: plaintext (--insecure)
        self.seal = seal  # None: records travel unsigned (--insecure)
        self.opener = ChunkOpener(None if seal is None else seal.trust)
        self.swim: SwimPump | None = None  # set by the agent once membership runs
        self._their_digests: dict[str, list[Digest]] = {}  # peer address -> what it held
        self._their_hashes: dict[str, tuple[bytes, bytes]] = {}  # its (digests, members) hashes
        self._lists_cache: tuple[list[Digest], list[tuple[str, str, str]], Lists] | None = None
        self._nudged = asyncio.Event()
        self.swim_timeout_s = 0.5
        self.push_pull_limit = TokenBuckets(PUSH_PULL_RATE)
        self.swim_limit = TokenBuckets(SWIM_RATE)
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

    async def _admit(
        self, context: grpc.aio.ServicerContext[object, object], limit: TokenBuckets, now: float
    ) -> str:
        """The caller's cluster id (TLS; "" without), after the TLS and rate checks. Rate
        limits are per cluster with TLS; without, per connection (agents on one host share
        its address, and an --insecure ring has no identities to go by anyway)."""
        caller, key = "", context.peer()
        if self.tls is not None:
            refused, caller = self.tls.admit(context)
            if refused is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            key = caller
        if not limit.allow(key, now):
            self.stats.reject("rate_limited")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many messages")
        return caller

    async def PushPull(  # noqa: N802 (the generated servicer's name)
        self,
        request: pb.PushPullRequest,
        context: grpc.aio.ServicerContext[pb.PushPullRequest, pb.PushPullResponse],
    ) -> pb.PushPullResponse:
        now = asyncio.get_running_loop().time()
        caller = await self._admit(context, self.push_pull_limit, now)
        self.stats.count("received", "ok", request.ByteSize())
        sender = request.sender
        if caller and sender.cluster_id != caller:
            self.stats.reject("identity")
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the certificate is cluster {caller}'s, the message says {sender.cluster_id!r}",
            )
        if _valid_member(sender):
            self.peers.succeeded(sender.address, sender.cluster_id, now, sender.replica)
        self._absorb(request.members, request, now)
        mine = self._lists(now)
        digests: list[Digest] | None = None
        if request.digests:
            try:
                digests = [digest_from_pb(d) for d in request.digests]
            except CodecError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        elif request.digests_hash == mine.digests_hash:
            digests = mine.digests  # it holds what we hold: nothing to send
        # Otherwise we cannot tell what it lacks: our digests go back, and it asks again.
        chunks, more = (
            ([], True) if digests is None else self.store.select(digests, self.chunk_bytes)
        )
        reply = pb.PushPullResponse(
            responder=self._me(),
            chunks=[chunk_to_pb(c, self._clusterset) for c in chunks],
            more=more,
        )
        mine.put(reply, request.digests_hash, request.members_hash)
        self.stats.count("sent", "ok", reply.ByteSize())
        return reply

    async def Swim(  # noqa: N802 (the generated servicer's name)
        self,
        request: pb.SwimDatagram,
        context: grpc.aio.ServicerContext[pb.SwimDatagram, pb.SwimReceipt],
    ) -> pb.SwimReceipt:
        now = asyncio.get_running_loop().time()
        caller = await self._admit(context, self.swim_limit, now)
        self.stats.count("received", "swim", request.ByteSize())
        if caller and _swim_source_cluster(request) != caller:
            self.stats.reject("identity")  # a datagram signed off as another cluster's member
            return pb.SwimReceipt()
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
        next_expiry = loop.time() + EXPIRY_CHECK_S
        while True:
            now = loop.time()
            self._follow_keys()
            if now >= next_expiry:
                self.store.expire(now)
                next_expiry = now + EXPIRY_CHECK_S
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

    def _follow_keys(self) -> None:
        """New signing keys (files renewed): verify with the new trust, and start a new
        generation of our records sealed with the new key, which every peer takes as a
        reset (so no record signed by a retired key outlives it anywhere)."""
        if self.seal is None:
            return
        self.opener.trust = self.seal.trust
        signer = self.publisher.signer
        if signer is not None and signer.key.key_id == self.seal.signer.key.key_id:
            # The same key (a renewed certificate): records stay valid; peers get the new
            # certificate with the next chunk, before the old one expires.
            self.publisher.signer = self.seal.signer
            self.store.local.certificate = self.seal.signer.key.certificate_der
        elif signer is not self.seal.signer:
            generation = max(self.store.local.generation + 1, time.time_ns())
            self.publisher.republish(self.catalog.local, generation, self.seal.signer)
            self.nudge()

    async def _exchange(self, address: str) -> None:
        """Push-pull with one peer, again at once while either side had more to send."""
        for _ in range(MAX_ROUNDS):
            if not await self._round(address):
                return

    async def _round(self, address: str) -> bool:
        loop = asyncio.get_running_loop()
        theirs = self._their_digests.get(address)
        chunks: list[OutChunk]
        if theirs is None:  # first contact: learn what it holds before pushing anything
            chunks, more = [], True
        else:
            chunks, more = self.store.select(theirs, self.chunk_bytes)
        request = pb.PushPullRequest(
            sender=self._me(),
            chunks=[chunk_to_pb(c, self._clusterset) for c in chunks],
            more=more,
        )
        mine = self._lists(loop.time())
        mine.put(request, *self._their_hashes.get(address, (b"", b"")))
        stub = pb_grpc.GossipStub(self._channel(address))  # type: ignore[no-untyped-call]
        try:
            reply = await stub.PushPull(request, timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.stats.count("sent", exc.code().name.lower(), request.ByteSize())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return False  # it is alive, and asks us to slow down
            if self.tls is not None:
                self.tls.observe_failure(exc.details())
            self.peers.failed(address, loop.time())
            self._forget_lists(address)  # it may come back with nothing
            return False
        now = loop.time()
        self.stats.count("sent", "ok", request.ByteSize())
        self.stats.count("received", "ok", reply.ByteSize())
        if reply.responder.cluster_id == self.catalog.local_id and (
            reply.responder.address == self.peers.self_address
        ):
            self.peers.forget(address)  # a seed list that names this agent itself
            return False
        if is_dns_label(reply.responder.cluster_id) and _valid_replica(reply.responder.replica):
            self.peers.succeeded(address, reply.responder.cluster_id, now, reply.responder.replica)
        self._absorb(reply.members, reply, now)
        digests: list[Digest] | None
        try:
            digests = [digest_from_pb(d) for d in reply.digests]
        except CodecError:
            digests = None
        if not reply.digests and reply.digests_hash == mine.digests_hash:
            digests = mine.digests  # it held what we held when we asked
        elif not reply.digests:
            digests = None
        if digests is None:
            self._forget_lists(address)
            return False
        self._their_digests[address] = digests
        self._their_hashes[address] = (reply.digests_hash, reply.members_hash)
        self.exchanged_once.set()
        moved = digests != theirs
        pushed_or_pulled = len(request.chunks) > 0 or len(reply.chunks) > 0
        return (more or reply.more) and (pushed_or_pulled or moved)

    def _forget_lists(self, address: str) -> None:
        self._their_digests.pop(address, None)
        self._their_hashes.pop(address, None)

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

    def _lists(self, now: float) -> Lists:
        """Our digests and members for a message, encoded and hashed once for as long as
        they stay the same: a push to every peer at once would otherwise redo it per peer."""
        digests = self.store.digests()
        members = self._member_keys(now)
        cached = self._lists_cache
        if cached is not None and cached[0] == digests and cached[1] == members:
            return cached[2]
        listed = [pb.Member(cluster_id=c, address=a, replica=r) for c, a, r in members]
        lists = Lists.of(digests, listed)
        self._lists_cache = (digests, members, lists)
        return lists

    def _member_keys(self, now: float) -> list[tuple[str, str, str]]:
        """Every member we reach, and ourselves: converged agents send identical lists."""
        listed = {(c, a, r) for c, a, r in self.peers.members(now)}
        listed.add((self.catalog.local_id, self.peers.self_address, self.catalog.local.replica))
        return sorted(listed)

    @property
    def _clusterset(self) -> str:
        return "" if self.seal is None else self.seal.trust.clusterset

    def _absorb(
        self,
        members: Iterable[pb.Member],
        message: pb.PushPullRequest | pb.PushPullResponse,
        now: float,
    ) -> None:
        for m in members:
            if _valid_member(m):
                self.peers.learned(m.cluster_id, m.address, now, m.replica)
            else:
                self.stats.reject("member")
        legacy = len(message.states) + len(message.signed_states)
        if legacy:  # a meshd from before per-service records: its states cannot be used
            self.stats.reject("legacy_state", legacy)
        if sum(len(msg.records) for msg in message.chunks) > MAX_RECORDS_PER_MESSAGE:
            self.stats.reject("chunk:too_large", len(message.chunks))
            return
        wall = time.time()
        for msg in message.chunks:
            try:
                self._take_chunk(msg, now, wall)
            except Exception:  # a peer's bytes must never stop the ring: count, go on
                self.stats.reject("chunk:error")
                log.exception("records of %r from a peer could not be used", msg.cluster_id)

    def _take_chunk(self, msg: pb.OriginChunk, now: float, wall: float) -> None:
        try:
            chunk = self.opener.open(msg, wall, self.store.skip_through)
        except ChunkError as exc:
            self.stats.reject(f"chunk:{exc.reason}")
            log.debug("dropped records of %r from a peer: %s", msg.cluster_id, exc)
            return
        applied = self.store.apply(chunk, now)
        if applied.dropped:
            self.stats.reject(f"chunk:{applied.dropped}")
        if applied.taken:
            self.stats.last_merge = now
        if applied.state is not None:
            services = None if applied.everything else _services(applied.slots)
            cluster = applied.everything or None in applied.slots
            change = self.catalog.put(applied.state, services, cluster)
            if change:
                self.on_change(change)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for channel in self._channels.values():
            await channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)


def _services(slots: frozenset[ServiceKey | None]) -> frozenset[ServiceKey]:
    return frozenset(s for s in slots if s is not None)


def _swim_source_cluster(datagram: pb.SwimDatagram) -> str:
    """The cluster of the member a SWIM datagram says it comes from ("" if none)."""
    kind = datagram.WhichOneof("kind")
    if kind is None:
        return ""
    source: str = getattr(datagram, kind).source_id
    return source.split("/", 1)[0]


def _valid_replica(replica: str) -> bool:
    return not replica or is_dns_label(replica)


def _valid_member(member: pb.Member) -> bool:
    return (
        is_dns_label(member.cluster_id)
        and valid_host_port(member.address)
        and _valid_replica(member.replica)
    )
