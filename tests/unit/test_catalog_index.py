"""The catalog's per-cluster index of origins and its revision, against a brute-force model.

``Catalog`` keeps, per cluster, the origins it holds (so that re-picking every cluster's
replica ten times a second does not walk every state for each cluster) and a revision that
moves whenever the held states do (so that what derives from ``states()`` alone is cached).
Random sequences of merges, puts, drops, forgets and replica choices must leave the choice
equal to the one a walk over every state makes, and the revision must move exactly when
``states()`` changes."""

from __future__ import annotations

import random

import pytest

from mesh.model import ClusterState, LocalExports
from mesh.ring.catalog import Catalog

CLUSTERS = ["east", "west", "north", "south"]
REPLICAS = ["", "a", "b"]


def brute_best(states: list[ClusterState], cluster: str, prefer: set[str]) -> ClusterState:
    replicas = [s for s in states if s.cluster_id == cluster]
    return max(replicas, key=lambda s: (s.replica in prefer, s.generation, s.version, s.replica))


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_choose_as_a_walk_over_every_state_does(seed: int) -> None:
    rng = random.Random(seed)
    cat = Catalog(ClusterState("east", 1, 0))
    prefer: set[str] = set()  # changed in place: the catalog keeps ``preferred``

    def preferred(s: ClusterState) -> bool:
        return s.replica in prefer

    cat.choose(preferred)
    versions: dict[tuple[str, str], int] = {}
    for step in range(300):
        before, revision = cat.states(), cat.revision
        op = rng.choice(["merge", "put", "drop", "forget", "choose", "local"])
        cluster, replica = rng.choice(CLUSTERS[1:]), rng.choice(REPLICAS)
        if op in ("merge", "put"):
            origin = (cluster, replica)
            version = versions.get(origin, 0) + rng.choice([-1, 0, 1, 2])
            copy = ClusterState(cluster, 1, version, replica=replica)
            if op == "merge":
                cat.merge(copy)
            elif version > versions.get(origin, -1):  # put: the store decided it is newer
                cat.put(copy, None, True)
            versions[origin] = max(versions.get(origin, 0), version)
        elif op == "drop":
            cat.drop((cluster, replica))
            versions.pop((cluster, replica), None)
        elif op == "forget":
            cat.forget(cluster)
            for r in REPLICAS:
                versions.pop((cluster, r), None)
        elif op == "choose":
            prefer.clear()
            prefer.update(rng.sample(REPLICAS, rng.randrange(len(REPLICAS) + 1)))
            cat.choose(preferred)
        elif rng.random() < 0.5:
            cat.announce(cat.local.drain, f"127.0.0.1:{step}", "")
        else:
            cat.set_local(LocalExports(frozenset({f"ns{rng.randrange(3)}"}), {}))
        after = cat.states()
        moved = [(s.origin, s.stamp, s.dns_address, s.namespaces) for s in before] != [
            (s.origin, s.stamp, s.dns_address, s.namespaces) for s in after
        ]
        assert (cat.revision != revision) == moved, f"seed {seed}, step {step}: {op}"
        # No choose() here: each operation must leave every cluster's choice right itself
        # (the preference has not changed since the last choose).
        for c in {s.cluster_id for s in after}:
            if c == "east":
                continue
            got = cat.get(c)
            assert got is not None, f"seed {seed}, step {step}: {c} not chosen"
            assert got is brute_best(after, c, prefer), f"seed {seed}, step {step}: {op} {c}"
        held = {s.cluster_id for s in after}
        assert {s.cluster_id for s in cat.clusters()} == held, f"seed {seed}, step {step}"
