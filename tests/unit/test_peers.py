"""The peer table: seeds, learned members, backoff, reachability, cluster health, addresses."""

from __future__ import annotations

import itertools

import pytest

from mesh.address import split_host_port, valid_host_port
from mesh.ring.peers import PeerTable, PeerTimings

SELF = "10.0.0.1:7946"
SEED = "10.0.0.2:7946"
LEARNED = "10.0.0.3:7946"
T = PeerTimings(interval_s=0.5, peer_timeout_s=2.0, max_backoff_s=4.0, forget_after_s=300.0)


def table(seeds: list[str] | None = None, timings: PeerTimings = T) -> PeerTable:
    return PeerTable("east", SELF, [SEED] if seeds is None else seeds, timings)


# ---------------------------------------------------------------------------- membership


def test_seeds_are_due_at_start() -> None:
    peers = table([SEED, LEARNED])
    assert sorted(peers.due(0.0)) == [SEED, LEARNED]


def test_seeds_are_kept_after_any_number_of_failures() -> None:
    peers = table()
    now = 0.0
    for _ in range(200):
        peers.failed(SEED, now)
        now += 10.0
    assert now > T.forget_after_s * 5
    assert SEED in peers.peers
    assert peers.peers[SEED].seed is True
    assert SEED in peers.due(now + T.max_backoff_s)


def test_learned_member_forgotten_after_silence() -> None:
    peers = table()
    peers.learned("west", LEARNED, now=0.0)
    assert LEARNED in peers.due(0.0)
    peers.failed(LEARNED, now=100.0)
    assert LEARNED in peers.peers
    peers.failed(LEARNED, now=300.0)  # silent for exactly forget_after_s: still kept
    assert LEARNED in peers.peers
    peers.failed(LEARNED, now=300.5)
    assert LEARNED not in peers.peers
    assert LEARNED not in peers.due(1000.0)


def test_learned_member_kept_while_reported() -> None:
    peers = table()
    peers.learned("west", LEARNED, now=0.0)
    now = 0.0
    while now < 2000.0:
        peers.failed(LEARNED, now)
        now += 50.0
        peers.learned("west", LEARNED, now)  # someone still reports it
    peers.failed(LEARNED, now + 299.0)
    assert LEARNED in peers.peers
    assert peers.peers[LEARNED].cluster_id == "west"


def test_member_that_answered_recently_is_kept() -> None:
    peers = table()
    peers.learned("west", LEARNED, now=0.0)
    peers.succeeded(LEARNED, "west", now=250.0)
    peers.failed(LEARNED, now=500.0)  # 250 s since last answer
    assert LEARNED in peers.peers
    peers.failed(LEARNED, now=551.0)  # 301 s
    assert LEARNED not in peers.peers


def test_learned_does_not_reset_schedule_or_cluster() -> None:
    peers = table()
    peers.learned("west", LEARNED, now=0.0)
    peers.failed(LEARNED, now=0.0)
    next_attempt = peers.peers[LEARNED].next_attempt
    peers.learned("other", LEARNED, now=0.1)
    assert peers.peers[LEARNED].next_attempt == next_attempt
    assert peers.peers[LEARNED].cluster_id == "west"


def test_learned_fills_in_cluster_of_seed() -> None:
    peers = table()
    assert peers.peers[SEED].cluster_id == ""
    peers.learned("west", SEED, now=1.0)
    assert peers.peers[SEED].cluster_id == "west"
    assert peers.peers[SEED].seed is True


def test_failed_for_unknown_address_is_ignored() -> None:
    peers = table()
    peers.failed("10.9.9.9:1", now=1.0)
    assert "10.9.9.9:1" not in peers.peers


def test_forget_drops_any_peer() -> None:
    peers = table()
    peers.forget(SEED)
    peers.forget("never-known:1")
    assert peers.peers == {}


def test_self_address_is_never_added() -> None:
    peers = table([SELF, SEED])
    assert SELF not in peers.peers
    peers.learned("east", SELF, now=1.0)
    peers.learned("west", "", now=1.0)
    assert set(peers.peers) == {SEED}
    assert SELF not in peers.due(100.0)
    assert all(address != SELF for _, address in peers.members(1.0))


# ------------------------------------------------------------------------------- backoff


def test_backoff_grows_and_is_capped() -> None:
    peers = table()
    delays = []
    now = 0.0
    for _ in range(8):
        peers.failed(SEED, now)
        delay = peers.peers[SEED].next_attempt - now
        delays.append(delay)
        assert SEED not in peers.due(now + delay - 0.01)
        assert SEED in peers.due(now + delay)
        now += delay
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == T.max_backoff_s
    assert delays[-1] == T.max_backoff_s


def test_success_resets_backoff() -> None:
    peers = table()
    for i in range(5):
        peers.failed(SEED, float(i))
    peers.succeeded(SEED, "west", now=10.0)
    assert peers.peers[SEED].failures == 0
    assert peers.peers[SEED].next_attempt == 10.0 + T.interval_s
    assert SEED not in peers.due(10.4)
    assert SEED in peers.due(10.5)
    peers.failed(SEED, now=11.0)
    assert peers.peers[SEED].next_attempt == 11.0 + 2 * T.interval_s


def test_backoff_cap_follows_timings() -> None:
    timings = PeerTimings(interval_s=1.0, max_backoff_s=30.0)
    peers = table(timings=timings)
    delays = []
    for _ in range(10):
        peers.failed(SEED, 0.0)
        delays.append(peers.peers[SEED].next_attempt)
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert delays[4:] == [30.0] * 6


# --------------------------------------------------------------------------- reachability


def test_reachable_window() -> None:
    peers = table()
    assert not peers.reachable(SEED, 0.0)  # never answered
    assert not peers.reachable("unknown:1", 0.0)
    peers.succeeded(SEED, "west", now=10.0)
    assert peers.reachable(SEED, 10.0)
    assert peers.reachable(SEED, 30.0)  # silent, but nothing we tried failed: our own stall
    peers.failed(SEED, now=11.0)  # a failure does not erase the last answer
    assert peers.reachable(SEED, 11.5)
    assert peers.reachable(SEED, 12.0)  # exactly peer_timeout_s
    assert not peers.reachable(SEED, 12.01)  # silent for longer, and an attempt failed


def test_members_lists_reachable_members_with_cluster() -> None:
    peers = table([SEED, "10.0.0.9:7946"])
    peers.succeeded(SEED, "west", now=0.0)
    peers.succeeded(LEARNED, "south", now=1.0, replica="south-0")
    peers.learned("north", "10.0.0.4:7946", now=1.0)  # never answered
    peers.failed(SEED, now=1.2)
    peers.failed(LEARNED, now=2.0)
    assert peers.members(1.5) == [("south", LEARNED, "south-0"), ("west", SEED, "")]
    assert peers.members(2.5) == [("south", LEARNED, "south-0")]
    assert peers.members(10.0) == []


def test_replica_reachable_follows_the_replica_s_own_member() -> None:
    peers = table([SEED, LEARNED])
    peers.succeeded(SEED, "west", now=0.0, replica="west-a")
    peers.succeeded(LEARNED, "west", now=5.0, replica="west-b")
    peers.failed(SEED, now=1.0)
    assert peers.replica_reachable("west", "west-b", 5.5)
    assert not peers.replica_reachable("west", "west-a", 5.5)  # silent since 0.0
    assert not peers.replica_reachable("west", "west-c", 5.5)  # never seen


# --------------------------------------------------------------------------------- health


def test_local_cluster_is_always_healthy() -> None:
    peers = table()
    peers.succeeded(SEED, "east", now=0.0)  # another agent of our own cluster
    assert peers.healthy(["east"], now=1000.0) == {"east"}


def test_cluster_with_no_known_address_is_healthy() -> None:
    peers = table()
    assert peers.healthy(["east", "west", "south"], now=0.0) == {"east", "west", "south"}
    peers.failed(SEED, now=0.0)  # the seed has no cluster yet: no evidence about anyone
    assert peers.healthy(["west"], now=50.0) == {"west"}


def test_only_asked_clusters_are_returned() -> None:
    peers = table()
    peers.succeeded(SEED, "west", now=0.0)
    assert peers.healthy([], now=0.0) == set()
    assert peers.healthy(["south"], now=0.0) == {"south"}


def test_cluster_whose_only_member_stopped_answering() -> None:
    peers = table()
    peers.succeeded(SEED, "west", now=0.0)
    assert peers.healthy(["east", "west"], now=0.0) == {"east", "west"}
    assert peers.healthy(["east", "west"], now=2.0) == {"east", "west"}
    peers.failed(SEED, now=1.0)
    peers.failed(SEED, now=2.0)
    assert peers.healthy(["east", "west"], now=2.01) == {"east"}
    assert peers.healthy(["east", "west"], now=500.0) == {"east"}
    peers.succeeded(SEED, "west", now=501.0)
    assert peers.healthy(["east", "west"], now=501.0) == {"east", "west"}


def test_cluster_healthy_while_any_member_answers() -> None:
    peers = table([SEED, LEARNED])
    peers.succeeded(SEED, "west", now=0.0)
    peers.succeeded(LEARNED, "west", now=5.0)
    peers.failed(SEED, now=1.0)
    peers.failed(LEARNED, now=6.5)
    assert peers.healthy(["west"], now=6.0) == {"west"}
    assert peers.healthy(["west"], now=7.5) == set()


def test_peer_timeout_follows_timings() -> None:
    peers = table(timings=PeerTimings(peer_timeout_s=10.0))
    peers.succeeded(SEED, "west", now=0.0)
    peers.failed(SEED, now=1.0)
    assert peers.healthy(["west"], now=10.0) == {"west"}
    assert peers.healthy(["west"], now=10.5) == set()


# ------------------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4:53", ("1.2.3.4", 53)),
        ("[::1]:53", ("::1", 53)),
        ("[fd00::7]:7946", ("fd00::7", 7946)),
        ("name:80", ("name", 80)),
        ("agent.example.org:65535", ("agent.example.org", 65535)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_split_host_port_accepts(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "::1:53",
        "x",
        "host:99999",
        "host:",
        ":53",
        "",
        "host:-1",
        "host:http",
        "[nothex]:53",
        "[::1]",
    ],
)
def test_split_host_port_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        split_host_port(value)


@pytest.mark.parametrize("value", ["1.2.3.4:53", "[::1]:53", "name:80"])
def test_valid_host_port_accepts(value: str) -> None:
    assert valid_host_port(value) is True


@pytest.mark.parametrize(
    "value", ["::1:53", "x", "host:99999", "host:", "host:0", "a" * 300 + ":80"]
)
def test_valid_host_port_rejects(value: str) -> None:
    assert valid_host_port(value) is False


def test_a_large_ring_stretches_the_round_and_the_timeout_so_the_cost_stays_flat() -> None:
    timings = PeerTimings(interval_s=0.5, peer_timeout_s=2.0, max_exchanges_per_s=40.0)
    small = PeerTable("east", "10.0.0.1:7946", [f"10.0.1.{i}:7946" for i in range(10)], timings)
    assert small.round_s() == 0.5
    assert small.timeout_s() == 2.0
    large = PeerTable(
        "east", "10.0.0.1:7946", [f"10.1.{i // 100}.{i % 100}:7946" for i in range(200)], timings
    )
    assert large.round_s() == 5.0  # 200 peers at 40 exchanges a second
    assert large.timeout_s() == 12.5
    address = "10.1.0.5:7946"
    large.succeeded(address, "west", 0.0)
    assert large.peers[address].next_attempt == 5.0
    assert address not in large.due(4.9)
    large.failed(address, 6.0)
    assert large.reachable(address, 12.0)  # silent for less than two and a half rounds
    assert not large.reachable(address, 13.0)


def test_in_contact_lists_clusters_answering_within_two_rounds() -> None:
    peers = table([SEED, LEARNED])
    peers.succeeded(SEED, "west", now=10.0)
    peers.succeeded(LEARNED, "south", now=9.0)
    assert peers.in_contact(10.0) == {"west", "south"}
    assert peers.in_contact(10.0 + 2 * peers.round_s()) == {"west"}
    assert peers.in_contact(30.0) == set()


def test_an_attempt_unanswered_for_half_the_timeout_counts_as_failed() -> None:
    # A silently cut link fails no call before the call's deadline: the attempt left
    # unanswered is the evidence, so detection needs the timeout, not timeout + deadline.
    peers = table()
    peers.succeeded(SEED, "west", now=10.0)
    peers.attempted(SEED, now=10.6)
    assert peers.reachable(SEED, 11.6)  # unanswered 1.0 s, but silent only 1.6 s: not 2.0
    assert not peers.reachable(SEED, 12.01)  # silent 2.01 s, unanswered 1.41 s > 1.0 s


def test_an_attempt_not_yet_overdue_is_no_evidence() -> None:
    peers = table()
    peers.succeeded(SEED, "west", now=10.0)
    peers.attempted(SEED, now=11.5)
    assert peers.reachable(SEED, 12.4)  # silent 2.4 s (our own stall), attempt 0.9 s old
    assert not peers.reachable(SEED, 12.51)


def test_an_answer_or_a_failure_ends_the_attempt() -> None:
    peers = table()
    peers.succeeded(SEED, "west", now=10.0)
    peers.attempted(SEED, now=10.1)
    peers.attempted(SEED, now=11.0)  # the first one still counts, not the newest
    peers.succeeded(SEED, "west", now=11.05)
    assert peers.reachable(SEED, 20.0)  # answered, and nothing tried since
    peers.attempted(SEED, now=20.0)
    peers.failed(SEED, now=20.1)  # counted as a failure instead
    assert peers.peers[SEED].pending_since is None
    assert not peers.reachable(SEED, 20.1)  # silent 9 s and failed
    peers.attempted("unknown:1", now=20.0)  # an address not in the table: nothing happens
    assert "unknown:1" not in peers.peers


def test_a_change_is_pushed_to_members_not_yet_tried_but_not_to_failing_ones() -> None:
    peers = table(["seed:1"])
    peers.learned("east", "east:1", 0.0)  # listed by a peer, never tried
    peers.learned("east", "east:2", 0.0)
    peers.learned("west", "west:1", 0.0)
    peers.succeeded("seed:1", "hub", 0.0)
    peers.failed("east:2", 0.0)  # tried and failed: it waits for its backoff
    assert peers.push_targets(0.1) == ["east:1", "seed:1", "west:1"]
    peers.attempted("west:1", 0.1)  # an attempt under way is no failure yet
    assert "west:1" in peers.push_targets(0.2)
    peers.succeeded("east:2", "east", 1.0)  # it came back
    assert peers.push_targets(1.0) == ["east:1", "east:2", "seed:1", "west:1"]


def test_next_change_is_when_a_silent_peer_times_out_or_an_attempt_is_overdue() -> None:
    peers = table(["seed:1"])  # timeout T.peer_timeout_s
    timeout = peers.timeout_s()
    assert peers.next_change(0.0) is None  # nobody answered, nothing outstanding
    peers.succeeded("seed:1", "east", 10.0)
    window = 2 * peers.round_s()
    assert peers.next_change(10.0) == pytest.approx(10.0 + min(timeout, window))
    # Past both, nothing more can time out on its own...
    assert peers.next_change(10.0 + max(timeout, window) + 0.01) is None
    # ... until an attempt starts: it is overdue at half the timeout.
    peers.attempted("seed:1", 20.0)
    assert peers.next_change(20.0) == pytest.approx(20.0 + timeout / 2)
    # Looking just after each change sees it: the peer is no longer reachable there.
    assert peers.reachable("seed:1", 10.0 + timeout)
    at = peers.next_change(20.0)
    assert at is not None
    assert not peers.reachable("seed:1", at + 0.001)
