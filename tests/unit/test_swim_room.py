"""How many members the SWIM table holds (mesh/swim/room.py), and what one message can make
it do: a push-pull of 5,000 made-up members, as any peer can send without TLS, leaves the
table at its bounds, counted, and the members that are down make way for new ones."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mesh.model import MAX_AGENTS, MAX_CLUSTERS
from mesh.swim.config import Config
from mesh.swim.membership import Membership
from mesh.swim.messages import Dead, Gossip, Member, MemberState, PingReq, PushPull
from mesh.wire.swim_codec import MAX_MEMBERS, from_pb, to_pb, trim
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.test_swim import ME, FirstRng, alive

ALIVE, DEAD = MemberState.ALIVE, MemberState.DEAD


def fake(i: int, cluster: str | None = None) -> Member:
    cluster = cluster or f"fake-{i}"
    return Member(f"{cluster}/a{i}", cluster, f"10.9.{i // 250}.{i % 250 + 1}:7946", 1)


def started(config: Config) -> Membership:
    m = Membership(config, ME, FirstRng())
    m.start(0.0)
    return m


def test_the_table_holds_at_most_max_members_and_the_longest_dead_make_way() -> None:
    m = started(replace(Config(), max_members=5))
    m.receive(PushPull("fake-0/a0", "10.9.0.1:7946", tuple(fake(i) for i in range(10))), "x", 1.0)
    assert len(m.members) == 5  # ourselves and four of them
    assert ME.id in m.members
    assert m.refused == {"table_full": 6}
    m.receive(Gossip("x", (Dead("fake-2/a2", 1, ME.id),)), "x", 2.0)
    m.receive(Gossip("x", (Dead("fake-1/a1", 1, ME.id),)), "x", 3.0)
    m.receive(Gossip("x", (alive(fake(20)),)), "x", 4.0)
    assert "fake-20/a20" in m.members
    assert "fake-2/a2" not in m.members  # down the longest
    assert m.members["fake-1/a1"].state == DEAD
    assert len(m.members) == 5


def test_a_new_cluster_takes_the_place_of_a_cluster_that_is_all_down_never_of_a_live_one() -> None:
    m = started(replace(Config(), max_clusters=3))
    m.receive(
        Gossip("x", (alive(fake(1)), alive(fake(2, "fake-1")), alive(fake(3)), alive(fake(4)))),
        "x",
        1.0,
    )
    # east (ours), fake-1 (two members), fake-3: fake-4 finds no room.
    assert {x.cluster_id for x in m.members.values()} == {"east", "fake-1", "fake-3"}
    assert m.refused == {"table_full": 1}
    m.receive(Gossip("x", (Dead("fake-1/a1", 1, ME.id),)), "x", 2.0)
    m.receive(Gossip("x", (alive(fake(4)),)), "x", 2.5)
    assert "fake-4/a4" not in m.members  # fake-1 still has a live member
    m.receive(Gossip("x", (Dead("fake-1/a2", 1, ME.id),)), "x", 3.0)
    m.receive(Gossip("x", (alive(fake(4)),)), "x", 3.5)
    assert {x.cluster_id for x in m.members.values()} == {"east", "fake-3", "fake-4"}
    assert m.refused == {"table_full": 2}


def test_leaving_we_are_never_the_member_that_makes_way() -> None:
    m = started(replace(Config(), max_members=2, max_clusters=2))
    m.leave(1.0)
    m.receive(Gossip("x", (alive(fake(1)), alive(fake(2)))), "x", 2.0)
    assert set(m.members) == {ME.id, "fake-1/a1"}


@pytest.mark.parametrize("per_cluster", [1, 4, 64])
def test_a_push_pull_of_5000_made_up_members_is_taken_up_to_the_bounds_and_counted(
    per_cluster: int,
) -> None:
    """The whole path a datagram takes in the pump: trimmed, decoded, merged; made-up
    members one per cluster (the cluster bound holds), or a few per cluster (the total)."""
    table = tuple(fake(i, f"fake-{i // per_cluster}") for i in range(5000))
    datagram = to_pb(PushPull("fake-0/a0", "10.9.0.1:7946", table))
    datagram = pb.SwimDatagram.FromString(datagram.SerializeToString())
    assert trim(datagram) == 5000 - MAX_MEMBERS
    message = from_pb(datagram)
    assert isinstance(message, PushPull)
    assert len(message.members) == MAX_MEMBERS == MAX_AGENTS
    m = started(Config.fast())
    m.receive(message, "x", 1.0)
    clusters = {x.cluster_id for x in m.members.values()}
    assert len(clusters) <= MAX_CLUSTERS
    assert len(m.members) <= MAX_AGENTS
    taken = len(m.members) - 1
    assert sum(m.refused.values()) == MAX_MEMBERS - taken  # every one left out, counted
    expected = {1: 1 + (MAX_CLUSTERS - 1), 4: 1 + 4 * (MAX_CLUSTERS - 1), 64: MAX_AGENTS}
    assert len(m.members) == expected[per_cluster]
    replies = [msg for _d, msg in m.messages_to_send(1.0) if isinstance(msg, PushPull)]
    assert len(replies) == 1
    assert len(replies[0].members) == len(m.members)  # never more than a table


def test_the_default_bounds_refuse_the_513th_cluster() -> None:
    m = started(Config.fast())
    updates = tuple(alive(fake(i)) for i in range(600))
    for start in range(0, 600, 100):
        m.receive(Gossip("x", updates[start : start + 100]), "x", 1.0)
    assert len({x.cluster_id for x in m.members.values()}) == MAX_CLUSTERS
    assert m.refused == {"table_full": 600 - (MAX_CLUSTERS - 1)}


def test_ping_requests_past_the_relay_bound_are_dropped() -> None:
    m = started(replace(Config(), max_relays=3))
    for seq in range(10):
        request = PingReq(seq, "west/x", f"10.0.7.{seq}:7946", "west/y", "10.0.1.1:7946")
        m.receive(request, "x", 1.0)
    pings = [d for d, _msg in m.messages_to_send(1.0)]
    assert pings == ["10.0.7.0:7946", "10.0.7.1:7946", "10.0.7.2:7946"]
