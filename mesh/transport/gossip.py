"""The ring's state exchange: push-pull of per-service records between agents over gRPC.

The agent calls ``PushPull`` on each peer that is due (``mesh.ring.peers``: every
``interval_s``, less often on a ring too large for that): it pushes its members, its
digests (per origin: generation, progress, the last head checked, a copy's snapshot) and
the records that peer lacked at their last exchange; the callee takes what continues its
copies and answers with the records above the caller's digests, and its own digests. Each
side leaves out a list whose hash the other already reported (``mesh.wire.lists``), so an
idle exchange is small.
The rules of what is sent and taken live in ``mesh.ring.records`` (Scuttlebutt with tombstones,
resets built aside, heads checked); bytes on the wire in ``mesh.wire.record_codec``. Each
message carries at most ``chunk_bytes`` of records; when either side had more, the caller
exchanges again at once (at most ``MAX_ROUNDS`` in a row), so a large catch-up streams in
bounded messages and never meets gRPC's message limit. A message's chunks are taken a
slice at a time (``stepped``), the event loop turning between slices. A local change
``nudge``s the loop, so it reaches every peer that may be up in one round trip. Each peer's
exchange runs in a task of its own, so one slow peer (a lossy link, a cut one waiting for
the call's deadline) delays no other; the peer table hears when each attempt starts
(``attempted``), so an attempt left unanswered counts against the peer before its deadline
(``mesh.ring.peers``). The ``Swim`` RPC carries the membership protocol's datagrams
(``mesh.transport.swim``).

Peers are untrusted: a chunk that fails validation or, with TLS, its origin's signatures is
dropped whole and counted by reason; each caller is rate limited (``mesh.ring.limits``); with
TLS the server demands client certificates, refuses callers of another clusterset, and
refuses a caller whose messages claim another cluster than its certificate's (a member
cannot speak for another cluster's agents). Channels are mutual TLS, redialled when the
certificate files change; without TLS the ring is plaintext (``--insecure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc

from mesh.ring.catalog import Catalog, Change
from mesh.ring.limits import PUSH_PULL_RATE, SWIM_RATE, TokenBuckets
from mesh.ring.peers import PeerTable
from mesh.ring.records import DEFAULT_CHUNK_BYTES, OriginLog, RecordStore
from mesh.security.seal import StateSeal
from mesh.transport.listen import check_listen
from mesh.transport.tls import RingTls
from mesh.wire.exchange import Exchange, RefusedError, Steps, swim_source_cluster
from mesh.wire.record_codec import Publisher
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc

log = logging.getLogger("meshd.ring")

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ROUNDS = 64  # exchanges in a row with one peer while either side has more
# Open channels, at most: one per peer and SWIM target in use. A channel costs tens of KB,
# and every address a peer names (made up, without TLS) would otherwise keep one open
# forever; 512 covers a ring of 200 clusters with two replicas each.
MAX_CHANNELS = 512
EXPIRY_CHECK_S = 30.0  # how often tombstones are looked at for expiry
_REFUSED_CODES = {
    "identity": grpc.StatusCode.PERMISSION_DENIED,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
}


_T = TypeVar("_T")


async def stepped(steps: Steps[_T]) -> _T:
    """Run ``steps`` (``mesh.wire.exchange``), letting the event loop turn between them."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)


class SwimReceiver(Protocol):
    """Where the ``Swim`` RPC delivers datagrams (``mesh.transport.swim.SwimPump``)."""

    def receive(self, datagram: pb.SwimDatagram, peer: str) -> None: ...


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
        if store is None or publisher is None:  # a ring of its own (tests, tools)
            local = catalog.local
            store = RecordStore(OriginLog(local.cluster_id, local.replica, local.generation))
            publisher = Publisher(store.local, None if seal is None else seal.signer)
            everything = Change(local.cluster_id, frozenset(local.services), cluster=True)
            publisher.publish(local, everything, 0.0)
        self.exchange = Exchange(
            catalog,
            peers,
            on_change,
            store,
            publisher,
            seal,
            min(chunk_bytes, max_message_bytes // 2),
        )
        self.catalog, self.peers, self.store, self.publisher = catalog, peers, store, publisher
        self.stats = self.exchange.stats
        self.rpc_timeout_s = rpc_timeout_s
        self.max_message_bytes = max_message_bytes
        self.exchanged_once = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        # Each channel's stub, made once (a stub builds a callable per method): by address,
        # with the channel it was made for; dropped with the channel.
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.GossipStub]] = {}
        self.tls = tls  # None: plaintext (--insecure)
        self.seal = seal  # None: records travel unsigned (--insecure)
        self.swim: SwimReceiver | None = None  # set by the agent once membership runs
        self._nudged = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}  # address -> its exchange
        self._again: set[str] = set()  # nudged while their exchange ran: once more
        self._crashed: BaseException | None = None  # what ended an exchange task, if not rpc
        self._stopping = False
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

    @property
    def chunk_bytes(self) -> int:
        """Most bytes of records one message carries (``mesh.wire.exchange``)."""
        return self.exchange.chunk_bytes

    @chunk_bytes.setter
    def chunk_bytes(self, value: int) -> None:
        self.exchange.chunk_bytes = value

    # --- server side -------------------------------------------------------------------

    async def start(self, listen: str) -> int:
        """Bind the gossip server; returns the bound port (for port 0)."""
        tls_options = self.tls.server_options() if self.tls is not None else []
        # No SO_REUSEPORT (gRPC's default): a second agent on this port must fail to bind,
        # not take half of the peers' connections (mesh.transport.listen).
        server_options = [*self._options, ("grpc.so_reuseport", 0), *tls_options]
        check_listen(listen, "gossip")
        self._server = grpc.aio.server(options=server_options)
        pb_grpc.add_GossipServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        try:
            if self.tls is not None:
                port = int(self._server.add_secure_port(listen, self.tls.server_credentials()))
            else:
                port = int(self._server.add_insecure_port(listen))
        except RuntimeError:  # gRPC's "Failed to bind to address"
            port = 0
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
        try:
            return await stepped(self.exchange.answer_steps(request, caller, now, time.time()))
        except RefusedError as exc:
            code = _REFUSED_CODES[exc.kind]
            await context.abort(code, str(exc))
            raise  # abort raises; this line is for the type checker

    async def Swim(  # noqa: N802 (the generated servicer's name)
        self,
        request: pb.SwimDatagram,
        context: grpc.aio.ServicerContext[pb.SwimDatagram, pb.SwimReceipt],
    ) -> pb.SwimReceipt:
        now = asyncio.get_running_loop().time()
        caller = await self._admit(context, self.swim_limit, now)
        self.stats.count("received", "swim", request.ByteSize())
        if caller and swim_source_cluster(request) != caller:
            self.stats.reject("identity")  # a datagram signed off as another cluster's member
            return pb.SwimReceipt()
        if self.swim is not None:
            self.swim.receive(request, context.peer())
        return pb.SwimReceipt()

    async def send_swim(self, address: str, datagram: pb.SwimDatagram) -> bool:
        """One SWIM datagram; False when it could not be delivered (a lost datagram)."""
        stub = self._stub(address)
        try:
            await stub.Swim(datagram, timeout=self.swim_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.stats.count("sent", f"swim_{exc.code().name.lower()}", datagram.ByteSize())
            return False
        self.stats.count("sent", "swim", datagram.ByteSize())
        return True

    # --- client side -------------------------------------------------------------------

    async def run(self, interval_s: float) -> None:
        """Exchange with every due peer, forever; at once with every peer that may be up
        (``PeerTable.push_targets``) when ``nudge`` says this agent's own state changed (a
        change spreads in one round trip, whatever the rate of rounds).

        Each peer's exchange runs on its own: a peer behind a lossy or cut link (whose call
        waits for its deadline) never holds back the rounds with the others, so the
        evidence that they are up keeps coming on time. A peer is never exchanged with twice
        at once; one nudged while its exchange runs is exchanged with again right after."""
        loop = asyncio.get_running_loop()
        next_expiry = loop.time() + EXPIRY_CHECK_S
        try:
            while True:
                now = loop.time()
                if self.exchange.follow_keys(time.time_ns()):
                    self.nudge()
                if now >= next_expiry:
                    self.store.expire(now)
                    next_expiry = now + EXPIRY_CHECK_S
                for address in sorted(self.peers.due(now)):
                    self._start_exchange(address, again=False)
                if self._nudged.is_set():
                    self._nudged.clear()
                    for address in self.peers.push_targets(now):
                        self._start_exchange(address, again=True)
                if self._crashed is not None:
                    raise self._crashed  # a bug in an exchange ends the ring, as it did inline
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval_s):  # cancellable (see SwimPump.run)
                        await self._nudged.wait()
        finally:
            self._again.clear()
            self._stopping = True
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def nudge(self) -> None:
        """Our own state changed: push it now rather than at the next round."""
        self._nudged.set()

    def _start_exchange(self, address: str, *, again: bool) -> None:
        """Exchange with ``address`` in a task of its own; if one runs already, once more
        when it ends (``again``: it may have left before our news) or not at all (due)."""
        if address in self._running:
            if again:
                self._again.add(address)
            return
        task = asyncio.get_running_loop().create_task(self._exchange(address))
        self._running[address] = task
        task.add_done_callback(functools.partial(self._exchange_done, address))

    def _exchange_done(self, address: str, task: asyncio.Task[None]) -> None:
        self._running.pop(address, None)
        if not task.cancelled() and task.exception() is not None:
            self._crashed = task.exception()
            self._nudged.set()  # wake ``run`` to raise it
        elif address in self._again and not self._stopping:
            self._again.discard(address)
            self._start_exchange(address, again=False)

    async def _exchange(self, address: str) -> None:
        """Push-pull with one peer, again at once while either side had more to send."""
        for _ in range(MAX_ROUNDS):
            if not await self._round(address):
                return

    async def _round(self, address: str) -> bool:
        loop = asyncio.get_running_loop()
        self.peers.attempted(address, loop.time())
        sent = self.exchange.request_for(address, loop.time())
        stub = self._stub(address)
        try:
            reply = await stub.PushPull(sent.request, timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.stats.count("sent", exc.code().name.lower(), sent.request.ByteSize())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return False  # it is alive, and asks us to slow down
            if self.tls is not None:
                self.tls.observe_failure(exc.details())
            self.exchange.failed(address, loop.time())
            return False
        again = await stepped(self.exchange.take_reply_steps(sent, reply, loop.time(), time.time()))
        if self.exchange.knows(address):
            self.exchanged_once.set()
        return again

    def _stub(self, address: str) -> pb_grpc.GossipStub:
        channel = self._channel(address)
        held = self._stubs.get(address)
        if held is None or held[0] is not channel:
            held = (channel, pb_grpc.GossipStub(channel))  # type: ignore[no-untyped-call]
            self._stubs[address] = held
        return held[1]

    def _channel(self, address: str) -> grpc.aio.Channel:
        if self.tls is not None:
            return self._tls_channel(address, self.tls)
        channel = self._channels.pop(address, None)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
        return self._keep(address, channel)

    def _keep(self, address: str, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """``channel`` as the most recently used; past ``MAX_CHANNELS`` the least recently
        used one is closed (a later call to its address dials again)."""
        self._channels[address] = channel
        while len(self._channels) > MAX_CHANNELS:
            oldest = next(iter(self._channels))
            self._retire(self._channels.pop(oldest))
            self._stubs.pop(oldest, None)
        return channel

    def _retire(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(channel.close(grace=1.0))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _tls_channel(self, address: str, tls: RingTls) -> grpc.aio.Channel:
        creds, options, generation = tls.channel_security()
        if generation != self._tls_generation:  # the certificate files changed: redial
            self._tls_generation = generation
            for old in self._channels.values():
                self._retire(old)
            self._channels.clear()
            self._stubs.clear()
        channel = self._channels.pop(address, None)
        if channel is None:
            channel = grpc.aio.secure_channel(address, creds, options=self._options + options)
        return self._keep(address, channel)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for channel in self._channels.values():
            await channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)
