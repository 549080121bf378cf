"""Per-service records: deltas, chunks, tombstones and their expiry, resets, new generations,
and the head check that catches a relay withholding records (mesh/records.py)."""

from __future__ import annotations

import pytest

from mesh.catalog import Digest
from mesh.model import ServiceKey
from mesh.record_codec import chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import KEYS, Node, send, service, sync, wire


def services(n: int, tag: str = "a") -> dict[ServiceKey, object]:
    return {k: service(k, f"10.0.{i}.{1 if tag == 'a' else 2}") for i, k in enumerate(KEYS[:n])}


def test_a_new_peer_gets_everything_and_then_only_what_changed() -> None:
    east, west = Node("east"), Node("west")
    east.export(services(10))  # type: ignore[arg-type]
    sync(east, west)
    assert west.view()["east"] == east.exports()
    changed = dict(east.exports())
    changed[KEYS[3]] = service(KEYS[3], "10.9.9.9")
    east.export(changed)
    messages, more = wire(east, west)
    assert not more
    assert [len(m.records) for m in messages] == [1]  # one service record, not the state
    assert messages[0].head  # and the head it reaches
    for m in messages:
        west.take(m, 0.0)
    assert west.view()["east"] == east.exports()
    assert west.changes[-1].services == frozenset({KEYS[3]})
    assert not west.changes[-1].cluster
    assert wire(east, west) == ([], False)  # nothing left to say


def test_a_large_catch_up_streams_in_bounded_chunks() -> None:
    east, west = Node("east"), Node("west")
    east.export(services(64))  # type: ignore[arg-type]
    budget = 700  # a few records per message
    sizes = []
    for _ in range(200):
        messages, more = wire(east, west, budget)
        sizes.append(sum(len(r) + 16 for m in messages for r in m.records))
        for m in messages:
            west.take(m, 0.0)
        if not more:
            break
    assert len(sizes) > 5
    assert max(sizes) <= budget
    assert west.view()["east"] == east.exports()
    assert west.dropped == []


def test_a_deleted_service_is_deleted_everywhere_through_a_relay() -> None:
    east, west, south = Node("east"), Node("west"), Node("south")
    east.export(services(5))  # type: ignore[arg-type]
    sync(east, west)
    sync(west, south)
    fewer = east.exports()
    del fewer[KEYS[2]]
    east.export(fewer)
    sync(east, west)
    sync(west, south)
    assert KEYS[2] not in south.view()["east"]
    assert south.view()["east"] == fewer


def test_an_expired_tombstone_does_not_let_a_stale_sender_resurrect_the_service() -> None:
    east, west = Node("east", ttl=10.0), Node("west", ttl=10.0)
    east.export(services(5))  # type: ignore[arg-type]
    sync(east, west)
    stale = Node("stale")  # a relay that saw the service and then was cut off
    sync(east, stale)
    fewer = east.exports()
    del fewer[KEYS[1]]
    east.export(fewer, now=1.0)
    sync(east, west, now=1.0)
    assert west.store.expire(100.0) == 1  # the tombstone is gone from west
    assert west.store.logs[("east", "")].floor > 0
    # The stale relay still holds the service live. Asked (by a digest it holds from long
    # ago) for everything after version 1, it sends that record: west keeps it deleted.
    every, _ = stale.store.select([Digest("east", 1, 1)], 1 << 20)
    chunks = [c for c in every if c.cluster_id == "east"]
    assert chunks
    assert chunks[0].from_version == 1
    assert any(KEYS[1].name.encode() in r for r in chunks[0].records)
    west.take(chunk_to_pb(chunks[0], ""), 100.0)
    assert KEYS[1] not in west.view()["east"]
    assert west.view()["east"] == fewer


def test_a_peer_behind_the_tombstone_floor_gets_a_reset_built_aside() -> None:
    east, west = Node("east", ttl=10.0), Node("west")
    east.export(services(8))  # type: ignore[arg-type]
    sync(east, west)
    fewer = east.exports()
    del fewer[KEYS[0]]
    fewer[KEYS[5]] = service(KEYS[5], "10.5.5.5")
    east.export(fewer, now=1.0)
    east.store.expire(100.0)  # east forgot the tombstone west never saw
    swapped = west.store.stats.swapped  # one already: a first copy is built aside too
    messages, _ = wire(east, west, budget=300)
    assert messages[0].reset
    assert messages[0].from_version == 0
    before = west.view()["east"]
    west.take(messages[0], 100.0)
    assert west.view()["east"] == before  # answers keep the old copy while the new one streams
    assert any(d.partial for d in west.store.digests())
    sync(east, west, now=100.0, budget=300)
    assert west.view()["east"] == fewer
    assert KEYS[0] not in west.view()["east"]
    assert west.store.stats.swapped == swapped + 1
    assert not any(d.partial for d in west.store.digests())


def test_a_restarted_origin_replaces_its_old_generation_wholesale() -> None:
    east, west = Node("east"), Node("west")
    east.export(services(6))  # type: ignore[arg-type]
    sync(east, west)
    reborn = Node("east", generation=2)
    reborn.export(services(2, tag="b"))  # type: ignore[arg-type]
    sync(reborn, west, budget=200)
    assert west.view()["east"] == reborn.exports()
    # The old generation, still held by a relay, cannot come back.
    send(east, west)
    assert west.view()["east"] == reborn.exports()


def test_a_relay_that_withholds_a_record_is_caught_by_the_head_and_repaired() -> None:
    east, west = Node("east"), Node("west")
    east.export(services(4))  # type: ignore[arg-type]
    sync(east, west)
    changed = east.exports()
    changed[KEYS[0]] = service(KEYS[0], "10.7.7.7")
    changed[KEYS[1]] = service(KEYS[1], "10.8.8.8")
    east.export(changed)
    messages, _ = wire(east, west)
    assert len(messages[0].records) == 2
    del messages[0].records[0]  # the relay drops KEYS[0]'s new record
    west.take(messages[0], 0.0)
    assert west.dropped == ["inconsistent"]
    digest = next(d for d in west.store.digests() if d.cluster_id == "east")
    assert digest.version == 0  # asks for a reset
    sync(east, west)
    assert west.view()["east"] == changed


def test_a_chunk_that_does_not_continue_the_copy_is_dropped_as_a_gap() -> None:
    east, west = Node("east"), Node("west")
    east.export(services(3))  # type: ignore[arg-type]
    sync(east, west)
    east.export(services(3, tag="b"))  # type: ignore[arg-type]
    messages, _ = wire(east, west)
    del messages[0].records[0]
    messages[0].from_version += 1  # claims to follow a version west never had
    west.take(messages[0], 0.0)
    assert west.dropped == ["gap"]


@pytest.mark.parametrize("field", ["cluster_id", "generation"])
def test_a_record_of_another_origin_in_a_chunk_is_refused(field: str) -> None:
    east, west = Node("east"), Node("west")
    east.export(services(2))  # type: ignore[arg-type]
    messages, _ = wire(east, west)
    message = messages[0]
    if field == "cluster_id":
        message.cluster_id = "south"
    else:
        message.generation = 7
    west.take(message, 0.0)
    assert west.dropped == ["cluster_mismatch"]
    assert "south" not in west.view()
    assert "east" not in west.view()


@pytest.mark.parametrize(
    "mangle",
    ["undecodable_seal", "descending", "bad_name", "no_body", "head_below"],
)
def test_malformed_chunks_are_dropped_whole_and_counted(mangle: str) -> None:
    east, west = Node("east"), Node("west")
    east.export(services(3))  # type: ignore[arg-type]
    message = wire(east, west)[0][0]
    if mangle == "undecodable_seal":
        message.records[1] = b"\xff\xff\xff"
    elif mangle == "descending":
        message.records[1], message.records[2] = message.records[2], message.records[1]
    elif mangle == "bad_name":
        sealed = pb.Sealed.FromString(message.records[1])
        record = pb.Record.FromString(sealed.body)
        record.service.name = "Not_A_Label"
        sealed.body = record.SerializeToString()
        message.records[1] = sealed.SerializeToString()
    elif mangle == "no_body":
        sealed = pb.Sealed.FromString(message.records[1])
        record = pb.Record.FromString(sealed.body)
        record.ClearField("service")
        sealed.body = record.SerializeToString()
        message.records[1] = sealed.SerializeToString()
    else:
        sealed = pb.Sealed.FromString(message.head)
        head = pb.Head.FromString(sealed.body)
        head.version = 1
        sealed.body = head.SerializeToString()
        message.head = sealed.SerializeToString()
    west.take(message, 0.0)
    assert len(west.dropped) == 1
    assert west.dropped[0] in {"malformed", "invalid_record"}
    assert "east" not in west.view()
