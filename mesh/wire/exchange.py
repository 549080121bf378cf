"""One agent's side of the ring's push-pull, as messages: what to send a peer and what to
take from one. ``mesh.transport.gossip`` carries these messages over gRPC; this module does
no IO, so a whole exchange can be driven in a test with two instances and no sockets.

A round (``request_for``, then ``take_reply``; ``answer`` on the callee) pushes our
members, our digests (per origin: generation, progress, the last head checked, a copy's
snapshot) and the records the peer lacked at our last exchange; the callee takes what
continues its copies and answers with the records above our digests, and its own digests.
Each side leaves out a list whose hash the other already reported (``mesh.wire.lists``),
so an idle exchange is small. The rules of what is sent and taken live in
``mesh.ring.records``; the bytes of records in ``mesh.wire.record_codec``.

Taking a peer's chunks is done in steps: ``answer_steps`` and ``take_reply_steps`` are
generators that yield after each slice of a chunk (``mesh.wire.chunk_slices``: a few
hundred records, each slice a valid chunk applied whole), so the gRPC adapter lets the
event loop turn between slices and no step holds it for long; ``answer`` and
``take_reply`` run the same steps at once (tests, tools).

Peers are untrusted: a member that is not a valid address is dropped, a chunk that fails
validation or its origin's signatures is dropped whole, each counted by reason in
``RingStats``; a message that claims another cluster than its caller's certificate is
refused (``RefusedError``). Nothing a peer sends raises out of here except ``RefusedError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mesh.address import valid_host_port
from mesh.model import MAX_AGENTS, ServiceKey, is_dns_label
from mesh.ring.catalog import Catalog, Change, Digest
from mesh.ring.peers import PeerTable
from mesh.ring.records import MAX_RECORDS_PER_MESSAGE, OutChunk, RecordStore
from mesh.security.seal import StateSeal
from mesh.wire.chunk_slices import slices
from mesh.wire.codec import CodecError, digest_from_pb
from mesh.wire.lists import Lists
from mesh.wire.record_codec import ChunkError, ChunkOpener, Publisher, chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb

log = logging.getLogger("meshd.ring")
_T = TypeVar("_T")
Steps = Generator[None, None, _T]  # yields where the event loop may turn; returns the result


def finish(steps: Steps[_T]) -> _T:
    """Run ``steps`` to the end at once; their result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


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


class RefusedError(Exception):
    """A message the callee will not take: ``kind`` is ``identity`` (it claims another
    cluster than its caller's certificate) or ``invalid`` (undecodable digests)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Round:
    """A request on its way to one peer, with what is needed to read its reply."""

    address: str
    request: pb.PushPullRequest
    more: bool
    mine: Lists
    theirs: list[Digest] | None


class Exchange:
    def __init__(
        self,
        catalog: Catalog,
        peers: PeerTable,
        on_change: Callable[[Change], None],
        store: RecordStore,
        publisher: Publisher,
        seal: StateSeal | None,
        chunk_bytes: int,
    ) -> None:
        self.catalog = catalog
        self.peers = peers
        self.on_change = on_change
        self.store = store
        self.publisher = publisher
        self.seal = seal  # None: records travel unsigned (--insecure)
        self.chunk_bytes = chunk_bytes
        self.stats = RingStats()
        self.opener = ChunkOpener(None if seal is None else seal.trust)
        self._their_digests: dict[str, list[Digest]] = {}  # peer address -> what it held
        self._their_hashes: dict[str, tuple[bytes, bytes]] = {}  # its (digests, members) hashes
        self._lists_cache: tuple[list[Digest], list[tuple[str, str, str]], Lists] | None = None

    # --- the callee ----------------------------------------------------------------------

    def answer(
        self, request: pb.PushPullRequest, caller: str, now: float, wall: float
    ) -> pb.PushPullResponse:
        """``answer_steps`` at once."""
        return finish(self.answer_steps(request, caller, now, wall))

    def answer_steps(
        self, request: pb.PushPullRequest, caller: str, now: float, wall: float
    ) -> Steps[pb.PushPullResponse]:
        """Take a peer's push and answer its pull; ``caller`` is its certificate's cluster
        ("" without TLS); ``wall`` is epoch seconds, for certificate validity. Raises
        ``RefusedError`` for a message it will not take."""
        self.stats.count("received", "ok", request.ByteSize())
        sender = request.sender
        if caller and sender.cluster_id != caller:
            self.stats.reject("identity")
            raise RefusedError(
                "identity",
                f"the certificate is cluster {caller}'s, the message says {sender.cluster_id!r}",
            )
        if _valid_member(sender):
            self.peers.succeeded(sender.address, sender.cluster_id, now, sender.replica)
        # The caller's certificate names the sender's cluster (checked above): its chunks of
        # its own records are its word (mesh.ring.records). Without TLS, it says so.
        yield from self._absorb(request.members, request, now, wall, _origin(sender))
        mine = self._lists(now)
        digests: list[Digest] | None = None
        if request.digests:
            try:
                digests = self._digests(request.digests)
            except CodecError as exc:
                raise RefusedError("invalid", str(exc)) from None
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

    # --- the caller ----------------------------------------------------------------------

    def request_for(self, address: str, now: float) -> Round:
        """The next push-pull request to ``address``."""
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
        mine = self._lists(now)
        mine.put(request, *self._their_hashes.get(address, (b"", b"")))
        return Round(address, request, more, mine, theirs)

    def failed(self, address: str, now: float) -> None:
        """The request did not reach the peer, or was not answered."""
        self.peers.failed(address, now)
        self._forget_lists(address)  # it may come back with nothing

    def take_reply(self, sent: Round, reply: pb.PushPullResponse, now: float, wall: float) -> bool:
        """``take_reply_steps`` at once."""
        return finish(self.take_reply_steps(sent, reply, now, wall))

    def take_reply_steps(
        self, sent: Round, reply: pb.PushPullResponse, now: float, wall: float
    ) -> Steps[bool]:
        """Take a peer's answer; True when another round should follow at once (either side
        had more, and this round moved something)."""
        address, request, mine = sent.address, sent.request, sent.mine
        self.stats.count("sent", "ok", request.ByteSize())
        self.stats.count("received", "ok", reply.ByteSize())
        if reply.responder.cluster_id == self.catalog.local_id and (
            reply.responder.address == self.peers.self_address
        ):
            self.peers.forget(address)  # a seed list that names this agent itself
            return False
        if is_dns_label(reply.responder.cluster_id) and _valid_replica(reply.responder.replica):
            self.peers.succeeded(address, reply.responder.cluster_id, now, reply.responder.replica)
        # A server's certificate is not checked against the cluster it answers for, so with
        # TLS its chunks are a relay's; without TLS nothing is checked anyway.
        speaker = _origin(reply.responder) if self.seal is None else None
        yield from self._absorb(reply.members, reply, now, wall, speaker)
        digests: list[Digest] | None
        try:
            digests = self._digests(reply.digests)
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
        if len(self._their_digests) > len(self.peers.peers):  # peers forgotten since
            for gone in [a for a in self._their_digests if a not in self.peers.peers]:
                self._forget_lists(gone)
        moved = digests != sent.theirs
        pushed_or_pulled = len(request.chunks) > 0 or len(reply.chunks) > 0
        return (sent.more or reply.more) and (pushed_or_pulled or moved)

    def knows(self, address: str) -> bool:
        """We hold what ``address`` reported at its last answered exchange."""
        return address in self._their_digests

    def _forget_lists(self, address: str) -> None:
        self._their_digests.pop(address, None)
        self._their_hashes.pop(address, None)

    # --- keys ----------------------------------------------------------------------------

    def follow_keys(self, wall_ns: int) -> bool:
        """New signing keys (files renewed): verify with the new trust, and start a new
        generation of our records sealed with the new key, which every peer takes as a
        reset (so no record signed by a retired key outlives it anywhere). True when our records
        were republished (the caller pushes them at once)."""
        if self.seal is None:
            return False
        self.opener.trust = self.seal.trust
        signer = self.publisher.signer
        if signer is not None and signer.key.key_id == self.seal.signer.key.key_id:
            # The same key (a renewed certificate): records stay valid; peers get the new
            # certificate with the next chunk, before the old one expires.
            self.publisher.signer = self.seal.signer
            self.store.local.certificate = self.seal.signer.key.certificate_der
        elif signer is not self.seal.signer:
            generation = max(self.store.local.generation + 1, wall_ns)
            self.publisher.republish(self.catalog.local, generation, self.seal.signer)
            return True
        return False

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
        members: Sequence[pb.Member],
        message: pb.PushPullRequest | pb.PushPullResponse,
        now: float,
        wall: float,
        speaker: tuple[str, str] | None,
    ) -> Steps[None]:
        """Take what a peer's message carries; ``speaker`` is the origin whose own word the
        message is (its chunks of that origin are ``direct``), None if nobody's."""
        self._drop_extra("member:too_many", len(members))
        for m in members[:MAX_AGENTS]:
            if not _valid_member(m):
                self.stats.reject("member")
            elif refused := self.peers.learned(m.cluster_id, m.address, now, m.replica):
                self.stats.reject(f"member:{refused}")
        legacy = len(message.states) + len(message.signed_states)
        if legacy:  # a meshd from before per-service records: its states cannot be used
            self.stats.reject("legacy_state", legacy)
        if sum(len(msg.records) for msg in message.chunks) > MAX_RECORDS_PER_MESSAGE:
            self.stats.reject("chunk:too_large", len(message.chunks))
            return
        self._drop_extra("chunk:too_many", len(message.chunks))
        for msg in message.chunks[:MAX_AGENTS]:
            direct = (msg.cluster_id, msg.replica) == speaker
            for part in slices(msg):
                try:
                    if not self._take_chunk(part, now, wall, direct):
                        break  # the rest would continue what was refused: a gap
                except Exception:  # a peer's bytes must never stop the ring: count, go on
                    self.stats.reject("chunk:error")
                    log.exception("records of %r from a peer could not be used", msg.cluster_id)
                    break
                yield

    def _take_chunk(self, msg: pb.OriginChunk, now: float, wall: float, direct: bool) -> bool:
        """Open and apply one chunk (or slice of one); False when it was dropped."""
        try:
            chunk = self.opener.open(msg, wall, self.store.skip_through, direct=direct)
        except ChunkError as exc:
            self.stats.reject(f"chunk:{exc.reason}")
            log.debug("dropped records of %r from a peer: %s", msg.cluster_id, exc)
            return False
        applied = self.store.apply(chunk, now)
        for origin in applied.forgot:  # made room for this one (mesh.ring.origin_room)
            if change := self.catalog.drop(origin):
                self.on_change(change)
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
        return not applied.dropped

    def _drop_extra(self, kind: str, count: int) -> None:
        """Items of a message past ``MAX_AGENTS`` (one per agent is all a message needs)
        are left out unread, and counted."""
        if count > MAX_AGENTS:
            self.stats.reject(kind, count - MAX_AGENTS)

    def _digests(self, items: Sequence[pb.Digest]) -> list[Digest]:
        """A peer's digests, one per origin it holds: at most ``MAX_AGENTS`` are read."""
        self._drop_extra("digest:too_many", len(items))
        return [digest_from_pb(d) for d in items[:MAX_AGENTS]]


def _services(slots: frozenset[ServiceKey | None]) -> frozenset[ServiceKey]:
    return frozenset(s for s in slots if s is not None)


def swim_source_cluster(datagram: pb.SwimDatagram) -> str:
    """The cluster of the member a SWIM datagram says it comes from ("" if none)."""
    kind = datagram.WhichOneof("kind")
    if kind is None:
        return ""
    source: str = getattr(datagram, kind).source_id
    return source.split("/", 1)[0]


def _origin(member: pb.Member) -> tuple[str, str]:
    return (member.cluster_id, member.replica)


def _valid_replica(replica: str) -> bool:
    return not replica or is_dns_label(replica)


def _valid_member(member: pb.Member) -> bool:
    return (
        is_dns_label(member.cluster_id)
        and valid_host_port(member.address)
        and _valid_replica(member.replica)
    )
