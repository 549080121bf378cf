"""Records covered by signed batches of their digests (mesh/wire/record_batch.py): one
origin signature for many records, with the same guarantees as one per record. A relay
cannot forge, alter, move or re-attribute a record; records from agents that sign each
record (an older release, or an older relay that drops batches) are still taken; and
whatever a peer does to a chunk's batches is a counted drop, never an exception."""

from __future__ import annotations

import random

import pytest

from mesh.model import ServiceKey
from mesh.wire.chunk_slices import slices
from mesh.wire.record_batch import BATCH_RECORDS, MAX_BATCH_RECORDS
from mesh.wire.record_codec import ChunkError
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import Node, service, wire
from tests.unit.test_signing import NOW, Clusterset, make_clusterset

MANY = [ServiceKey("shop", f"svc-{i}") for i in range(BATCH_RECORDS + 20)]  # two batches


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west", "south"))


def node(
    cluster: str,
    cs: Clusterset,
    *,
    per_record: bool = True,
    generation: int = 1,
    batch_records: int = BATCH_RECORDS,
) -> Node:
    return Node(
        cluster,
        generation,
        signer=cs.signers[cluster],
        trust=cs.trust(),
        clusterset=cs.name,
        per_record=per_record,
        batch_records=batch_records,
    )


def east_chunk(cs: Clusterset, *, per_record: bool, generation: int = 1) -> pb.OriginChunk:
    """East's chunk for a newcomer: the cluster record and ``MANY`` services, two batches."""
    east = node("east", cs, per_record=per_record, generation=generation)
    east.export({k: service(k, f"10.1.0.{i % 250}") for i, k in enumerate(MANY)})
    newcomer = node("south", cs)
    (chunk,) = [m for m in wire(east, newcomer)[0] if m.cluster_id == "east"]
    return chunk


def sync(src: Node, dst: Node, now: float = 0.0) -> None:
    """Rounds of ``src`` sending ``dst`` what it lacks, with certificates valid (bounded)."""
    for _ in range(100):
        messages, more = wire(src, dst)
        for message in messages:
            dst.take(message, now, wall=NOW, sender=src)
        if not more:
            return
    raise AssertionError("no convergence in 100 rounds")


def reseal(data: bytes, **fields: object) -> bytes:
    sealed = pb.Sealed.FromString(data)
    for name, value in fields.items():
        setattr(sealed, name, value)
    return bytes(sealed.SerializeToString())


def taken(chunk: pb.OriginChunk, cs: Clusterset) -> tuple[Node, list[str]]:
    south = node("south", cs)
    south.take(chunk, 0.0, wall=NOW)
    return south, south.dropped


@pytest.mark.parametrize("per_record", [True, False])
def test_records_come_with_their_batches_and_are_taken(prod: Clusterset, per_record: bool) -> None:
    chunk = east_chunk(prod, per_record=per_record)
    assert len(chunk.batches) == 2
    for data in chunk.records:
        sealed = pb.Sealed.FromString(data)
        assert sealed.batch > 0
        assert bool(sealed.signature) == per_record  # --record-signatures both | batch
    south, dropped = taken(chunk, prod)
    assert dropped == []
    assert set(south.view()["east"]) == set(MANY)


def test_records_without_signatures_are_taken_through_their_batch(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=True)
    stripped = [reseal(d, signature=b"", key_id="") for d in chunk.records]
    del chunk.records[:]
    chunk.records.extend(stripped)
    assert taken(chunk, prod)[1] == []


def test_without_its_batch_a_record_falls_back_to_its_own_signature(prod: Clusterset) -> None:
    """An older relay forwards records (with their batch field, inside the bytes) but not
    the chunk's batches: each record's own signature is checked instead."""
    chunk = east_chunk(prod, per_record=True)
    del chunk.batches[:]
    south, dropped = taken(chunk, prod)
    assert dropped == []
    assert set(south.view()["east"]) == set(MANY)


def test_records_of_an_older_origin_without_batches_mix_with_batched_ones(
    prod: Clusterset,
) -> None:
    chunk = east_chunk(prod, per_record=True)
    old = [reseal(d, batch=0) for d in chunk.records[:10]]  # as an older release seals them
    rest = list(chunk.records[10:])
    del chunk.records[:]
    chunk.records.extend(old + rest)
    assert taken(chunk, prod)[1] == []


def test_a_batch_only_record_without_its_batch_is_dropped(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=False)
    del chunk.batches[1:]
    south, dropped = taken(chunk, prod)
    assert dropped == ["missing_batch"]
    assert "east" not in south.view()


def test_an_unsigned_batch_is_dropped(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=False)
    chunk.batches[0] = reseal(chunk.batches[0], signature=b"")
    assert taken(chunk, prod)[1] == ["unsigned"]


def test_a_forged_digest_fails_the_batch_signature(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=True)
    sealed = pb.Sealed.FromString(chunk.batches[0])
    batch = pb.Batch.FromString(sealed.body)
    batch.digests = bytes(32) + batch.digests[32:]
    chunk.batches[0] = reseal(chunk.batches[0], body=batch.SerializeToString())
    assert taken(chunk, prod)[1] == ["bad_signature"]


@pytest.mark.parametrize("per_record", [True, False])
def test_an_altered_body_is_not_in_its_batch(prod: Clusterset, per_record: bool) -> None:
    chunk = east_chunk(prod, per_record=per_record)
    sealed = pb.Sealed.FromString(chunk.records[3])
    record = pb.Record.FromString(sealed.body)
    record.service.endpoints[0].addresses[0] = "10.6.6.6"
    chunk.records[3] = reseal(chunk.records[3], body=record.SerializeToString())
    south, dropped = taken(chunk, prod)
    assert dropped == ["bad_signature"]
    assert "east" not in south.view()


def test_a_record_moved_to_another_batch_is_not_covered(prod: Clusterset) -> None:
    """Its version is outside the batch it now names (the body, with its version, is what
    the digest covers, so it cannot be moved to another slot either)."""
    chunk = east_chunk(prod, per_record=False)
    second = pb.Batch.FromString(pb.Sealed.FromString(chunk.batches[1]).body).first_version
    chunk.records[0] = reseal(chunk.records[0], batch=second)
    assert taken(chunk, prod)[1] == ["bad_signature"]


def test_a_batch_of_another_origin_or_generation_is_refused(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=False)
    west = east_chunk_of(prod, "west")
    newer = east_chunk(prod, per_record=False, generation=2)
    for foreign in (west.batches[0], newer.batches[0]):
        bad = pb.OriginChunk()
        bad.CopyFrom(chunk)
        bad.batches[0] = foreign
        assert taken(bad, prod)[1] == ["cluster_mismatch"]


def east_chunk_of(cs: Clusterset, cluster: str) -> pb.OriginChunk:
    origin = node(cluster, cs, per_record=False)
    origin.export({k: service(k, "10.2.0.1") for k in MANY[:3]})
    return next(m for m in wire(origin, node("south", cs))[0] if m.cluster_id == cluster)


def test_a_relay_forwards_batches_so_a_third_agent_verifies(prod: Clusterset) -> None:
    east = node("east", prod, per_record=False)
    west, south = node("west", prod), node("south", prod)
    east.export({k: service(k, "10.1.0.1") for k in MANY})
    sync(east, west)
    relayed = [m for m in wire(west, south)[0] if m.cluster_id == "east"]
    assert relayed[0].batches  # the records need them: no record carries a signature
    sync(west, south)
    assert west.dropped == south.dropped == []
    assert south.view()["east"] == east.exports()


def test_a_batch_is_held_while_a_tombstone_refers_to_it(prod: Clusterset) -> None:
    east, west = node("east", prod, per_record=False), node("west", prod)
    east.export({k: service(k, "10.1.0.1") for k in MANY[:2]})
    sync(east, west)
    east.export({MANY[0]: service(MANY[0], "10.1.0.1")}, now=10.0)  # MANY[1]: a tombstone
    east.export({MANY[0]: service(MANY[0], "10.1.0.2")}, now=20.0)  # MANY[0] anew
    sync(east, west, now=20.0)
    log = west.store.logs[east.origin]
    tombstone = log.records[MANY[1]]
    assert not tombstone.live
    assert tombstone.batch
    held = {id(r.batch) for r in log.records.values()}
    assert id(tombstone.batch) in held
    assert west.store.expire(20.0 + 3600.0) == 1
    assert tombstone.batch not in {r.batch for r in log.records.values()}
    # What west still holds still verifies at a third agent.
    south = node("south", prod)
    sync(west, south, now=30.0)
    assert south.dropped == []
    assert south.view()["east"] == east.exports()


def test_slices_apply_like_the_whole_chunk(prod: Clusterset) -> None:
    chunk = east_chunk(prod, per_record=False)
    parts = slices(chunk, records=7, size=1 << 20)
    assert len(parts) == -(-len(chunk.records) // 7)
    assert [bool(p.head) for p in parts] == [False] * (len(parts) - 1) + [True]
    whole, _ = taken(chunk, prod)
    south = node("south", prod)
    for part in parts:
        south.take(part, 0.0, wall=NOW)
    assert south.dropped == []
    assert south.view() == whole.view()
    assert south.store.digests() == whole.store.digests()


def test_mutated_batches_give_a_chunk_error_and_nothing_else(prod: Clusterset) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    chunk = east_chunk(prod, per_record=False)
    south = node("south", prod)
    for _ in range(200):
        bad = pb.OriginChunk()
        bad.CopyFrom(chunk)
        at = rng.randrange(len(bad.batches))
        data = bytearray(bad.batches[at])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        bad.batches[at] = bytes(data[: rng.randint(0, len(data))])
        try:
            south.opener.open(bad, NOW)
        except ChunkError:
            continue


def test_a_large_reply_is_taken_in_steps_and_a_change_between_them_stays_consistent() -> None:
    """The exchange yields between slices of a chunk (the gRPC adapter lets the event loop
    turn there); a chunk of the same origin taken in between leaves a consistent copy."""
    from mesh.model import LocalExports
    from mesh.wire.chunk_slices import SLICE_RECORDS
    from tests.unit.exchange_kit import WALL, Agent

    east, south = Agent("east", "10.0.0.1:7946"), Agent("south", "10.0.0.2:7946")
    keys = [ServiceKey("shop", f"svc-{i}") for i in range(2 * SLICE_RECORDS + 10)]
    services = {k: service(k, "10.1.0.1") for k in keys}
    change = east.catalog.set_local(LocalExports(frozenset({"shop"}), services))
    assert change
    east.publisher.publish(east.catalog.local, change, 0.0)
    sent = south.exchange.request_for(east.address, 1.0)
    reply = pb.PushPullResponse.FromString(
        east.exchange.answer(sent.request, "", 1.0, WALL).SerializeToString()
    )
    assert len(reply.chunks[0].records) > 2 * SLICE_RECORDS
    steps = south.exchange.take_reply_steps(sent, reply, 1.0, WALL)
    next(steps)  # one slice taken
    log = south.store.pending.get(east.store.local.origin) or south.store.logs.get(
        east.store.local.origin
    )
    assert log is not None
    assert 0 < log.progress < east.store.local.progress
    # Meanwhile east changes a service, and south takes east's newer snapshot whole in
    # another exchange: the rest of the older one no longer continues south's copy.
    east.export("9", n=1)
    again = south.exchange.request_for(east.address, 2.0)
    south.exchange.take_reply(again, east.exchange.answer(again.request, "", 2.0, WALL), 2.0, WALL)
    assert south.view("east") == east.exports()
    for _ in steps:  # the older snapshot's remaining slices: refused, counted, no harm
        pass
    assert south.exchange.stats.rejected == {"chunk:gap": 1}
    assert south.view("east") == east.exports()


# The release before this one sealed batches of 64 records and took any of up to 4,096
# (mesh/wire/record_batch.py at 63a73b8); this one seals 256 and takes the same.
PREVIOUS_BATCH_RECORDS = 64
PREVIOUS_MAX_BATCH_RECORDS = 4096


def _digests(batch: bytes) -> int:
    return len(pb.Batch.FromString(pb.Sealed.FromString(batch).body).digests) // 32


def test_each_release_takes_the_batches_the_other_seals() -> None:
    assert PREVIOUS_BATCH_RECORDS <= MAX_BATCH_RECORDS  # this release takes the older batches
    assert BATCH_RECORDS <= PREVIOUS_MAX_BATCH_RECORDS  # and the older release takes these


@pytest.mark.parametrize("per_record", [True, False])
def test_a_ring_of_both_batch_sizes_converges_directly_and_through_relays(
    prod: Clusterset, per_record: bool
) -> None:
    """A rolling upgrade: east seals as the release before (64), west as this one (256);
    each takes the other's records, and south takes both through west as a relay."""
    east = node("east", prod, per_record=per_record, batch_records=PREVIOUS_BATCH_RECORDS)
    west = node("west", prod, per_record=per_record)
    south = node("south", prod)
    east.export({k: service(k, f"10.1.0.{i % 250}") for i, k in enumerate(MANY)})
    west.export({k: service(k, f"10.2.0.{i % 250}") for i, k in enumerate(MANY)})
    sizes = {
        m.cluster_id: sorted({_digests(b) for b in m.batches}) for m in wire(east, south)[0]
    } | {m.cluster_id: sorted({_digests(b) for b in m.batches}) for m in wire(west, south)[0]}
    # 1 + 276 records: the older release's batches of 64 (and the rest), this one's of 256.
    assert sizes["east"] == [21, PREVIOUS_BATCH_RECORDS]
    assert sizes["west"] == [21, BATCH_RECORDS]
    sync(east, west)
    sync(west, east)
    sync(west, south)
    assert east.dropped == west.dropped == south.dropped == []
    assert south.view()["east"] == west.view()["east"] == east.exports()
    assert south.view()["west"] == east.view()["west"] == west.exports()


def test_a_batch_over_the_bound_is_refused(prod: Clusterset) -> None:
    east = node("east", prod, per_record=False, batch_records=MAX_BATCH_RECORDS + 1)
    keys = [ServiceKey("shop", f"s-{i}") for i in range(MAX_BATCH_RECORDS + 1)]
    east.export({k: service(k, "10.1.0.1") for k in keys})
    (chunk,) = [m for m in wire(east, node("south", prod))[0] if m.cluster_id == "east"]
    assert max(map(_digests, chunk.batches)) == MAX_BATCH_RECORDS + 1
    assert taken(chunk, prod)[1] == ["malformed"]
