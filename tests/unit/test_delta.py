"""The delta between two scans of the manifests source, its pieces, and its merge (pure)."""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from mesh.model import Endpoint, ExportedService, LocalExports, ServiceKey, ServiceType
from mesh.sources.delta import CHUNK_COST, Merge, chunks, cost, delta


def svc(name: str, *addresses: str) -> ExportedService:
    endpoints = tuple(Endpoint((a,)) for a in addresses)
    return ExportedService(ServiceKey("shop", name), ServiceType.HEADLESS, endpoints=endpoints)


def exports(
    *services: ExportedService, namespaces: frozenset[str] = frozenset({"shop"})
) -> LocalExports:
    return LocalExports(namespaces, MappingProxyType({s.key: s for s in services}))


def merged(held: LocalExports | None, new: LocalExports, budget: int = CHUNK_COST) -> Merge:
    change = delta(held, new)
    merge = Merge(held, change.namespaces, change.removed, change.full)
    for piece in chunks(change.changed, budget):
        merge.add(piece)
    return merge


def test_an_unchanged_scan_is_an_empty_delta() -> None:
    old = exports(svc("a", "10.0.0.1"), svc("b", "10.0.0.2"))
    assert not delta(old, old)
    same_content = exports(svc("a", "10.0.0.1"), svc("b", "10.0.0.2"))
    assert not delta(old, same_content)
    merge = merged(old, same_content)
    assert merge.result() == old
    assert not merge.changed


def test_the_delta_carries_only_changed_and_removed_services() -> None:
    a, b, c = svc("a", "10.0.0.1"), svc("b", "10.0.0.2"), svc("c", "10.0.0.3")
    old = exports(a, b, c)
    b2, d = svc("b", "10.0.0.9"), svc("d", "10.0.0.4")
    new = exports(a, b2, d)
    change = delta(old, new)
    assert (change.changed, change.removed, change.full) == ([b2, d], [c.key], False)
    merge = merged(old, new)
    result = merge.result()
    assert result == new
    assert merge.changed
    assert result.services[a.key] is a  # untouched: the very object held


def test_a_full_delta_keeps_the_held_object_of_every_equal_service() -> None:
    held = exports(svc("a", "10.0.0.1"), svc("b", "10.0.0.2"), svc("gone", "10.0.0.3"))
    fresh = exports(svc("a", "10.0.0.1"), svc("b", "10.0.0.7"))  # equal a, but a new object
    change = delta(None, fresh)
    assert change.full
    merge = Merge(held, change.namespaces, change.removed, change.full)
    merge.add(change.changed)
    result = merge.result()
    assert result == fresh
    assert merge.changed
    assert result.services[ServiceKey("shop", "a")] is held.services[ServiceKey("shop", "a")]


def test_a_full_delta_equal_to_what_is_held_changes_nothing() -> None:
    held = exports(svc("a", "10.0.0.1"))
    merge = merged(None, exports(svc("a", "10.0.0.1")))
    assert merge.changed  # nothing held: the first exports are news
    merge = Merge(held, held.namespaces, [], full=True)
    merge.add([svc("a", "10.0.0.1")])
    assert merge.result() == held
    assert not merge.changed


def test_a_namespace_change_alone_is_a_change() -> None:
    old = exports(svc("a", "10.0.0.1"))
    new = exports(svc("a", "10.0.0.1"), namespaces=frozenset({"shop", "ops"}))
    merge = merged(old, new)
    assert merge.result() == new
    assert merge.changed


def test_pieces_stay_within_their_budget_and_keep_the_order() -> None:
    services = [svc(f"s{i}", *(f"10.0.{i}.{e}" for e in range(i % 7))) for i in range(200)]
    services.append(svc("huge", *(f"10.1.{e // 250}.{e % 250}" for e in range(500))))
    pieces = list(chunks(services, budget=40))
    assert [s for piece in pieces for s in piece] == services
    for piece in pieces:
        assert len(piece) == 1 or sum(cost(s) for s in piece) <= 40
    assert [s.key.name for s in pieces[-1]] == ["huge"]  # over budget alone: a piece of its own


@pytest.mark.parametrize("seed", range(20))
def test_merging_the_delta_into_the_old_exports_gives_the_new_ones(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(60)]

    def some_exports() -> LocalExports:
        chosen = rng.sample(names, rng.randrange(len(names)))
        return exports(
            *(svc(n, f"10.0.0.{rng.randrange(3)}") for n in chosen),
            namespaces=frozenset(rng.sample(["shop", "ops", "db"], rng.randrange(1, 3))),
        )

    old, new = some_exports(), some_exports()
    merge = merged(old, new, budget=rng.randrange(1, 20))
    result = merge.result()
    assert result == new, f"seed {seed}"
    assert merge.changed == (result != old), f"seed {seed}"
    for key, service in result.services.items():
        if old.services.get(key) == service:
            assert service is old.services[key], f"seed {seed}: {key} not shared"


def test_the_same_keys_in_the_same_order_walk_side_by_side() -> None:
    a, b, c = svc("a", "10.0.0.1"), svc("b", "10.0.0.2"), svc("c", "10.0.0.3")
    old = exports(a, b, c)
    b2 = svc("b", "10.0.0.9")
    # As the scanner's translation gives it: the very same key objects, one value new.
    new = LocalExports(old.namespaces, MappingProxyType({a.key: a, b.key: b2, c.key: c}))
    change = delta(old, new)
    assert (change.changed, change.removed) == ([b2], [])
    # Equal keys that are other objects, or the same keys in another order: the general way.
    d = svc("d", "10.0.0.4")
    swapped = LocalExports(old.namespaces, MappingProxyType({a.key: a, d.key: d, c.key: c}))
    assert (delta(old, swapped).changed, delta(old, swapped).removed) == ([d], [b.key])
    reordered = LocalExports(old.namespaces, MappingProxyType({c.key: c, b.key: b2, a.key: a}))
    assert (delta(old, reordered).changed, delta(old, reordered).removed) == ([b2], [])
