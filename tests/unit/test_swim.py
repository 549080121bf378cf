"""The SWIM core's rules, driven with literal times and no network (see tests/sim for the
behaviour of many members together)."""

from __future__ import annotations

import math
import random
from collections.abc import MutableSequence, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from mesh.swim.broadcasts import BroadcastQueue
from mesh.swim.config import (
    Config,
    push_pull_period_s,
    retransmit_limit,
    suspicion_confirmations,
    suspicion_timeout_s,
)
from mesh.swim.membership import Membership
from mesh.swim.messages import (
    Ack,
    Alive,
    Dead,
    Event,
    Gossip,
    Left,
    Member,
    MemberAlive,
    MemberDied,
    MemberJoined,
    MemberLeft,
    MemberState,
    MemberSuspected,
    MemberUpdated,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    Update,
    cluster_liveness,
)
from mesh.swim.suspicion import Awareness, Suspicion, suspicion_remaining_s
from mesh.wire.swim_codec import to_pb

_T = TypeVar("_T")
ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)
ME = Member("east/agent-0", "east", "10.0.0.1:7946")
LAN = Config()


class FirstRng:
    """Deterministic choices: phase 0 for every ticker, no shuffling, the first k."""

    def random(self) -> float:
        return 0.0

    def shuffle(self, x: MutableSequence[Any]) -> None:
        pass

    def sample(self, population: Sequence[_T], k: int) -> list[_T]:
        return list(population[:k])


def peer(i: int, cluster: str = "west", incarnation: int = 0) -> Member:
    return Member(f"{cluster}/agent-{i}", cluster, f"10.0.1.{i}:7946", incarnation)


def alive(member: Member, incarnation: int | None = None) -> Alive:
    inc = member.incarnation if incarnation is None else incarnation
    return Alive(member.id, member.cluster_id, member.address, inc)


def ring(
    peers: int = 4, config: Config = LAN, rng: Any = None, *, quiet: bool = True
) -> Membership:
    """Us plus ``peers`` alive members, started at t=0; with ``quiet`` the join gossip is
    drained so later messages carry only what a test adds."""
    m = Membership(config, ME, rng or FirstRng())
    others = tuple(alive(peer(i)) for i in range(1, peers + 1))
    m.receive(Gossip("west/agent-1", others), "10.0.1.1:7946", 0.0)
    if quiet:
        m._broadcasts.clear()
    m.messages_to_send(0.0)
    drain_events(m)
    m.start(0.0)
    return m


def drain_events(m: Membership) -> list[Event]:
    events = []
    while (event := m.next_event()) is not None:
        events.append(event)
    return events


def drive(
    m: Membership, until: float, *, acks: bool = True, silent: Sequence[str] = ()
) -> list[tuple[float, str, Message]]:
    """Fire every timer due up to ``until``; returns what was sent, with the time. With
    ``acks``, every member but the ``silent`` ids answers our pings at once."""
    sent: list[tuple[float, str, Message]] = []
    for _ in range(10_000):
        timer = m.get_timer()
        if timer is None or timer > until:
            return sent
        m.handle_timer(timer)
        out = [(timer, dest, msg) for dest, msg in m.messages_to_send(timer)]
        sent += out
        for _t, dest, msg in out:
            if acks and isinstance(msg, Ping) and msg.target_id not in silent:
                m.receive(Ack(msg.seq, msg.target_id), dest, timer)
                sent += [(timer, d, reply) for d, reply in m.messages_to_send(timer)]
    raise AssertionError("timer does not advance")


def of_type(sent: list[tuple[float, str, Message]], kind: type[_T]) -> list[tuple[float, str, _T]]:
    return [(t, d, msg) for t, d, msg in sent if isinstance(msg, kind)]


# ------------------------------------------------------------------------ the formulas


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 4.0), (5, 4.0), (10, 4.0), (100, 8.0), (1000, 12.0)]
)
def test_suspicion_timeout_is_mult_times_log10_n_times_the_interval(
    n: int, expected: float
) -> None:
    assert suspicion_timeout_s(4, n, 1.0) == pytest.approx(expected)
    assert suspicion_timeout_s(4, 200, 0.5) == pytest.approx(4 * math.log10(200) * 0.5)


@pytest.mark.parametrize(("n", "expected"), [(1, 4), (9, 4), (10, 8), (99, 8), (100, 12)])
def test_retransmit_limit_is_mult_times_ceil_log10_n_plus_1(n: int, expected: int) -> None:
    assert retransmit_limit(4, n) == expected


PUSH_PULL_PERIODS = [(2, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0), (200, 120.0)]


@pytest.mark.parametrize(("n", "expected"), PUSH_PULL_PERIODS)
def test_push_pull_period_scales_above_32_members(n: int, expected: float) -> None:
    assert push_pull_period_s(30.0, n) == expected


def test_confirmations_needed_are_mult_minus_2_when_enough_members() -> None:
    assert suspicion_confirmations(4, 10) == 2
    assert suspicion_confirmations(4, 4) == 2
    assert suspicion_confirmations(4, 3) == 0  # only one other member could confirm
    assert suspicion_confirmations(5, 30) == 3


def test_suspicion_shrinks_from_max_to_min_with_independent_confirmations() -> None:
    # memberlist's table: k=3, min 2 s, max 30 s.
    assert suspicion_remaining_s(0, 3, 0.0, 2.0, 30.0) == pytest.approx(30.0)
    assert suspicion_remaining_s(1, 3, 0.0, 2.0, 30.0) == pytest.approx(16.0)
    assert suspicion_remaining_s(2, 3, 0.0, 2.0, 30.0) == pytest.approx(7.809, abs=1e-3)
    assert suspicion_remaining_s(3, 3, 0.0, 2.0, 30.0) == pytest.approx(2.0)
    assert suspicion_remaining_s(4, 3, 0.0, 2.0, 30.0) == pytest.approx(2.0)
    assert suspicion_remaining_s(3, 3, 5.0, 2.0, 30.0) == pytest.approx(-3.0)
    assert suspicion_remaining_s(0, 0, 1.0, 2.0, 30.0) == pytest.approx(1.0)

    suspicion = Suspicion("b", 3, 2.0, 30.0, started_at=100.0)
    assert suspicion.deadline == 130.0
    assert not suspicion.confirm("b")  # the first accuser does not confirm itself
    assert suspicion.confirm("c")
    assert suspicion.deadline == pytest.approx(116.0)
    assert not suspicion.confirm("c")  # each source counts once
    assert suspicion.confirm("d")
    assert suspicion.confirm("e")
    assert suspicion.deadline == pytest.approx(102.0)
    assert not suspicion.confirm("f")  # k reached: nothing new to gossip
    assert Suspicion("b", 0, 2.0, 30.0, started_at=100.0).deadline == 102.0


def test_config_rejects_impossible_timings() -> None:
    with pytest.raises(ValueError, match="probe_timeout_s"):
        Config(probe_interval_s=1.0, probe_timeout_s=1.0)
    with pytest.raises(ValueError, match="nack_timeout_s"):
        Config(nack_timeout_s=0.5)
    with pytest.raises(ValueError, match="suspicion_mult"):
        Config(suspicion_mult=0)
    fast = Config.fast()
    assert (fast.probe_interval_s, fast.probe_timeout_s, fast.suspicion_mult) == (0.5, 0.25, 5)
    assert (LAN.probe_interval_s, LAN.probe_timeout_s, LAN.indirect_checks) == (1.0, 0.5, 3)
    assert (LAN.suspicion_mult, LAN.retransmit_mult, LAN.push_pull_interval_s) == (4, 4, 30.0)


# --------------------------------------------------------------------------- probing


def test_probe_order_is_a_shuffled_round_robin() -> None:
    orders = []
    for seed in range(3):
        m = ring(5, rng=random.Random(seed))
        targets = []
        now = 0.0
        while len(targets) < 15:
            timer = m.get_timer()
            assert timer is not None
            now = timer
            m.handle_timer(now)
            for _dest, msg in m.messages_to_send(now):
                if isinstance(msg, Ping):
                    targets.append(msg.target_id)
                    m.receive(Ack(msg.seq, msg.target_id), "x", now + 0.01)
        cycles = [targets[0:5], targets[5:10], targets[10:15]]
        peers = sorted(peer(i).id for i in range(1, 6))
        # Every live member exactly once per cycle, one probe per interval.
        assert all(sorted(cycle) == peers for cycle in cycles), (seed, cycles)
        orders += cycles[1:]
    assert len({tuple(order) for order in orders}) > 1  # reshuffled each cycle


def test_a_new_member_joins_the_current_cycle_and_dead_ones_are_skipped() -> None:
    m = ring(3)
    m.receive(Gossip("x", (Dead(peer(2).id, 0, "x"),)), "x", 0.0)
    sent = drive(m, 2.9)
    pings = [msg.target_id for _t, _d, msg in of_type(sent, Ping)]
    assert peer(2).id not in pings
    assert [t for t, _d, _m in of_type(sent, Ping)] == [0.0, 1.0, 2.0]


def test_members_held_dead_yet_reached_are_pulled_join_fanout_per_interval_in_all() -> None:
    m = ring(8)
    dead = [peer(i) for i in range(1, 9)]
    m.receive(Gossip("x", tuple(Dead(p.id, 0, "x") for p in dead)), "x", 0.0)
    m.messages_to_send(0.0)

    def pulled(now: float) -> list[str]:
        m.reached([p.address for p in dead], now)  # the ring reached every one of them
        return [d for d, msg in m.messages_to_send(now) if isinstance(msg, PushPull)]

    first = pulled(0.1)
    assert len(first) == LAN.join_fanout
    assert pulled(0.2) == []  # the budget of this probe interval is spent
    second = pulled(0.1 + LAN.probe_interval_s)
    assert len(second) == LAN.join_fanout
    assert not set(first) & set(second)  # the others' turn: each member once an interval
    # While this agent is sure it is overloaded (half the score's range), the budget's
    # interval stretches with its awareness: 4 probe intervals at a score of 3.
    m.awareness.apply(3)
    assert pulled(0.1 + 3 * LAN.probe_interval_s) == []
    assert len(pulled(0.11 + 5 * LAN.probe_interval_s)) == LAN.join_fanout


def test_a_dead_member_the_transport_reaches_again_is_pulled_at_once_not_at_reconnect_pace() -> (
    None
):
    m = ring(3)
    m.receive(Gossip("x", (Dead(peer(2).id, 0, "x"),)), "x", 0.0)
    m.messages_to_send(0.0)
    m.reached([peer(2).address], 0.5)
    m.reached([peer(2).address], 0.6)  # at most once per probe interval
    m.reached([peer(1).address], 0.6)  # alive: nothing to do
    sent = m.messages_to_send(0.6)
    pulls = [dest for dest, msg in sent if isinstance(msg, PushPull)]
    assert pulls == [peer(2).address]
    m.reached([peer(2).address], 0.5 + LAN.probe_interval_s)
    assert [d for d, msg in m.messages_to_send(2.0) if isinstance(msg, PushPull)] == [
        peer(2).address
    ]


def test_a_missed_ack_asks_k_members_for_indirect_probes_then_suspects() -> None:
    m = ring(5)
    sent = drive(m, 0.0, acks=False)
    ((_t, dest, ping),) = of_type(sent, Ping)
    target = next(p for p in (peer(i) for i in range(1, 6)) if p.id == ping.target_id)
    assert dest == target.address
    assert ping.source_address == ME.address

    sent = drive(m, 0.5, acks=False)
    requests = of_type(sent, PingReq)
    assert [t for t, _d, _r in requests] == [0.5, 0.5, 0.5]  # probe timeout
    assert {r.target_address for _t, _d, r in requests} == {target.address}
    assert {r.seq for _t, _d, r in requests} == {ping.seq}
    assert target.address not in {d for _t, d, _r in requests}
    assert drain_events(m) == []

    drive(m, 1.0, acks=False)
    (event,) = [e for e in drain_events(m) if isinstance(e, MemberSuspected)]
    assert (event.member.id, event.source_id) == (target.id, ME.id)
    assert m.awareness.score == 3  # three relays and not one nack: maybe we are the problem


def test_a_forwarded_ack_saves_the_probe_and_nacks_mean_the_target_is_down() -> None:
    m = ring(5)
    ping = of_type(drive(m, 0.5, acks=False), Ping)[0][2]
    m.receive(Ack(ping.seq, "west/agent-2"), "10.0.1.2:7946", 0.7)
    sent = drive(m, 1.0, acks=False)
    assert drain_events(m) == []
    assert m.awareness.score == 0

    ((ping_at, _d, ping),) = of_type(sent, Ping)
    assert ping_at == 1.0
    for relay in ("west/agent-2", "west/agent-3", "west/agent-4"):
        m.receive(Nack(ping.seq, relay), "x", 1.9)
    drive(m, 2.0, acks=False)
    assert [type(e) for e in drain_events(m)] == [MemberSuspected]
    assert m.awareness.score == 0  # every relay answered: the target is the problem


def test_a_probe_of_a_suspect_member_carries_the_suspicion_so_it_can_refute() -> None:
    m = ring(1)
    m.receive(Gossip("x", (Suspect(peer(1).id, 0, "west/agent-7"),)), "x", 0.0)
    m.messages_to_send(0.0)
    ((_t, _d, ping),) = of_type(drive(m, 0.0, acks=False), Ping)
    assert ping.updates[0] == Suspect(peer(1).id, 0, ME.id)


def test_a_relay_pings_the_target_and_forwards_its_ack_or_sends_a_nack() -> None:
    m = ring(3)
    drive(m, 0.0)
    request = PingReq(41, peer(9).id, "10.0.9.9:7946", peer(1).id, peer(1).address)
    m.receive(request, "10.0.1.1:40000", 0.1)
    ((dest, ping),) = [(d, msg) for d, msg in m.messages_to_send(0.1) if isinstance(msg, Ping)]
    assert (dest, ping.target_id, ping.source_address) == ("10.0.9.9:7946", peer(9).id, ME.address)
    m.receive(Ack(ping.seq, peer(9).id), "10.0.9.9:7946", 0.2)
    ((dest, ack),) = m.messages_to_send(0.2)
    assert isinstance(ack, Ack)
    assert (dest, ack.seq) == (peer(1).address, 41)

    m.receive(PingReq(42, peer(9).id, "10.0.9.9:7946", peer(1).id, peer(1).address), "x", 0.3)
    m.messages_to_send(0.3)
    nacks = of_type(drive(m, 0.8), Nack)
    assert [(t, d, n.seq) for t, d, n in nacks] == [(pytest.approx(0.7), peer(1).address, 42)]


def test_a_ping_meant_for_another_member_is_ignored() -> None:
    m = ring(2)
    m.receive(Ping(5, "east/agent-9", peer(1).id, peer(1).address), "x", 0.1)
    assert m.messages_to_send(0.1) == []
    assert m.stats.misaddressed == 1
    m.receive(Ping(6, ME.id, peer(1).id, peer(1).address), "10.0.1.1:5555", 0.2)
    assert m.messages_to_send(0.2) == [(peer(1).address, Ack(6, ME.id))]


# ------------------------------------------------------------------- suspicion timing


def test_suspicion_turns_into_dead_at_the_timeout_shrunk_by_confirmations() -> None:
    m = ring(9)  # N = 10: min = 4 * 1 * 1 s = 4 s, max = 24 s, k = 2
    target = peer(5).id
    m.receive(Gossip("b", (Suspect(target, 0, peer(1).id),)), "x", 10.0)
    assert isinstance(drain_events(m)[0], MemberSuspected)
    assert m._table.suspicions[target].deadline == pytest.approx(34.0)
    # Confirmations count one per cluster of accusers: west (peer 1's) already accused.
    m.receive(Gossip("c", (Suspect(target, 0, peer(2).id),)), "x", 10.5)
    assert m._table.suspicions[target].deadline == pytest.approx(34.0)
    m.receive(Gossip("c", (Suspect(target, 0, peer(2, "south").id),)), "x", 11.0)
    assert m._table.suspicions[target].deadline == pytest.approx(
        10.0 + 24.0 - math.log(2) / math.log(3) * 20.0, abs=1e-3
    )
    m.receive(Gossip("d", (Suspect(target, 0, peer(3, "north").id),)), "x", 12.0)
    assert m._table.suspicions[target].deadline == pytest.approx(14.0)
    m.messages_to_send(12.0)
    m.handle_timer(13.99)
    assert m.members[target].state == SUSPECT
    m.handle_timer(14.0)
    (died,) = [e for e in drain_events(m) if isinstance(e, MemberDied)]
    assert (died.member.state, died.source_id) == (DEAD, ME.id)
    sent = [msg for _d, msg in m.messages_to_send(14.0)] + [msg for *_, msg in drive(m, 14.5)]
    assert Dead(target, 0, ME.id) in [u for msg in sent for u in getattr(msg, "updates", ())]


# ------------------------------------------------------------------ refuting and rules


@pytest.mark.parametrize(
    "accusation",
    [Suspect(ME.id, 0, "west/agent-1"), Dead(ME.id, 0, "west/agent-1"), Left(ME.id, 0)],
    ids=["suspect", "dead", "left"],
)
def test_an_accusation_about_us_is_refuted_with_a_higher_incarnation(accusation: Update) -> None:
    m = ring(2)
    m.receive(Ping(9, ME.id, peer(1).id, peer(1).address, (accusation,)), "x", 0.1)
    ((_dest, ack),) = m.messages_to_send(0.1)
    assert isinstance(ack, Ack)
    assert ack.updates == (alive(ME, 1),)  # the refutation rides on the very ack
    assert (m.me.incarnation, m.me.state, m.refutes, m.awareness.score) == (1, ALIVE, 1, 1)


def test_a_newer_alive_about_us_or_one_with_another_address_is_refuted() -> None:
    m = ring(1)
    m.receive(Gossip("x", (alive(ME, 5),)), "x", 0.1)
    assert m.me.incarnation == 6
    m.receive(Gossip("x", (Alive(ME.id, "east", "10.9.9.9:7946", 6),)), "x", 0.2)
    assert m.me.incarnation == 7
    assert m.me.address == ME.address
    m.receive(Gossip("x", (alive(ME, 3),)), "x", 0.3)
    assert m.me.incarnation == 7


@pytest.mark.parametrize(
    ("forgery", "refutes"),
    [
        (Suspect(ME.id, 2**64 - 1, "west/agent-1"), 0),
        (Dead(ME.id, 2**64 - 1, "west/agent-1"), 0),
        (Alive(ME.id, "east", ME.address, 2**64 - 1), 1),
        (Left(ME.id, 2**63), 1),
    ],
    ids=["suspect", "dead", "alive", "left"],
)
def test_a_claim_at_the_top_of_64_bits_is_not_followed(forgery: Update, refutes: int) -> None:
    """An accuser does not speak for our incarnation (an accusation above ours is about no
    incarnation we claimed: dropped), and following a claim of ours this high would leave
    no room to refute: memberlist's max(theirs) + 1 would no longer encode."""
    m = ring(2)
    m.receive(Gossip("west/agent-1", (forgery,)), "x", 0.1)
    assert (m.me.incarnation, m.me.state, m.refutes) == (refutes, ALIVE, refutes)
    refutation = Gossip(ME.id, m._broadcasts.take(8, 8))
    assert refutation.updates == ((alive(ME, 1),) if refutes else ())
    for message in (refutation, m._push_pull_message(True)):
        to_pb(message).SerializeToString()  # everything we send still fits the wire


def test_our_record_in_a_peers_table_tells_a_restarted_agent_its_old_incarnation() -> None:
    """A restarted agent starts at 0; the ring remembers it dead at 7 (with TLS, 7 carries
    our own signature). Its push-pull reply makes us refute above it, so the ring takes
    our return."""
    m = ring(2)
    for state in (DEAD, ALIVE, LEFT):
        before = m.me.incarnation
        old_self = Member(ME.id, "east", ME.address, before + 7, state)
        m.receive(PushPull("west/agent-1", "10.0.1.1:7946", (old_self,), reply=True), "x", 0.1)
        assert m.me.incarnation == before + 8, state
    m.receive(PushPull("west/agent-1", "10.0.1.1:7946", (replace(ME, state=DEAD),), True), "x", 0.2)
    assert (m.refutes, m._broadcasts.take(8, 8)[0]) == (3, alive(ME, m.me.incarnation))


def test_members_keep_the_proof_of_their_own_last_claim_and_pass_it_on() -> None:
    m = ring(3)
    p = peer(1)
    m.receive(Gossip("x", (Alive(p.id, p.cluster_id, p.address, 2, b"alive-2"),)), "x", 1.0)
    assert m.members[p.id].proof == b"alive-2"
    m.receive(Gossip("x", (Suspect(p.id, 2, "west/agent-2", b"by-2"),)), "x", 1.1)
    assert (m.members[p.id].state, m.members[p.id].incarnation) == (SUSPECT, 2)
    assert m.members[p.id].proof == b"alive-2"  # still the member's own word at 2
    table = {r.id: r for r in m._push_pull_message(False).members}
    assert (table[p.id].state, table[p.id].proof) == (SUSPECT, b"alive-2")
    relayed = m._broadcasts.take(8, 8)
    assert Suspect(p.id, 2, "west/agent-2", b"by-2") in relayed  # forwarded untouched
    m.receive(Gossip("x", (Left(p.id, 2, b"left-2"),)), "x", 1.2)
    assert (m.members[p.id].state, m.members[p.id].proof) == (LEFT, b"left-2")
    q = peer(2)
    merged = Member(q.id, q.cluster_id, q.address, 5, ALIVE, b"alive-5")
    m.receive(PushPull("west/agent-3", "10.0.1.3:7946", (merged,), True), "x", 1.3)
    assert m.members[q.id] == merged


def test_a_stale_accusation_about_us_gets_our_current_alive_back() -> None:
    m = ring(2)
    m.receive(Gossip("x", (Suspect(ME.id, 0, peer(1).id),)), "x", 0.1)
    m.messages_to_send(0.1)
    drive(m, 2.0)  # the refutation is gossiped until its retransmit limit
    assert m.me.incarnation == 1
    assert ME.id not in m._broadcasts
    # A member that missed it probes us with its old suspicion attached (buddy system).
    m.receive(
        Ping(7, ME.id, peer(2).id, peer(2).address, (Suspect(ME.id, 0, peer(2).id),)), "x", 3.0
    )
    ((_dest, ack),) = [(d, msg) for d, msg in m.messages_to_send(3.0) if isinstance(msg, Ack)]
    assert isinstance(ack, Ack)
    assert ack.updates == (alive(ME, 1),)
    assert m.me.incarnation == 1
    assert m.refutes == 1


P = peer(1)
RULES: list[tuple[str, list[Update], Update, MemberState | None, int, type[Event] | None]] = [
    ("same alive", [alive(P, 1)], alive(P, 1), ALIVE, 1, None),
    ("newer alive", [alive(P, 1)], alive(P, 2), ALIVE, 2, None),
    ("moved", [alive(P, 1)], Alive(P.id, "west", "10.7.7.7:7946", 2), ALIVE, 2, MemberUpdated),
    ("old suspect", [alive(P, 1)], Suspect(P.id, 0, "x"), ALIVE, 1, None),
    ("suspect", [alive(P, 1)], Suspect(P.id, 1, "x"), SUSPECT, 1, MemberSuspected),
    # An accuser does not speak for the member's incarnation: one above the member's own
    # claim is dropped (so a forged 2**64 - 1 cannot push it where a refutation cannot
    # follow, nor stay unrefutable to be replayed after every refutation).
    ("newer suspect", [alive(P, 1)], Suspect(P.id, 2, "x"), ALIVE, 1, None),
    ("newer dead", [alive(P, 1)], Dead(P.id, 2**64 - 1, "x"), ALIVE, 1, None),
    ("same alive on suspect", [Suspect(P.id, 0, "x")], alive(P, 0), SUSPECT, 0, None),
    ("refuted", [Suspect(P.id, 0, "x")], alive(P, 1), ALIVE, 1, MemberAlive),
    ("dead", [alive(P, 1)], Dead(P.id, 1, "x"), DEAD, 1, MemberDied),
    ("old dead", [alive(P, 2)], Dead(P.id, 1, "x"), ALIVE, 2, None),
    ("dead on suspect", [Suspect(P.id, 0, "x")], Dead(P.id, 0, "y"), DEAD, 0, MemberDied),
    ("same alive on dead", [Dead(P.id, 0, "x")], alive(P, 0), DEAD, 0, None),
    ("back from dead", [Dead(P.id, 0, "x")], alive(P, 1), ALIVE, 1, MemberAlive),
    ("suspect on dead", [Dead(P.id, 0, "x")], Suspect(P.id, 1, "x"), DEAD, 0, None),
    ("left on dead", [Dead(P.id, 0, "x")], Left(P.id, 0), LEFT, 0, MemberLeft),
    ("left", [alive(P, 1)], Left(P.id, 1), LEFT, 1, MemberLeft),
    ("old left", [alive(P, 1)], Left(P.id, 0), ALIVE, 1, None),
    ("dead on left", [Left(P.id, 0)], Dead(P.id, 1, "x"), LEFT, 0, None),
    ("back from left", [Left(P.id, 0)], alive(P, 1), ALIVE, 1, MemberAlive),
]


@pytest.mark.parametrize(
    ("before", "update", "state", "incarnation", "event"),
    [r[1:] for r in RULES],
    ids=[r[0] for r in RULES],
)
def test_updates_are_ordered_by_incarnation_then_gravity(
    before: list[Update],
    update: Update,
    state: MemberState,
    incarnation: int,
    event: type[Event] | None,
) -> None:
    m = ring(3)  # peer(1) is alive at incarnation 0
    m.receive(Gossip("x", tuple(before)), "x", 1.0)
    drain_events(m)
    m.receive(Gossip("x", (update,)), "x", 2.0)
    record = m.members[P.id]
    assert (record.state, record.incarnation) == (state, incarnation)
    assert [type(e) for e in drain_events(m)] == ([event] if event else [])


def test_unknown_members_are_learned_only_from_alive() -> None:
    m = ring(1)
    stranger = peer(7)
    m.receive(Gossip("x", (Suspect(stranger.id, 3, "x"), Dead(stranger.id, 3, "x"))), "x", 0.1)
    assert stranger.id not in m.members
    m.receive(Gossip("x", (alive(stranger, 2),)), "x", 0.2)
    assert [type(e) for e in drain_events(m)] == [MemberJoined]


def test_push_pull_merges_a_remote_dead_verdict_as_a_probe_and_replies() -> None:
    m = ring(3)
    records = (
        Member(peer(1).id, "west", peer(1).address, 0, DEAD),
        Member(peer(2).id, "west", peer(2).address, 0, LEFT),
        Member(peer(8).id, "south", "10.0.8.8:7946", 4, ALIVE),
    )
    m.receive(PushPull(peer(3).id, peer(3).address, records), "x", 1.0)
    assert m.members[peer(1).id].state == ALIVE  # until our own probe says otherwise
    assert m.members[peer(2).id].state == LEFT
    assert m.members[peer(8).id] == records[2]
    ((dest, reply),) = [(d, msg) for d, msg in m.messages_to_send(1.0) if isinstance(msg, PushPull)]
    assert dest == peer(3).address
    assert reply.reply
    assert {r.id for r in reply.members} == {ME.id, *(peer(i).id for i in (1, 2, 3, 8))}
    m.receive(PushPull(peer(3).id, peer(3).address, records, reply=True), "x", 1.1)
    assert not [msg for _d, msg in m.messages_to_send(1.1) if isinstance(msg, PushPull)]


def test_renewing_announces_a_new_incarnation_without_counting_a_refutation() -> None:
    """New signing keys (the pump sees them): peers must hold a claim of ours made with them."""
    m = ring(2)
    m.renew(1.0)
    assert (m.me.incarnation, m.refutes, m.awareness.score) == (1, 0, 0)
    assert m._broadcasts.take(8, 8) == (alive(ME, 1),)
    m.leave(2.0)
    m.renew(2.1)  # leaving: nothing more to announce
    assert m.me.incarnation == 1


def test_one_cluster_holds_at_most_so_many_records_and_the_longest_down_make_room() -> None:
    """A cluster cannot fill the table with made-up members (with TLS, its own key signs
    them), while a cluster's rollouts (new pod names, the old ones dead) still find room."""
    config = replace(LAN, max_members_per_cluster=3)
    m = Membership(config, ME, FirstRng())
    m.start(0.0)
    fakes = tuple(Alive(f"north/fake-{i}", "north", f"10.0.9.{i}:7946", 0) for i in range(5))
    m.receive(Gossip("north/fake-0", fakes), "x", 1.0)
    assert sorted(i for i in m.members if i.startswith("north/")) == [
        "north/fake-0",
        "north/fake-1",
        "north/fake-2",
    ]
    assert m.refused == {"cluster_full": 2}
    m.receive(Gossip("x", (Dead("north/fake-1", 0, ME.id),)), "x", 2.0)
    m.receive(Gossip("x", (Dead("north/fake-0", 0, ME.id),)), "x", 2.5)
    m.receive(Gossip("x", (fakes[3],)), "x", 3.0)
    assert "north/fake-3" in m.members
    assert "north/fake-1" not in m.members  # down the longest (since 2.0)
    assert m.members["north/fake-0"].state == DEAD
    m.receive(Gossip("x", (alive(peer(1)),)), "x", 3.0)  # other clusters are not affected
    assert peer(1).id in m.members


def test_a_merged_dead_record_makes_us_probe_never_accuse() -> None:
    """A peer's table saying "dead" is that peer's view: repeated in our name it would count
    as an independent confirmation at every other agent. We learn the member's own claim
    the record carries and probe the member next; only our own failed probe accuses."""
    m = ring(4)
    target = peer(3)
    records = (
        Member(target.id, "west", target.address, 2, DEAD, b"its-alive-at-2"),
        Member("north/agent-9", "north", "10.0.9.9:7946", 1, SUSPECT, b"its-alive-at-1"),
    )
    # A new cycle in which the target comes last by itself.
    probes = m._table._probes
    others = [p for p in probes.order if p != target.id]
    probes.reset([*others, target.id])
    probes._order[:] = [*others, target.id]  # reset shuffled; this cycle's order is fixed
    m.receive(PushPull(peer(1).id, peer(1).address, records, reply=True), "x", 0.1)
    record = m.members[target.id]
    assert (record.state, record.incarnation, record.proof) == (ALIVE, 2, b"its-alive-at-2")
    assert "north/agent-9" not in m.members  # unknown members are learned only from alive
    assert not [u for u in m._broadcasts.take(16, 16) if isinstance(u, Suspect | Dead)]
    sent = drive(m, 1.2, silent=(target.id,))
    probes = [(d, msg) for _t, d, msg in sent if isinstance(msg, Ping)]
    assert probes[0][0] == target.address
    assert m.members[target.id].state == SUSPECT  # now on our own evidence
    accusations = [u for _t, _d, msg in sent for u in getattr(msg, "updates", ())]
    assert Suspect(target.id, 2, ME.id) in accusations


# ---------------------------------------------------------------------------- spreading


def test_broadcast_queue_sends_fewest_transmitted_first_and_drops_at_the_limit() -> None:
    queue = BroadcastQueue()
    a, b, c = alive(peer(1), 1), alive(peer(2), 1), alive(peer(3), 1)
    queue.push(a)
    assert queue.take(1, limit=3) == (a,)
    assert queue.take(1, limit=3) == (a,)
    queue.push(b)
    queue.push(c)
    assert queue.take(1, limit=3) == (c,)  # fewest transmits, then newest first
    assert queue.take(5, limit=3) == (b, c, a)  # a is sent a third time, and dropped
    assert queue.take(5, limit=3) == (b, c)
    assert queue.take(5, limit=3) == (b,)
    assert len(queue) == 0
    queue.push(a)
    queue.push(Dead(peer(1).id, 1, "x"))  # supersedes the alive about the same member
    assert queue.take(5, limit=3) == (Dead(peer(1).id, 1, "x"),)


@pytest.mark.parametrize("peers", [4, 9])
def test_an_update_rides_on_exactly_the_retransmit_limit_of_messages(peers: int) -> None:
    m = ring(peers)
    drive(m, 5.0)
    fresh = peer(50, "south")
    m.receive(Gossip("x", (alive(fresh),)), "x", 5.01)
    sent = [msg for _d, msg in m.messages_to_send(5.01)]
    sent += [msg for _t, _d, msg in drive(m, 60.0)]
    carriers = [msg for msg in sent if alive(fresh) in getattr(msg, "updates", ())]
    n = peers + 2
    assert len(carriers) == retransmit_limit(4, n) == (4 if n < 10 else 8)
    gossips = [msg for msg in carriers if isinstance(msg, Gossip)]
    assert gossips  # pending updates do not wait for the next probe


def test_gossip_goes_to_gossip_nodes_members_only_while_updates_are_pending() -> None:
    m = ring(6)
    drive(m, 3.0)
    assert not [msg for _t, _d, msg in drive(m, 10.0) if isinstance(msg, Gossip)]
    m.receive(Gossip("x", (alive(peer(60)),)), "x", 10.05)
    sent = [(10.05, d, msg) for d, msg in m.messages_to_send(10.05)] + drive(m, 10.05)
    gossip = of_type(sent, Gossip)
    assert len(gossip) == LAN.gossip_nodes
    assert {t for t, _d, _g in gossip} == {10.05}


def test_awareness_stretches_the_gossip_interval() -> None:
    m = ring(6)
    drive(m, 10.0)
    m.awareness.apply(3)  # this agent has evidence that it is the slow one
    m.receive(Gossip("x", (alive(peer(60)),)), "x", 10.0)
    m.messages_to_send(10.0)
    sent = drive(m, 10.0 + 4 * LAN.gossip_interval_s - 0.01, acks=False)
    assert [t for t, _d, _g in of_type(sent, Gossip)] == [10.0] * LAN.gossip_nodes
    later = of_type(drive(m, 10.0 + 4 * LAN.gossip_interval_s, acks=False), Gossip)
    assert later  # the update's last transmissions, 4 intervals on, not 1
    assert all(t == pytest.approx(10.0 + 4 * LAN.gossip_interval_s) for t, _d, _g in later)
    # Below half the score's range (one refutation, a late timer) gossip keeps its pace.
    assert Awareness(8).scale_when_overloaded(0.2) == 0.2
    lightly = Awareness(8)
    lightly.apply(2)
    assert lightly.scale_when_overloaded(0.2) == 0.2


# ----------------------------------------------------------- push-pull, rejoin, leave


def test_dead_and_left_members_last_addresses_are_retried_slowly() -> None:
    m = ring(4)
    m.receive(Gossip("x", (Dead(peer(1).id, 0, "x"), Left(peer(2).id, 0))), "x", 0.0)
    m.messages_to_send(0.0)
    sent = of_type(drive(m, 95.0), PushPull)
    retries = [(t, d) for t, d, msg in sent if d in (peer(1).address, peer(2).address)]
    assert retries == [
        (0.0, peer(1).address),
        (30.0, peer(2).address),
        (60.0, peer(1).address),
        (90.0, peer(2).address),
    ]


def test_push_pull_goes_to_one_random_alive_member_each_period() -> None:
    m = ring(4)
    sent = of_type(drive(m, 65.0), PushPull)
    times = [t for t, d, _p in sent]
    assert times == [0.0, 30.0, 60.0]
    assert all(not p.reply and p.source_address == ME.address for _t, _d, p in sent)


def test_seeds_are_retried_ever_less_often_while_we_know_nobody() -> None:
    m = Membership(LAN, ME, FirstRng())
    m.start(0.0, seeds=["10.0.2.1:7946", ME.address])
    assert [d for d, _msg in m.messages_to_send(0.0)] == ["10.0.2.1:7946"]
    sent = of_type(drive(m, 100.0), PushPull)
    # The wait doubles from join_retry_interval_s (1 s) up to join_retry_max_s (30 s).
    assert [t for t, d, _p in sent if d == "10.0.2.1:7946"] == [
        1.0,
        3.0,
        7.0,
        15.0,
        31.0,
        61.0,
        91.0,
    ]
    m.receive(PushPull(peer(1).id, peer(1).address, (peer(1),), reply=True), "x", 91.1)
    sent = of_type(drive(m, 150.0), PushPull)
    assert [d for _t, d, _p in sent if d == "10.0.2.1:7946"] == []


def test_a_lonely_retry_contacts_join_fanout_seeds_and_starts_short_again() -> None:
    seeds = [f"10.0.2.{i}:7946" for i in range(1, 50)]
    m = Membership(LAN, ME, random.Random(5))
    m.start(0.0, seeds=seeds)
    assert len([d for d, _msg in m.messages_to_send(0.0)]) == 49  # the first join: all at once
    sent = of_type(drive(m, 3.5), PushPull)
    retries = [(t, d) for t, d, _p in sent if d in seeds]
    assert [t for t, _d in retries] == [1.0] * LAN.join_fanout + [3.0] * LAN.join_fanout
    assert len({d for _t, d in retries}) > LAN.join_fanout  # random seeds, not the same ones
    # A live member heard, then lost again: the next retries start at the short wait.
    m.receive(PushPull(peer(1).id, peer(1).address, (peer(1),), reply=True), "x", 3.6)
    m.messages_to_send(3.6)
    drive(m, 5.0)
    m.receive(Gossip("x", (Dead(peer(1).id, 0, "x"),)), "x", 5.1)
    m.messages_to_send(5.1)
    sent = of_type(drive(m, 9.0), PushPull)
    again = sorted({t for t, d, _p in sent if d in seeds})
    # The first within a second of the last look that found a member, then 2 s later.
    assert 5.1 <= again[0] <= 6.0
    assert again[1] == pytest.approx(again[0] + 2.0)


def test_leave_broadcasts_left_stops_probing_and_ignores_accusations() -> None:
    m = ring(4)
    drive(m, 1.5)
    m.leave(1.6)
    assert m.me.state == LEFT
    assert not m.leave_done
    sent = [(1.6, d, msg) for d, msg in m.messages_to_send(1.6)] + drive(m, 5.0)
    assert not of_type(sent, Ping)
    assert all(Left(ME.id, 0) in g.updates for _t, _d, g in of_type(sent, Gossip))
    assert m.leave_done
    m.receive(Gossip("x", (Dead(ME.id, 0, "x"),)), "x", 5.1)
    assert (m.me.state, m.me.incarnation, m.refutes) == (LEFT, 0, 0)
    assert m.get_timer() is None or not of_type(drive(m, 40.0), PushPull)


# --------------------------------------------------------------------- local health


def test_leaving_alone_is_done_at_once() -> None:
    m = Membership(LAN, ME, FirstRng())
    m.start(0.0)
    m.leave(0.5)
    assert m.leave_done


def test_awareness_stretches_probe_timeout_and_interval() -> None:
    m = ring(5)
    m.awareness.apply(2)
    assert of_type(drive(m, 0.0, acks=False), Ping)[0][0] == 0.0
    requests = of_type(drive(m, 2.0, acks=False), PingReq)
    assert [t for t, _d, _r in requests] == [3 * LAN.probe_timeout_s] * 3

    m = ring(5)
    m.awareness.apply(2)
    pings = of_type(drive(m, 5.0), Ping)  # acked: the score goes down by one each time
    assert [t for t, _d, _p in pings] == [0.0, 3.0, 5.0]


def test_awareness_goes_down_with_acks_and_up_when_no_relay_could_help() -> None:
    m = ring(1)  # nobody to relay through
    _first, second = of_type(drive(m, 1.0, acks=False), Ping)
    assert m.awareness.score == 1
    assert m.members[peer(1).id].state == SUSPECT
    assert second[0] == 1.0
    m.receive(Ack(second[2].seq, peer(1).id), "x", 1.1)
    assert m.awareness.score == 0
    m.awareness.apply(100)
    assert m.awareness.score == LAN.awareness_max_multiplier - 1
    assert Awareness(8).scale(0.5) == 0.5


def test_a_timer_handled_late_counts_against_our_health_but_never_skips_the_relays() -> None:
    m = ring(5)
    ping = of_type(drive(m, 0.0, acks=False), Ping)[0][2]
    assert m.get_timer() == 0.5
    m.handle_timer(2.5)  # our loop was stalled for two seconds
    assert m.stats.late_timers == 1
    assert m.awareness.score == 1
    requests = [msg for _d, msg in m.messages_to_send(2.5) if isinstance(msg, PingReq)]
    assert len(requests) == 3
    assert m.members[ping.target_id].state == ALIVE  # relays get their window first
    assert m.get_timer() == pytest.approx(2.5 + 2 * (LAN.probe_interval_s - LAN.probe_timeout_s))


# ------------------------------------------------------------------- cluster liveness


def test_a_cluster_is_down_when_all_its_members_are_dead_or_left() -> None:
    members = [
        Member("east/a", "east", "1", 0, ALIVE),
        Member("west/a", "west", "2", 0, DEAD),
        Member("west/b", "west", "3", 0, SUSPECT),
        Member("south/a", "south", "4", 0, DEAD),
        Member("south/b", "south", "5", 0, LEFT),
        Member("north/a", "north", "6", 0, SUSPECT),
    ]
    assert cluster_liveness(members) == {"east": True, "west": True, "south": False, "north": True}
    assert cluster_liveness(members, suspect_is_down=True) == {
        "east": True,
        "west": False,
        "south": False,
        "north": False,
    }
    assert cluster_liveness([]) == {}
