"""Inputs for fuzzing the gossip decoders (tests/unit/test_fuzz_gossip.py, bench/fuzz_bench.py).

``message(cls)`` draws any well-typed protobuf message of the gossip protocol, built from
its descriptor: every field set or not, strings and numbers both plausible (labels,
``host:port``, small versions, so that input gets past the first checks and into the
cores) and arbitrary (any text, 64-bit extremes, NaN), nested records and heads sometimes
whole and consistent with their chunk, sometimes any bytes. ``coherent_chunk`` draws an
``OriginChunk`` that follows the protocol's shape (ascending versions of one origin), so
that the record store's rules get exercised, not just the chunk opener's checks.

``variants(data)`` is what STYLE.md asks of every decoder's input: the whole bytes, the
bytes cut after every byte (the prefixes a split delivery would show), and the bytes with
trailing junk.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import strategies as st

from mesh.model import MAX_AGENTS, MAX_CLUSTERS
from mesh.security.signing import Trust
from mesh.security.swim_claims import SwimAuth
from mesh.swim.config import Config
from mesh.swim.membership import Membership
from mesh.swim.messages import Alive, Gossip, Member, PushPull
from mesh.wire.codec import CodecError, digest_from_pb, service_from_pb
from mesh.wire.exchange import RefusedError
from mesh.wire.record_codec import ChunkError, ChunkOpener, chunk_to_pb
from mesh.wire.swim_codec import from_pb, to_pb, trim
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.exchange_kit import WALL, Agent, exchange

LABELS = ["east", "west", "south", "x", "a", "shop", "db", "web", "fake-1"]
ADDRESSES = ["10.0.0.1:7946", "10.0.0.2:7946", "127.0.0.1:9", "[fd00::1]:7946"]
IPS = ["10.1.0.1", "10.2.0.7", "fd00::7", "0.0.0.0"]
U64 = 2**64 - 1

any_text = st.text(max_size=24)
labels = st.one_of(st.sampled_from(LABELS), any_text)
ids = st.one_of(st.builds(lambda c, r: f"{c}/{r}", st.sampled_from(LABELS), labels), labels)
addresses = st.one_of(st.sampled_from(ADDRESSES), any_text)
small = st.one_of(st.integers(0, 8), st.integers(0, U64))

_T = FieldDescriptor
_NAMED: dict[str, st.SearchStrategy[Any]] = {
    "cluster_id": labels,
    "replica": labels,
    "namespace": labels,
    "name": labels,
    "region": labels,
    "zone": labels,
    "hostname": labels,
    "namespaces": labels,
    "clusterset": st.sampled_from(["", "prod"]),
    "id": ids,
    "member_id": ids,
    "source_id": ids,
    "target_id": ids,
    "address": addresses,
    "source_address": addresses,
    "target_address": addresses,
    "addresses": st.one_of(st.sampled_from(IPS), any_text),
    "protocol": st.sampled_from(["TCP", "UDP", "SCTP", "", "tcp", "ICMP"]),
    "set_hash": st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40)),
    "head_hash": st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=12)),
    "proof": st.binary(max_size=140),
}


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    named = _NAMED.get(field.name)
    if named is not None:
        return named
    kind = field.type
    if kind == _T.TYPE_STRING:
        return any_text
    if kind == _T.TYPE_BYTES:
        return st.binary(max_size=48)
    if kind == _T.TYPE_BOOL:
        return st.booleans()
    if kind == _T.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == _T.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(0, 99))
    if kind == _T.TYPE_UINT32:
        return st.integers(0, 2**32 - 1)
    return small  # uint64


@st.composite
def message(draw: st.DrawFn, cls: type[Any], depth: int = 0) -> Any:
    """Any well-typed ``cls`` (a generated message class of ``mesh.wire.v1``)."""
    descriptor = cls.DESCRIPTOR
    chosen_oneofs = {
        o.name: draw(st.sampled_from([None, *(f.name for f in o.fields)]))
        for o in descriptor.oneofs
    }
    values: dict[str, Any] = {}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneofs[oneof.name] != field.name:
            continue
        if oneof is None and not draw(st.booleans()):
            continue  # unset
        values[field.name] = draw(_field(cls, field, depth))
    return cls(**values)


def _field(cls: type[Any], field: Any, depth: int) -> st.SearchStrategy[Any]:
    if field.type == _T.TYPE_MESSAGE:
        inner = getattr(pb, field.message_type.name)
        one: st.SearchStrategy[Any] = message(inner, depth + 1) if depth < 4 else st.just(inner())
    elif cls is pb.OriginChunk and field.name == "records":
        one = st.one_of(sealed(pb.Record), st.binary(max_size=48))
    elif cls is pb.OriginChunk and field.name == "head":
        one = st.one_of(sealed(pb.Head), st.binary(max_size=48))
    elif cls is pb.Sealed and field.name == "body":
        one = st.one_of(_serialized(pb.Record), _serialized(pb.Head), st.binary(max_size=48))
    else:
        one = _scalar(field)
    if field.is_repeated:
        return st.lists(one, max_size=3)
    return one


def _serialized(cls: type[Any]) -> st.SearchStrategy[bytes]:
    return message(cls, 3).map(lambda m: m.SerializeToString())


def sealed(cls: type[Any]) -> st.SearchStrategy[bytes]:
    """A ``Sealed`` around any ``cls`` (unsigned, or with any signature)."""
    return st.builds(
        lambda body, signature: pb.Sealed(body=body, signature=signature).SerializeToString(),
        _serialized(cls),
        st.one_of(st.just(b""), st.binary(max_size=80)),
    )


@st.composite
def coherent_chunk(draw: st.DrawFn) -> pb.OriginChunk:
    """A chunk shaped as the protocol sends one: ascending versions of one origin and
    generation, each record a service, a deletion or the cluster's info, maybe a head."""
    cluster = draw(st.sampled_from(["x", "south", "fake-1"]))
    replica = draw(st.sampled_from(["", "a"]))
    generation = draw(st.integers(1, 4))
    start = draw(st.sampled_from([0, 0, 0, 1, 3]))
    count = draw(st.integers(0, 4))
    records = []
    for version in range(start + 1, start + 1 + count):
        record = pb.Record(cluster_id=cluster, replica=replica, generation=generation)
        record.version = version
        body = draw(st.sampled_from(["service", "deleted", "info"]))
        name = draw(st.sampled_from(["db", "web", "cart", "db", "Bad_Name"]))
        if body == "service":
            endpoint = pb.Endpoint(addresses=[draw(st.sampled_from(IPS))], ready=True)
            record.service.CopyFrom(pb.Service(namespace="shop", name=name, endpoints=[endpoint]))
        elif body == "deleted":
            record.deleted.CopyFrom(pb.ServiceRef(namespace="shop", name=name))
        else:
            record.info.CopyFrom(pb.ClusterInfo(region="us", namespaces=["shop"]))
        records.append(pb.Sealed(body=record.SerializeToString()).SerializeToString())
    chunk = pb.OriginChunk(
        cluster_id=cluster,
        replica=replica,
        generation=generation,
        from_version=start,
        reset=draw(st.booleans()),
        records=records,
        target=draw(st.integers(0, 9)),
    )
    if draw(st.booleans()):
        head = pb.Head(cluster_id=cluster, replica=replica, generation=generation)
        head.version = start + count + draw(st.integers(0, 2))
        head.live = draw(st.integers(0, 5))
        head.set_hash = draw(st.binary(min_size=32, max_size=32))
        chunk.head = pb.Sealed(body=head.SerializeToString()).SerializeToString()
    return chunk


@st.composite
def stream(draw: st.DrawFn) -> list[pb.OriginChunk]:
    """A real origin's chunks (a reset in several messages, then a delta), each kept as it
    is or bent: another generation, version or snapshot, the reset flag flipped, the head
    or a record dropped, or sent twice; as a relay that lies, loses or replays would."""
    from tests.unit.records_kit import KEYS, Node, service  # (the kit imports hypothesis-free)

    origin = Node(draw(st.sampled_from(["x", "south"])), generation=draw(st.integers(1, 3)))
    count = draw(st.integers(1, 12))
    origin.export({k: service(k, f"10.0.{i}.1") for i, k in enumerate(KEYS[:count])})
    budget = draw(st.sampled_from([150, 300, 1 << 20]))
    out = [chunk_to_pb(c, "") for c in origin.store.select(None, budget)[0]]
    held = origin.store.digests()
    origin.export({k: service(k, f"10.9.{i}.1") for i, k in enumerate(KEYS[: count // 2])})
    out += [chunk_to_pb(c, "") for c in origin.store.select(held, budget)[0]]
    bent = []
    for chunk in out:
        how = draw(st.sampled_from(["as is"] * 4 + ["generation", "version", "target", "reset",
                                                      "head", "record", "twice"]))  # fmt: skip
        if how == "generation":
            chunk.generation = max(0, chunk.generation + draw(st.sampled_from([-1, 1, 50])))
        elif how == "version":
            chunk.from_version = max(0, chunk.from_version + draw(st.sampled_from([-1, 1, 5])))
        elif how == "target":
            chunk.target += draw(st.sampled_from([1, 7]))
        elif how == "reset":
            chunk.reset = not chunk.reset
        elif how == "head":
            chunk.head = b""
        elif how == "record" and chunk.records:
            del chunk.records[draw(st.integers(0, len(chunk.records) - 1))]
        elif how == "twice":
            bent.append(chunk)
        bent.append(chunk)
    return bent


def variants(
    data: bytes, junk: bytes = b"\x0a\xff\x00junk", max_cuts: int | None = None
) -> Iterator[bytes]:
    """The whole input, every prefix of it (cut after each byte; past ``max_cuts`` bytes,
    after every n-th byte and the last few), and it with trailing junk."""
    yield data
    step = 1 if max_cuts is None else max(1, len(data) // max_cuts)
    cuts = set(range(0, len(data), step)) | set(range(max(0, len(data) - 8), len(data)))
    for cut in sorted(cuts):
        yield data[:cut]
    yield data + junk


# --- the properties -------------------------------------------------------------------------


def parsed(cls: type[Any], data: bytes) -> Any | None:
    """``data`` as gRPC would hand it over, or None where gRPC drops it (cannot parse)."""
    try:
        return cls.FromString(data)
    except DecodeError:
        return None


def check_swim(datagrams: list[pb.SwimDatagram], auth: SwimAuth | None = None) -> None:
    """Every datagram, whole, cut and with junk, through the pump's path: trimmed, decoded
    (``CodecError`` is the only error), admitted (with TLS), taken by a SWIM core; the core
    stays within its bounds, and a genuine member's word is taken afterwards."""
    config = Config.fast()
    m = Membership(config, Member("east/0", "east", "10.0.0.1:7946"), random.Random(0))
    m.start(0.0)
    now = 0.0
    for datagram in datagrams:
        for data in variants(datagram.SerializeToString()):
            got = parsed(pb.SwimDatagram, data)
            if got is None:
                continue
            trim(got)
            try:
                decoded = from_pb(got)
            except CodecError:
                continue
            if auth is not None:
                certificates = got.push_pull.certificates if isinstance(decoded, PushPull) else ()
                decoded = auth.admit(decoded, certificates, WALL)
            now += 0.01
            m.receive(decoded, "10.0.0.9:7946", now)
            m.handle_timer(now)
            for _address, out in m.messages_to_send(now):
                to_pb(out).SerializeToString()  # whatever it says, it can say it
            while m.next_event() is not None:
                pass
    members = m.members.values()
    assert len(m.members) <= config.max_members
    assert len({x.cluster_id for x in members}) <= config.max_clusters
    assert len(m._relays) <= config.max_relays
    genuine = Alive("genuine/0", "genuine", "10.0.7.7:7946", 3)
    m.receive(Gossip("genuine/0", (genuine,)), "10.0.7.7:7946", now + 1.0)
    assert m.members["genuine/0"].incarnation == 3


def check_chunks(chunks: list[pb.OriginChunk], trust: Trust | None = None) -> None:
    """Every chunk, whole, cut and with junk, and with each record's bytes cut and with
    junk, opened: a ``Chunk`` or a ``ChunkError``, nothing else."""
    opener = ChunkOpener(trust)
    for chunk in chunks:
        for data in variants(chunk.SerializeToString()):
            got = parsed(pb.OriginChunk, data)
            if got is not None:
                _open(opener, got)
        for i, record in enumerate(chunk.records):
            for cut in variants(record, max_cuts=64):
                mangled = pb.OriginChunk()
                mangled.CopyFrom(chunk)
                mangled.records[i] = cut
                _open(opener, mangled)


def _open(opener: ChunkOpener, chunk: pb.OriginChunk) -> None:
    with contextlib.suppress(ChunkError):
        opener.open(chunk, WALL)


def check_exchange(
    requests: list[pb.PushPullRequest],
    replies: list[pb.PushPullResponse],
    streams: Sequence[list[pb.OriginChunk]] = (),
) -> None:
    """A real ``Exchange`` (record store, catalog, peer table) takes ``streams`` (each chunk
    in a request from a relay or from its origin), then answers every request and takes
    every reply, whole, cut and with junk: ``RefusedError`` is the only error, no chunk
    ever raises inside (``chunk:error``), every table stays within its bounds, and a
    genuine peer is still heard and its records taken afterwards."""
    east = Agent("east", "10.0.0.1:7946")
    now = 1.0
    for chunks in streams:
        for i, chunk in enumerate(chunks):
            sender = pb.Member(cluster_id="relay", address="10.0.0.5:7946")
            if i % 2:  # every other one as its origin's own word
                sender = pb.Member(cluster_id=chunk.cluster_id, address="10.0.0.6:7946")
            request = pb.PushPullRequest(sender=sender, chunks=[chunk])
            now += 0.01
            with contextlib.suppress(RefusedError):
                east.exchange.answer(request, "", now, WALL)
    for request in requests:
        for data in variants(request.SerializeToString(), max_cuts=128):
            got = parsed(pb.PushPullRequest, data)
            if got is not None:
                now += 0.01
                with contextlib.suppress(RefusedError):
                    east.exchange.answer(got, "", now, WALL)
    for reply in replies:
        for data in variants(reply.SerializeToString(), max_cuts=128):
            got = parsed(pb.PushPullResponse, data)
            if got is not None:
                now += 0.01
                sent = east.exchange.request_for("10.0.0.9:7946", now)
                east.exchange.take_reply(sent, got, now, WALL)
    assert "chunk:error" not in east.exchange.stats.rejected
    assert len(east.peers.peers) <= MAX_AGENTS
    assert len(east.store.logs) + len(east.store.pending) <= 2 * MAX_AGENTS
    assert len({o[0] for o in east.store.logs}) <= MAX_CLUSTERS
    assert len(east.catalog.states()) <= MAX_AGENTS
    west = Agent("west", "10.0.0.2:7946")
    west.export("1")
    exchange(west, east, now + 1.0)
    assert east.view("west") == west.exports()


def check_codec(digests: list[pb.Digest], services: list[pb.Service]) -> None:
    """The codec's decoders: a value or a ``CodecError``."""
    for digest in digests:
        for data in variants(digest.SerializeToString()):
            got = parsed(pb.Digest, data)
            if got is not None:
                with contextlib.suppress(CodecError):
                    digest_from_pb(got)
    for service in services:
        for data in variants(service.SerializeToString(), max_cuts=128):
            got = parsed(pb.Service, data)
            if got is not None:
                with contextlib.suppress(CodecError):
                    service_from_pb(got, "x")
