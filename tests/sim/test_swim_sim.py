"""SWIM + Lifeguard under a seeded simulated network: bounds asserted over many seeds.

Each test runs both profiles: ``Config()`` (memberlist's LAN defaults) and ``Config.fast()``.
Links default to 1-3 ms of delay. Every assertion message starts with the seed; rerun one
case with ``pytest 'tests/sim/test_swim_sim.py::test_name[fast-7]'``.

The detection bound (``detection_bound_s``), from the protocol:

    bound = (6 + 1) * probe_interval + min_suspicion_timeout(N) + 1 s

- the first probe of the killed member starts within 6 intervals: N-1 members each probe one
  member per interval in their own shuffled order, so each interval the victim is probed
  with probability about 1 - 1/e and the chance of 6 empty intervals is e^-6 (0.25%);
- that probe fails one interval later and its prober starts suspecting;
- k = suspicion_mult - 2 other members probe it and confirm well within the minimum
  timeout, so the first suspecter's timer is the minimum, mult * max(1, log10 N) * interval;
- its Dead then reaches everyone by gossip, in much less than the 1 s allowed.
At 30 members that is 7 + 5.9 + 1 = 13.9 s for LAN and 3.5 + 3.7 + 1 = 8.2 s for fast.
The worst case with no confirmations at all is 6x the minimum timeout (memberlist's
``SuspicionMaxTimeoutMult``); this test would catch a change that fell back to it.
"""

from __future__ import annotations

import pytest

from mesh.swim.config import suspicion_timeout_s
from mesh.swim.membership import Config
from mesh.swim.messages import (
    Event,
    MemberDied,
    MemberJoined,
    MemberLeft,
    MemberState,
    MemberSuspected,
)
from tests.sim.network import Link, SimNetwork, address_of, build_ring, member_ids

PROFILES = {"lan": Config(), "fast": Config.fast()}
SEEDS = range(20)
ALIVE, DEAD, LEFT = MemberState.ALIVE, MemberState.DEAD, MemberState.LEFT


def detection_bound_s(config: Config, n: int) -> float:
    interval = config.probe_interval_s
    return 7 * interval + suspicion_timeout_s(config.suspicion_mult, n, interval) + 1.0


def first_seen(
    net: SimNetwork, kind: type[Event], member_id: str, since: float
) -> dict[str, float]:
    """observer id -> first time it reported ``kind`` about ``member_id`` after ``since``."""
    seen: dict[str, float] = {}
    for time, observer, event in net.log:
        if time >= since and isinstance(event, kind) and event.member.id == member_id:
            seen.setdefault(observer, time)
    return seen


def deaths_since(net: SimNetwork, since: float) -> list[tuple[float, str, str]]:
    return [
        (round(t, 2), observer, e.member.id)
        for t, observer, e in net.log
        if t >= since and isinstance(e, MemberDied)
    ]


def cases(seeds: range = SEEDS) -> list[tuple[str, int]]:
    return [(profile, seed) for profile in PROFILES for seed in seeds]


@pytest.mark.parametrize(("profile", "seed"), cases())
def test_a_killed_member_is_declared_dead_by_every_live_member_within_the_bound(
    profile: str, seed: int
) -> None:
    config, n = PROFILES[profile], 30
    net = SimNetwork(seed)
    addresses = build_ring(net, n, config)
    net.run_until(net.now + 5.0 + seed / 20)
    victim = addresses[1 + seed % (n - 1)]
    victim_id = member_ids(net)[victim]
    killed_at = net.now
    net.kill(victim)
    bound = detection_bound_s(config, n)

    net.run_until(killed_at + bound + 5.0)

    died = first_seen(net, MemberDied, victim_id, killed_at)
    live = set(member_ids(net).values())
    assert set(died) == live, f"seed {seed}: {sorted(live - set(died))} never saw it dead"
    worst = max(died.values()) - killed_at
    assert worst <= bound, f"seed {seed}: last member saw it dead after {worst:.2f} s > {bound}"
    others = [d for d in deaths_since(net, 0.0) if d[2] != victim_id]
    assert not others, f"seed {seed}: false deaths {others}"


@pytest.mark.parametrize("profile", PROFILES)
def test_no_live_member_is_declared_dead_at_5_percent_loss_over_10_minutes(profile: str) -> None:
    config, n = PROFILES[profile], 8
    suspicions = 0
    for seed in range(10):
        net = SimNetwork(seed)
        build_ring(net, n, config)
        # 5% loss on every link, both ways, plus duplicates and 5-25 ms of jitter (reordering).
        net.default_link = Link(loss=0.05, delay_s=0.005, jitter_s=0.02, duplicate=0.02)
        start = net.now
        net.run_until(start + 600.0)
        assert not deaths_since(net, start), f"seed {seed}: {deaths_since(net, start)}"
        assert all(m.live_members() == n for m in net.memberships()) or net.run_until(
            net.now + 5.0, lambda net=net: all(m.live_members() == n for m in net.memberships())
        ), f"seed {seed}: views do not hold {n} live members"
        suspicions += sum(
            1 for t, _o, e in net.log if t >= start and isinstance(e, MemberSuspected)
        )
    # Loss did cause false suspicions, and every one was refuted in time.
    assert suspicions > 0


@pytest.mark.parametrize("n", [5, 30])
@pytest.mark.parametrize("profile", PROFILES)
def test_a_member_stalled_for_2_s_is_not_declared_dead(profile: str, n: int) -> None:
    config = PROFILES[profile]
    suspected = 0
    for seed in SEEDS:
        net = SimNetwork(seed)
        addresses = build_ring(net, n, config)
        net.run_until(net.now + 3.0 + seed / 20)
        stalled = addresses[1 + seed % (n - 1)]
        stalled_id = member_ids(net)[stalled]
        start = net.now
        net.stall(stalled, 2.0)
        net.run_until(start + 30.0)
        assert not deaths_since(net, start), f"seed {seed}: {deaths_since(net, start)}"
        suspected += bool(first_seen(net, MemberSuspected, stalled_id, start))
        assert net.nodes[stalled].membership.stats.late_timers >= 1, f"seed {seed}"
    # The stall was long enough to make the member suspect (it had to refute) in most runs.
    assert suspected >= len(SEEDS) // 2, suspected


@pytest.mark.parametrize("profile", PROFILES)
def test_a_member_that_hears_badly_gets_nobody_declared_dead(profile: str) -> None:
    """Lifeguard's case: one member loses half of what is sent to it, so its probes of
    healthy members fail and it accuses them. Each accusation must be refuted before any
    timer runs out, including the deaf member's own (it hears the refutations badly too).
    (In this simulation the refutations win even with Lifeguard's parts turned off: the
    accused hears the accusation within milliseconds. The parts matter when the network is
    slow as well as lossy; they are checked rule by rule in tests/unit/test_swim.py.)"""
    config, n = PROFILES[profile], 10
    accusations = 0
    for seed in range(5):
        net = SimNetwork(seed)
        addresses = build_ring(net, n, config)
        deaf = addresses[2]
        deaf_id = member_ids(net)[deaf]
        for address in addresses:
            net.links[(address, deaf)] = Link(loss=0.5)
        start = net.now
        net.run_until(start + 300.0)
        assert not deaths_since(net, start), f"seed {seed}: {deaths_since(net, start)}"
        accusations += sum(
            1
            for t, observer, e in net.log
            if t >= start
            and observer == deaf_id
            and isinstance(e, MemberSuspected)
            and e.source_id == deaf_id
        )
    assert accusations > 0


@pytest.mark.parametrize(("profile", "seed"), cases(range(10)))
def test_after_an_asymmetric_partition_heals_every_view_agrees(profile: str, seed: int) -> None:
    config, n = PROFILES[profile], 12
    net = SimNetwork(seed)
    addresses = build_ring(net, n, config)
    ids = member_ids(net)
    side_a, side_b = addresses[: n // 2], addresses[n // 2 :]
    net.block(side_a, side_b)  # a -> b is dropped; b -> a still flows
    net.run_until(net.now + 60.0)
    for observers, others in ((side_a, side_b), (side_b, side_a)):
        for observer in observers:
            states = {net.nodes[observer].membership.members[ids[o]].state for o in others}
            assert states == {DEAD}, f"seed {seed}: {ids[observer]} sees the other side {states}"
    net.heal()
    healed_at = net.now
    bound = config.reconnect_interval_s + 5.0
    everyone_alive = dict.fromkeys(ids.values(), ALIVE)

    agreed = net.run_until(healed_at + bound, lambda: net.views_agree(everyone_alive))

    assert agreed, f"seed {seed}: views still differ {bound} s after the heal"


@pytest.mark.parametrize(("profile", "seed"), cases(range(10)))
def test_a_graceful_leave_is_seen_as_left_not_dead(profile: str, seed: int) -> None:
    config, n = PROFILES[profile], 30
    net = SimNetwork(seed)
    addresses = build_ring(net, n, config)
    leaver = addresses[1 + seed % (n - 1)]
    leaver_id = member_ids(net)[leaver]
    start = net.now
    net.leave(leaver)
    leaving = net.nodes[leaver].membership
    assert net.run_until(start + 5.0, lambda: leaving.leave_done), f"seed {seed}"
    net.kill(leaver)

    net.run_until(net.now + 60.0)

    left = first_seen(net, MemberLeft, leaver_id, start)
    assert set(left) == set(member_ids(net).values()), f"seed {seed}: not all saw it leave"
    assert max(left.values()) - start <= 1.0, f"seed {seed}: {max(left.values()) - start} s"
    assert not deaths_since(net, start), f"seed {seed}: {deaths_since(net, start)}"


@pytest.mark.parametrize("same_id", [True, False], ids=["same-id", "new-id"])
@pytest.mark.parametrize(("profile", "seed"), cases(range(5)))
def test_a_restarted_member_is_alive_again(profile: str, seed: int, same_id: bool) -> None:
    config, n = PROFILES[profile], 10
    net = SimNetwork(seed)
    addresses = build_ring(net, n, config)
    victim = addresses[3]
    old_id = member_ids(net)[victim]
    net.kill(victim)
    dead_everywhere = dict.fromkeys([old_id], DEAD)
    assert net.run_until(net.now + 60.0, lambda: net.views_agree(dead_everywhere)), seed
    dead_incarnation = net.nodes[addresses[0]].membership.members[old_id].incarnation
    restarted_at = net.now
    new_id = old_id if same_id else old_id + "-restarted"

    # Same address, incarnation 0: it learns from the seed that it was declared dead and
    # refutes with a higher incarnation.
    net.add(new_id, victim, config, seeds=[addresses[0]])

    back = dict.fromkeys(member_ids(net).values(), ALIVE)
    assert net.run_until(restarted_at + 3.0, lambda: net.views_agree(back)), f"seed {seed}"
    incarnation = net.nodes[addresses[0]].membership.members[new_id].incarnation
    if same_id:
        assert incarnation > dead_incarnation, f"seed {seed}"
    else:
        old_views = [net.nodes[a].membership for a in addresses if a != victim]
        assert all(m.members[old_id].state == DEAD for m in old_views), f"seed {seed}"
        joined = first_seen(net, MemberJoined, new_id, restarted_at)
        assert len(joined) == n - 1, f"seed {seed}"
    net.run_until(net.now + 30.0)
    assert not deaths_since(net, restarted_at), f"seed {seed}"


def test_the_simulator_is_deterministic_per_seed() -> None:
    logs = []
    for _ in range(2):
        net = SimNetwork(3, Link(loss=0.05, jitter_s=0.01, duplicate=0.05))
        build_ring(net, 10, Config.fast())
        net.kill(address_of(4))
        net.run_until(net.now + 20.0)
        logs.append([(t, o, repr(e)) for t, o, e in net.log])
    assert logs[0] == logs[1]
