"""Per-service records: deltas, chunks, tombstones and their expiry, resets, new generations,
and the head check that catches a relay withholding records (mesh/ring/records.py)."""

from __future__ import annotations

import pytest

from mesh.model import ServiceKey
from mesh.wire.record_codec import chunk_to_pb
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
    changed = east.exports()
    changed[KEYS[1]] = service(KEYS[1], "10.1.1.1")
    east.export(changed)
    old_delta = wire(east, west)[0]  # carries KEYS[1] live; arrives again much later
    for message in old_delta:
        west.take(message, 0.0)
    fewer = east.exports()
    del fewer[KEYS[1]]
    east.export(fewer, now=1.0)
    sync(east, west, now=1.0)
    assert west.store.expire(100.0) == 1  # the tombstone is gone from west
    # West's digest tells the stale relay it has nothing newer to send; even a reset from
    # it (as it would send a newcomer) is an older snapshot, refused: no rollback.
    assert [m for m in wire(stale, west)[0] if m.cluster_id == "east"] == []
    everything, _ = stale.store.select([], 1 << 20)
    stale_reset = [c for c in everything if c.cluster_id == "east"]
    assert stale_reset
    assert stale_reset[0].reset
    west.take(chunk_to_pb(stale_reset[0], ""), 100.0)
    assert west.dropped[-1] == "stale"
    # A replayed old delta: its records are at or below west's progress, so ignored.
    for message in old_delta:
        assert message.from_version <= west.store.logs[("east", "")].progress
        west.take(message, 100.0)
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
    for message in wire(east, west)[0]:
        west.take(message, 0.0)  # passed on by a relay, not said by east now
    assert west.view()["east"] == reborn.exports()
    assert west.dropped == ["stale"]


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


# --- found by review: each of these failed before its fix -------------------------------


def test_an_update_larger_than_one_chunk_completes_over_several_exchanges() -> None:
    east, west = Node("east"), Node("west")
    east.export({k: service(k, "10.0.0.1") for k in KEYS[:10]})
    sync(east, west)
    east.export({k: service(k, "10.0.0.2") for k in KEYS[:40]})
    rounds = sync(east, west, budget=600)
    assert rounds > 2
    assert west.view()["east"] == east.exports()
    digest = next(d for d in west.store.digests() if d.cluster_id == "east")
    assert digest.checked == digest.version == east.store.local.progress


def test_one_large_catch_up_does_not_starve_another_origins_news() -> None:
    a, b, relay, west = Node("a"), Node("b"), Node("relay"), Node("west")
    for src in (a, b):
        src.export({k: service(k, "10.0.0.1") for k in KEYS[:5]})
        sync(src, relay)
        sync(relay, west)
    a.export({k: service(k, "10.0.0.2") for k in KEYS[:40]})  # a big delta of origin a
    b.export({KEYS[0]: service(KEYS[0], "10.9.9.9")})  # one record of origin b
    sync(a, relay)
    sync(b, relay)
    for _ in range(3):  # fewer rounds than a's delta needs at this budget
        send(relay, west, budget=600)
    assert west.view()["b"] == b.exports()


def test_records_taken_before_a_failed_head_check_are_still_reported() -> None:
    east, west = Node("east"), Node("west")
    east.export({k: service(k, "10.0.0.1") for k in KEYS[:4]})
    sync(east, west)
    changed = east.exports()
    changed[KEYS[1]] = service(KEYS[1], "10.1.1.1")
    changed[KEYS[2]] = service(KEYS[2], "10.2.2.2")
    east.export(changed)
    message = wire(east, west)[0][0]
    del message.records[0]  # a relay withholds KEYS[1], forwards KEYS[2] and the head
    before = len(west.changes)
    west.take(message, 0.0)
    assert west.dropped == ["inconsistent"]
    assert len(west.changes) == before + 1
    assert west.changes[-1].services == {KEYS[2]}  # the answers use it: the planner must know
    sync(east, west)
    assert west.view()["east"] == changed


def test_a_copy_built_from_two_senders_snapshots_converges() -> None:
    east, west, relay = Node("east", ttl=10.0), Node("west"), Node("relay")
    east.export({k: service(k, "10.0.0.1") for k in KEYS[:30]})
    sync(east, west)
    sync(east, relay)
    newer = {k: service(k, "10.0.0.1") for k in KEYS[10:20]}
    newer |= {k: service(k, "10.0.0.2") for k in KEYS[20:30]}
    east.export(newer, now=1.0)
    east.store.expire(100.0)  # west now needs a reset from east
    for _ in range(50):
        send(east, west, 100.0, budget=400)
        send(relay, west, 100.0, budget=400)  # behind east's snapshot: must not mix in
    assert west.view()["east"] == east.exports()
    assert "inconsistent" not in west.dropped


def test_a_copy_built_from_a_reset_serves_no_delta_below_its_snapshot() -> None:
    east, west, late = Node("east", ttl=10.0), Node("west"), Node("late")
    east.export({k: service(k, "10.0.0.1") for k in KEYS[:4]})
    sync(east, late)  # late holds the early version, then is away
    fewer = east.exports()
    del fewer[KEYS[0]]
    east.export(fewer, now=1.0)
    sync(east, west, now=1.0)  # west's copy comes from a reset: no tombstones in it
    log = west.store.logs[("east", "")]
    assert log.floor == log.progress
    sync(west, late)  # so late gets a reset from west, not a delta missing the deletion
    assert late.view()["east"] == fewer


def test_an_older_generation_does_not_replace_a_newer_one_being_built() -> None:
    old, new, west = Node("east", 1), Node("east", 2), Node("west")
    old.export({k: service(k, "10.0.0.1") for k in KEYS[:20]})
    new.export({k: service(k, "10.0.0.2") for k in KEYS[:3]})
    send(new, west, budget=200)  # west starts building generation 2 aside
    assert west.store.pending[("east", "")].generation == 2
    for chunk in old.store.select([], 1 << 20)[0]:  # a relay still on generation 1
        west.take(chunk_to_pb(chunk, ""), 0.0)
    assert west.store.pending[("east", "")].generation == 2
    assert "east" not in west.view()
    sync(new, west)
    assert west.view()["east"] == new.exports()


def test_a_forgotten_cluster_is_not_handed_back_by_a_peer_but_returns_when_it_restarts() -> None:
    from mesh.ring.expiry import ClusterExpiry

    east, west, relay = Node("east"), Node("west"), Node("relay")
    east.export({k: service(k, "10.0.0.1") for k in KEYS[:3]})
    sync(east, west)
    sync(east, relay)
    expiry = ClusterExpiry(after_s=60.0)
    assert expiry.observe(["east", "west"], {"west"}, now=0.0) == []
    assert expiry.observe(["east", "west"], {"east", "west"}, now=30.0) == []  # back: restart
    assert expiry.observe(["east", "west"], {"west"}, now=40.0) == []
    assert expiry.observe(["east", "west"], {"west"}, now=99.0) == []
    assert expiry.observe(["east", "west"], {"west"}, now=100.0) == ["east"]
    west.store.forget("east")
    change = west.catalog.forget("east")
    assert change.cluster
    assert change.services == frozenset(KEYS[:3])
    assert "east" not in west.view()
    sync(relay, west)  # the relay has not forgotten it yet: refused
    assert "east" not in west.view()
    assert "forgotten" in west.dropped
    reborn = Node("east", generation=2)
    reborn.export({KEYS[0]: service(KEYS[0], "10.0.0.9")})
    sync(reborn, west)
    assert west.view()["east"] == reborn.exports()
