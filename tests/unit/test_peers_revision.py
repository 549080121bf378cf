"""The peer table's revision: the agent's health loop skips its look while the revision is
the one it saw and ``next_change`` has not come, so in that time no view may change.

Random sequences of answers, attempts, failures, learned members and forgotten peers, at
random times, on rings small (rounds of one interval) and large (rounds stretched by the
exchange rate): whenever the revision is unchanged since the last look and the time is
before the ``next_change`` that look computed, every view (``reachable``, ``healthy``,
``in_contact``, ``members``, ``replica_reachable``) must still read as it did then."""

from __future__ import annotations

import random

import pytest

from mesh.ring.peers import PeerTable, PeerTimings

SELF = "10.0.0.1:7946"
ADDRESSES = [f"10.0.0.{i}:7946" for i in range(2, 9)]
CLUSTERS = ["west", "north", "south"]
REPLICAS = ["", "a", "b"]


def views(peers: PeerTable, now: float) -> tuple[object, ...]:
    clusters = ["east", *CLUSTERS]
    return (
        frozenset(a for a in peers.peers if peers.reachable(a, now)),
        frozenset(peers.healthy(clusters, now)),
        frozenset(peers.in_contact(now)),
        tuple(peers.members(now)),
        frozenset((c, r) for c in CLUSTERS for r in REPLICAS if peers.replica_reachable(c, r, now)),
    )


@pytest.mark.parametrize("max_rate", [40.0, 2.0])
@pytest.mark.parametrize("seed", range(15))
def test_no_view_moves_between_looks_without_the_revision(seed: int, max_rate: float) -> None:
    rng = random.Random(seed)
    timings = PeerTimings(interval_s=0.25, peer_timeout_s=1.0, max_exchanges_per_s=max_rate)
    peers = PeerTable("east", SELF, ADDRESSES[:3], timings)
    now = 0.0
    look = (peers.revision, peers.next_change(now), views(peers, now))
    for step in range(400):
        now += rng.choice([0.0, 0.01, 0.1, 0.3, 0.6, 1.2, 3.0])
        address = rng.choice(ADDRESSES)
        op = rng.choice(["ok", "ok", "ok", "attempt", "attempt", "fail", "learn", "forget", "seed"])
        if op == "ok":
            peers.succeeded(address, rng.choice(CLUSTERS), now, rng.choice(REPLICAS))
        elif op == "attempt":
            peers.attempted(address, now)
        elif op == "fail":
            peers.failed(address, now)
        elif op == "learn":
            peers.learned(rng.choice(CLUSTERS), address, now, rng.choice(REPLICAS))
        elif op == "forget":
            peers.forget(address)
        else:
            peers.add_seed(address)
        revision, due, seen = look
        unmoved = peers.revision == revision and (due is None or now < due)
        if unmoved:
            assert views(peers, now) == seen, f"seed {seed}, step {step}: {op} {address}"
        else:
            look = (peers.revision, peers.next_change(now), views(peers, now))
