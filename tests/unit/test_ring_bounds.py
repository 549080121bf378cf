"""What one message can grow in the ring (mesh/ring/peers.py, origin_room.py, exchange.py):
the peer table, the record store's origins and the catalog stay within their bounds
whatever a peer sends (made-up members, origins, digests), what is left out is counted,
and a genuine message is still taken afterwards."""

from __future__ import annotations

from mesh.model import MAX_AGENTS, MAX_CLUSTERS
from mesh.ring.origin_room import OriginLimits
from mesh.ring.peers import PeerLimits, PeerTable, PeerTimings
from mesh.wire.record_codec import chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.exchange_kit import WALL, Agent, exchange
from tests.unit.records_kit import KEYS, Node, send, service

SELF = "10.0.0.1:7946"
T = PeerTimings(interval_s=0.5, peer_timeout_s=2.0, max_backoff_s=4.0, max_exchanges_per_s=40.0)


def fake(i: int) -> str:
    return f"10.9.{i // 250}.{i % 250 + 1}:7946"


# ---------------------------------------------------------------------------- peer table


def test_the_peer_table_refuses_past_its_bounds_and_a_failed_peer_makes_way() -> None:
    peers = PeerTable("east", SELF, ["10.0.0.2:7946"], T, PeerLimits(3, 3, 4))
    for i in range(5):
        peers.learned("west", fake(i), 1.0)
    assert len(peers.peers) == 4  # the seed and three of west's
    assert peers.refused == {"cluster_full": 2}
    assert peers.learned("north", fake(10), 1.0) == "table_full"
    peers.failed(fake(1), 2.0)  # tried and failed: unreachable, so it may make way
    assert peers.learned("north", fake(10), 3.0) == ""
    assert fake(1) not in peers.peers
    assert len(peers.peers) == 4
    for _ in range(3):
        peers.failed("10.0.0.2:7946", 4.0)  # a seed never makes way
    assert peers.learned("south", fake(11), 5.0) == "table_full"
    assert "10.0.0.2:7946" in peers.peers


def test_a_new_cluster_takes_the_place_of_one_whose_peers_all_failed() -> None:
    peers = PeerTable("east", SELF, [], T, PeerLimits(8, 2, 100))
    peers.learned("west", fake(1), 1.0)
    peers.learned("south", fake(2), 1.0)
    assert peers.learned("north", fake(3), 1.0) == "table_full"
    peers.failed(fake(2), 2.0)
    assert peers.learned("north", fake(3), 3.0) == ""
    assert set(peers.peers) == {fake(1), fake(3)}


def test_no_cluster_to_drop_does_not_mean_no_peer_to_drop() -> None:
    peers = PeerTable("east", SELF, [], T, PeerLimits(8, 2, 3))
    for i, cluster in enumerate(("west", "west", "south")):
        peers.learned(cluster, fake(i), 1.0)
    peers.failed(fake(1), 2.0)
    assert peers.learned("north", fake(3), 3.0) == "table_full"  # west still has fake(0)
    assert peers.learned("west", fake(4), 3.0) == ""  # at the same time: fake(1) makes way
    assert set(peers.peers) == {fake(0), fake(2), fake(4)}


def test_made_up_peers_neither_stretch_the_round_nor_take_the_turns_of_real_ones() -> None:
    peers = PeerTable("east", SELF, [], T)
    real = [f"10.0.1.{i}:7946" for i in range(5)]
    for address in real:
        peers.succeeded(address, "west", 0.0)
    for i in range(2000):
        peers.learned(f"fake-{i}", fake(i), 0.0)
    assert peers.round_s() == 0.5  # five peers answer: a full mesh every interval
    due = peers.due(1.0)
    assert len(due) == 20  # a round's worth of the exchange rate: 40/s x 0.5 s
    assert due[:5] == real  # those that answered first


# ---------------------------------------------------------------------------- exchange


def test_a_ring_push_pull_of_5000_made_up_members_leaves_the_table_bounded_and_counted() -> None:
    east, west = Agent("east", SELF), Agent("west", "10.0.0.2:7946")
    flood = pb.PushPullRequest(
        sender=pb.Member(cluster_id="fake-0", address=fake(0)),
        members=[pb.Member(cluster_id=f"fake-{i}", address=fake(i)) for i in range(5000)],
    )
    east.exchange.answer(flood, "", 1.0, WALL)
    peers = east.peers
    assert len(peers.peers) <= MAX_AGENTS
    assert len({p.cluster_id for p in peers.peers.values()}) == MAX_CLUSTERS
    rejected = east.exchange.stats.rejected
    assert rejected["member:too_many"] == 5000 - MAX_AGENTS
    # The first 2,048 name 2,048 clusters: the first 512 fill the table (fake-0, the
    # sender, was held already), the rest are refused.
    assert rejected["member:table_full"] == MAX_AGENTS - MAX_CLUSTERS
    west.export("1")
    exchange(west, east)  # a genuine peer is still heard, and its records taken
    assert east.view("west") == west.exports()


def test_made_up_origins_past_the_bounds_are_refused_and_counted() -> None:
    east = Agent("east", SELF)
    request = pb.PushPullRequest(sender=pb.Member(cluster_id="fake-0", address=fake(0)))
    for i in range(3000):
        made_up = Node(f"fake-{i}")
        chunks, _ = made_up.store.select(None, 1 << 20)
        request.chunks.extend(chunk_to_pb(c, "") for c in chunks)
    east.exchange.answer(request, "", 1.0, WALL)
    rejected = east.exchange.stats.rejected
    assert rejected["chunk:too_many"] == 3000 - MAX_AGENTS
    assert rejected["chunk:table_full"] == MAX_AGENTS - (MAX_CLUSTERS - 1)
    assert len({o[0] for o in east.store.logs}) == MAX_CLUSTERS
    assert len(east.catalog.clusters()) == MAX_CLUSTERS


def test_digests_past_the_bound_are_left_out_and_counted() -> None:
    east, west = Agent("east", SELF), Agent("west", "10.0.0.2:7946")
    sent = west.exchange.request_for(SELF, 1.0)
    sent.request.digests.extend(
        pb.Digest(cluster_id=f"fake-{i}", generation=1, version=1) for i in range(MAX_AGENTS + 7)
    )
    extra = len(sent.request.digests) - MAX_AGENTS  # (west's own digest among them)
    east.exchange.answer(sent.request, "", 1.0, WALL)
    assert east.exchange.stats.rejected == {"digest:too_many": extra}


# ---------------------------------------------------------------------------- origins


def test_a_new_replica_takes_the_place_of_the_one_started_longest_ago() -> None:
    """Rollouts bring new pod names: a cluster's origins must not pile up for good."""
    limits = OriginLimits(per_cluster=2, clusters=8, origins=16)
    east = Node("east")
    east.store.limits = limits
    east.store.room.limits = limits
    for generation, name in ((10, "a"), (20, "b"), (30, "c")):
        replica = Node("west", generation=generation, replica=name)
        replica.export({KEYS[0]: service(KEYS[0], f"10.0.0.{generation}")})
        send(replica, east)
    assert sorted(o for o in east.store.logs if o[0] == "west") == [("west", "b"), ("west", "c")]
    assert east.view()["west"][KEYS[0]] == service(KEYS[0], "10.0.0.30")
    assert [s.replica for s in east.catalog.states() if s.cluster_id == "west"] == ["b", "c"]
    older = Node("west", generation=5, replica="z")
    send(older, east)  # started before every replica held: refused
    assert east.dropped == ["cluster_full"]
    assert ("west", "z") not in east.store.logs
