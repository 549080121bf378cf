"""Seeded simulation of record anti-entropy: random changes, deletions, restarts, lost,
duplicated and replayed messages, partitions, tiny chunks and tombstone expiry; then the
partition heals and every view must equal every origin's exports (nothing lost, nothing
deleted coming back). The seed is printed on failure."""

from __future__ import annotations

import random

import pytest

from mesh.model import ServiceKey
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import KEYS, Node, service, wire

CLUSTERS = ("c0", "c1", "c2", "c3", "c4", "c5")
TTL = 20.0


def _change(rng: random.Random, node: Node, now: float) -> None:
    exports = node.exports()
    key = rng.choice(KEYS[:24])
    if key in exports and rng.random() < 0.4:
        del exports[key]
    else:
        exports[key] = service(key, f"10.{rng.randrange(256)}.{rng.randrange(256)}.1")
    node.export(exports, now)


def _exchange(
    rng: random.Random, a: Node, b: Node, now: float, replay: list[pb.OriginChunk]
) -> None:
    for src, dst in ((a, b), (b, a)):
        messages, _ = wire(src, dst, budget=rng.choice((150, 300, 600, 5000)))
        for message in messages:
            if rng.random() < 0.1:
                continue  # lost
            dst.take(message, now, sender=src)
            if rng.random() < 0.2:
                replay.append(message)


def _forge(rng: random.Random, nodes: dict[str, Node], now: float) -> None:
    """A forger (no TLS) sends one agent made-up records of another cluster: a newer
    generation, or the origin's own generation continued further, whole or cut short."""
    origin = nodes[rng.choice(CLUSTERS)]
    victim = nodes[rng.choice([c for c in CLUSTERS if c != origin.cluster])]
    generation = origin.store.local.generation + rng.choice((0, 0, 1, 50))
    forger = Node(origin.cluster, generation=generation, ttl=TTL, now=now)
    for _ in range(rng.randrange(1, 30)):
        _change(rng, forger, now)
    if rng.random() < 0.3:
        forger.store.local.floor = forger.store.local.progress  # a reset is due
    messages, _ = wire(forger, victim, budget=rng.choice((150, 600, 5000)))
    for message in messages[: rng.randrange(1, len(messages) + 1)] if messages else []:
        victim.take(message, now)


def _run(seed: int, forgeries: bool = False) -> None:
    rng = random.Random(seed)
    nodes = {c: Node(c, generation=1, ttl=TTL) for c in CLUSTERS}
    cut: set[str] = set()
    replay: list[pb.OriginChunk] = []
    now = 0.0
    for _ in range(400):
        now += rng.uniform(0.0, 0.5)
        roll = rng.random()
        if roll < 0.3:
            _change(rng, nodes[rng.choice(CLUSTERS)], now)
        elif roll < 0.33:  # an origin restarts with a new generation and new exports
            name = rng.choice(CLUSTERS)
            old = nodes[name]
            reborn = Node(name, generation=old.store.local.generation + 1, ttl=TTL, now=now)
            reborn.export(old.exports(), now)
            nodes[name] = reborn
        elif roll < 0.36:
            cut = set(rng.sample(CLUSTERS, rng.randrange(3)))
        elif roll < 0.45 and replay:  # an old message arrives late, again
            rng.choice(list(nodes.values())).take(rng.choice(replay), now)
        elif roll < 0.5:
            for node in nodes.values():
                node.store.expire(now)
        elif forgeries and roll < 0.53:
            _forge(rng, nodes, now)
        else:
            a, b = rng.sample(CLUSTERS, 2)
            if (a in cut) == (b in cut):
                _exchange(rng, nodes[a], nodes[b], now, replay)
    # Heal; let tombstones expire too, then exchange until quiet.
    for node in nodes.values():
        node.store.expire(now + TTL)
    for _ in range(60):
        for a in CLUSTERS:
            for b in CLUSTERS:
                if a != b:
                    _exchange(random.Random(0), nodes[a], nodes[b], now, [])
    truth: dict[str, dict[ServiceKey, object]] = {c: nodes[c].exports() for c in CLUSTERS}
    for name, node in nodes.items():
        view = node.view()
        for c in CLUSTERS:
            if c == name:
                continue
            assert view.get(c) == truth[c], f"{name}'s view of {c}"


@pytest.mark.parametrize("seed", range(40))
def test_records_converge_without_loss_or_resurrection(seed: int) -> None:
    try:
        _run(seed)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from exc


@pytest.mark.parametrize("seed", range(20))
def test_every_origin_wins_back_its_copy_from_forged_records(seed: int) -> None:
    """Without TLS any peer can send made-up records of any origin (a newer generation, a
    version or snapshot ahead); once the forger stops, every origin's own word must win
    back every copy of it."""
    try:
        _run(seed, forgeries=True)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed} (with forgeries): {exc}") from exc
