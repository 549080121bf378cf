"""Without TLS any peer can forge any origin's records (README, Limits). What a forgery must
never do is keep the origin from winning back its copy: whatever a peer sent about origin
``x`` (a newer generation, a version or a snapshot ahead of ``x``'s own, or ``x``'s very
next version made up), ``x``'s own later state reaches every agent within a few exchanges,
also after a victim restarts, while a relay still cannot roll a copy back
(mesh/ring/records.py, mesh/ring/record_plan.py)."""

from __future__ import annotations

import pytest

from mesh.model import ServiceKey
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import KEYS, Node, send, service, sync, wire

FORGED = "6.6.6.6"
ROUNDS = 4  # exchanges of every pair, both ways, for x's state to win everywhere


def exports(tag: str, n: int = 6) -> dict[ServiceKey, object]:
    return {k: service(k, f"10.0.{i}.{tag}") for i, k in enumerate(KEYS[:n])}


def forged(kind: str, x: Node, victim: Node) -> list[pb.OriginChunk]:
    """What a forger sends ``victim`` about ``x``, as ``kind`` says: a newer generation
    (whole, or the first message of it, so that the victim builds it aside), or ``x``'s own
    generation continued further than ``x`` went (as a delta, or as the first message of a
    snapshot far ahead)."""
    generation = x.store.local.generation
    if kind.startswith("generation"):
        forger = Node("x", generation=generation + 1)
        forger.export({k: service(k, FORGED) for k in KEYS[:12]})
    elif kind == "same_version":  # x's next version, before x gets there itself
        forger = Node("x", generation=generation)
        forger.export(x.exports())  # the same records as x's, byte for byte
        forger.export(exports("66"))  # type: ignore[arg-type]  # as many records as x's next
    else:
        forger = Node("x", generation=generation)
        forger.export(x.exports())
        for i in range(20):
            forger.export({**x.exports(), KEYS[0]: service(KEYS[0], f"6.6.6.{i}")})
    if kind == "snapshot":  # it purged tombstones the victim never saw: a reset is due
        forger.store.local.floor = forger.store.local.progress
    partial = kind in ("generation_partial", "snapshot")
    messages, more = wire(forger, victim, budget=200 if partial else 1 << 20)
    assert messages[0].reset == (kind not in ("version", "same_version"))
    if partial:
        assert more
        assert not messages[0].head
        return messages[:1]
    return messages


def rounds(nodes: list[Node], count: int) -> None:
    for _ in range(count):
        for src in nodes:
            for dst in nodes:
                if src is not dst:
                    send(src, dst)


def view_of_x(node: Node) -> dict[ServiceKey, object] | None:
    return node.view().get("x")


@pytest.mark.parametrize("restart", [False, True], ids=["", "victim_restarts"])
@pytest.mark.parametrize(
    "kind", ["generation", "generation_partial", "version", "snapshot", "same_version"]
)
def test_the_origins_own_later_state_wins_back_its_copy_everywhere(
    kind: str, restart: bool
) -> None:
    x, a, b = Node("x"), Node("a"), Node("b")
    x.export(exports("1"))  # type: ignore[arg-type]
    rounds([x, a, b], 2)
    for message in forged(kind, x, a):
        a.take(message, 1.0)  # from the forger: not x's word
    rounds([a, b], 2)  # a passes on what it holds
    if restart:  # kill -9: a comes back with nothing, and learns x from b first
        a = Node("a", generation=2)
        rounds([b, a], 2)
    x.export(exports("2"))  # type: ignore[arg-type]  # x's own later state
    if kind == "same_version":  # the made-up copy is at x's very version, head and all
        assert next(d for d in a.store.digests() if d.cluster_id == "x").version == (
            x.store.local.progress
        )
    rounds([x, a, b], ROUNDS)
    for node in (a, b):
        assert view_of_x(node) == x.exports(), (node.cluster, node.dropped)
        assert not node.store.pending, node.cluster


def test_a_relay_cannot_roll_a_copy_back_with_the_origins_older_state() -> None:
    x, a, relay = Node("x"), Node("a"), Node("relay")
    x.export(exports("1"))  # type: ignore[arg-type]
    sync(x, relay)
    old = wire(x, Node("empty"))[0]  # x's first state, a full reset, as the relay kept it
    x.export(exports("2"))  # type: ignore[arg-type]
    sync(x, a)
    for message in old:  # replayed by a relay: the same bytes x sent, not from x now
        a.take(message, 1.0, sender=relay)
    assert view_of_x(a) == x.exports()
    assert a.dropped == ["stale"]
    reborn = Node("x", generation=2)  # a newer generation from a relay is taken as before
    reborn.export(exports("3"))  # type: ignore[arg-type]
    for message in wire(reborn, a)[0]:
        a.take(message, 2.0, sender=relay)
    assert view_of_x(a) == reborn.exports()


def test_the_origin_resets_a_copy_ahead_of_its_own_only_once() -> None:
    """x answers a digest ahead of its own with one reset, then with nothing: the exchange
    stays as small as ever once the copy is x's again."""
    x, a = Node("x"), Node("a")
    x.export(exports("1"))  # type: ignore[arg-type]
    sync(x, a)
    for message in forged("version", x, a):
        a.take(message, 1.0)
    assert view_of_x(a) != x.exports()
    first, _ = wire(x, a)
    assert len(first) == 1
    assert first[0].reset
    assert first[0].target == x.store.local.progress
    a.take(first[0], 2.0, sender=x)
    assert view_of_x(a) == x.exports()
    assert wire(x, a) == ([], False)
