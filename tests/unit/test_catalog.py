"""The per-origin versioned catalog: stamps, restarts, local state, digests and merge order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    LocalExports,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.ring.catalog import Catalog, Change, Digest, diff

WEB = ServiceKey("shop", "web")
DB = ServiceKey("shop", "db")


def svc(key: ServiceKey = WEB, *addresses: str) -> ExportedService:
    return ExportedService(
        key=key,
        type=ServiceType.CLUSTER_SET_IP,
        ports=(ServicePort("http", "TCP", 80),),
        endpoints=tuple(Endpoint((a,)) for a in addresses or ("10.0.0.1",)),
    )


def state(
    cluster: str,
    generation: int,
    version: int,
    *services: ExportedService,
    namespaces: frozenset[str] = frozenset({"shop"}),
) -> ClusterState:
    return ClusterState(
        cluster_id=cluster,
        generation=generation,
        version=version,
        region="us",
        namespaces=namespaces,
        services={s.key: s for s in services},
    )


def catalog(local: str = "east") -> Catalog:
    return Catalog(state(local, 100, 0))


# ------------------------------------------------------------------------------- merge


def test_merge_takes_unknown_origin() -> None:
    cat = catalog()
    west = state("west", 5, 1, svc())
    assert cat.merge(west) is not None
    assert cat.get("west") == west
    assert [s.cluster_id for s in cat.states()] == ["east", "west"]


def test_newer_version_replaces() -> None:
    cat = catalog()
    cat.merge(state("west", 5, 1, svc(WEB, "10.0.0.1")))
    newer = state("west", 5, 2, svc(WEB, "10.0.0.2"))
    assert cat.merge(newer) is not None
    assert cat.get("west") == newer


def test_older_and_equal_stamps_are_ignored() -> None:
    cat = catalog()
    held = state("west", 5, 3, svc(WEB, "10.0.0.3"))
    cat.merge(held)
    assert cat.merge(state("west", 5, 2, svc(WEB, "10.0.0.2"))) is None
    assert cat.merge(state("west", 4, 99, svc(WEB, "10.0.0.9"))) is None
    # Equal stamp (a duplicate, or a forgery with other content): the held copy stays.
    assert cat.merge(state("west", 5, 3, svc(WEB, "10.9.9.9"))) is None
    assert cat.get("west") == held


def test_restarted_origin_replaces_wholesale_including_deletions() -> None:
    cat = catalog()
    cat.merge(state("west", 5, 40, svc(WEB), svc(DB, "10.0.0.5")))
    restarted = state("west", 6, 1, svc(WEB, "10.1.0.1"), namespaces=frozenset({"shop", "new"}))
    assert cat.merge(restarted) is not None
    held = cat.get("west")
    assert held == restarted
    assert held is not None
    assert DB not in held.services
    assert held.stamp == (6, 1)
    # The old generation's late copies no longer matter.
    assert cat.merge(state("west", 5, 41, svc(WEB), svc(DB))) is None
    assert cat.get("west") == restarted


def test_copies_of_own_state_are_ignored() -> None:
    cat = catalog("east")
    local = cat.local
    echoed = state("east", 10**12, 10**6, svc(WEB, "6.6.6.6"))
    assert cat.merge(echoed) is None
    assert cat.local == local
    assert cat.get("east") == local


# ----------------------------------------------------------------------------- set_local


def test_set_local_bumps_version_only_on_change() -> None:
    cat = catalog()
    assert cat.local.version == 0
    exports = LocalExports(frozenset({"shop"}), {WEB: svc(WEB)})
    assert cat.set_local(exports) == Change("east", frozenset({WEB}))
    assert cat.local.stamp == (100, 1)
    assert dict(cat.local.services) == {WEB: svc(WEB)}
    assert cat.local.namespaces == frozenset({"shop"})

    # The same content again (a fresh but equal mapping): no new version.
    assert not cat.set_local(LocalExports(frozenset({"shop"}), {WEB: svc(WEB)}))
    assert cat.local.stamp == (100, 1)

    # An endpoint change is a change.
    change = cat.set_local(LocalExports(frozenset({"shop"}), {WEB: svc(WEB, "10.0.0.2")}))
    assert change == Change("east", frozenset({WEB}))
    assert cat.local.stamp == (100, 2)
    # A namespace change alone is a change.
    change = cat.set_local(LocalExports(frozenset({"shop", "other"}), {WEB: svc(WEB, "10.0.0.2")}))
    assert change == Change("east", frozenset(), cluster=True)
    assert cat.local.stamp == (100, 3)
    # Removing everything is a change.
    assert cat.set_local(LocalExports(frozenset(), {})) == Change("east", frozenset({WEB}), True)
    assert cat.local.stamp == (100, 4)
    assert dict(cat.local.services) == {}
    # Locality and generation are kept.
    assert cat.local.region == "us"
    assert cat.local.cluster_id == "east"


def test_set_local_change_is_offered_to_peers() -> None:
    cat = catalog()
    before = cat.digests()
    cat.set_local(LocalExports(frozenset({"shop"}), {WEB: svc()}))
    assert cat.newer_than(before) == [cat.local]


# ------------------------------------------------------------------ digests / newer_than


def test_digests_list_every_origin_in_order() -> None:
    cat = catalog("east")
    cat.merge(state("west", 5, 2))
    cat.merge(state("south", 7, 9))
    assert cat.digests() == [
        Digest("east", 100, 0),
        Digest("south", 7, 9),
        Digest("west", 5, 2),
    ]


def test_newer_than_gives_exactly_what_a_peer_lacks() -> None:
    cat = catalog("east")
    cat.merge(state("west", 5, 2))
    cat.merge(state("south", 7, 9))
    cat.merge(state("north", 3, 3))
    theirs = [
        Digest("east", 100, 0),  # same: not sent
        Digest("west", 5, 1),  # older version: sent
        Digest("south", 8, 0),  # they hold a newer generation: not sent
        Digest("gone", 1, 1),  # we do not hold it: nothing to send
        # north missing: sent
    ]
    sent = cat.newer_than(theirs)
    assert [s.cluster_id for s in sent] == ["north", "west"]
    assert sent == [cat.get("north"), cat.get("west")]


def test_newer_than_older_generation_higher_version_is_sent() -> None:
    cat = catalog("east")
    cat.merge(state("west", 6, 1))
    assert [s.cluster_id for s in cat.newer_than([Digest("west", 5, 99)])] == ["east", "west"]


def test_newer_than_own_digests_is_empty_and_empty_digests_is_everything() -> None:
    cat = catalog("east")
    cat.merge(state("west", 5, 2))
    assert cat.newer_than(cat.digests()) == []
    assert cat.newer_than([]) == cat.states()


def test_exchange_of_deltas_makes_two_catalogs_equal() -> None:
    a = catalog("east")
    b = catalog("west")
    a.set_local(LocalExports(frozenset({"shop"}), {WEB: svc()}))
    b.set_local(LocalExports(frozenset({"shop"}), {DB: svc(DB)}))
    a.merge(state("south", 3, 3))
    b.merge(state("south", 3, 4))
    for s in b.newer_than(a.digests()):
        a.merge(s)
    for s in a.newer_than(b.digests()):
        b.merge(s)
    assert a.states() == b.states()
    assert a.newer_than(b.digests()) == []
    assert b.newer_than(a.digests()) == []


# ------------------------------------------------------------------- order independence

ORIGINS = ("a", "b", "c", "d")


def version_of(origin: str, generation: int, version: int) -> ClusterState:
    """The one copy an origin ever publishes under this stamp (content follows the stamp)."""
    services = [
        svc(ServiceKey("shop", f"s{i}"), f"10.{generation}.{version}.{i}") for i in range(3)
    ]
    keep = [s for i, s in enumerate(services) if (generation + version + i) % 2 == 0]
    return state(origin, generation, version, *keep)


stamps = st.tuples(st.sampled_from(ORIGINS), st.integers(1, 3), st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(
    sequence=st.lists(stamps, min_size=1, max_size=30),
    data=st.data(),
)
def test_merge_is_order_independent(
    sequence: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    with_duplicates = sequence + data.draw(
        st.lists(st.sampled_from(sequence), max_size=10), label="duplicates"
    )
    first = data.draw(st.permutations(with_duplicates), label="first order")
    second = data.draw(st.permutations(with_duplicates), label="second order")
    cat1, cat2 = catalog("local"), catalog("local")
    for origin, gen, ver in first:
        cat1.merge(version_of(origin, gen, ver))
    for origin, gen, ver in second:
        cat2.merge(version_of(origin, gen, ver))
    assert cat1.states() == cat2.states()
    assert cat1.digests() == cat2.digests()
    for origin in ORIGINS:
        mine = [(g, v) for o, g, v in with_duplicates if o == origin]
        held = cat1.get(origin)
        if not mine:
            assert held is None
        else:
            assert held is not None
            assert held.stamp == max(mine)
            assert held == version_of(origin, *max(mine))


@pytest.mark.parametrize("seed", range(30))
def test_diff_names_exactly_the_services_added_removed_or_changed(seed: int) -> None:
    rng = random.Random(seed)
    keys = [ServiceKey("shop", f"s{i}") for i in range(40)]
    shared = {k: ExportedService(k, ServiceType.HEADLESS) for k in keys}

    def some_state(version: int) -> ClusterState:
        services = {}
        for key in rng.sample(keys, rng.randrange(len(keys))):
            kind = rng.choice([ServiceType.HEADLESS, ServiceType.CLUSTER_SET_IP])
            equal = ExportedService(key, kind)
            services[key] = shared[key] if equal == shared[key] and rng.random() < 0.5 else equal
        return ClusterState("east", 1, version, services=services)

    old, new = some_state(1), some_state(2)
    expected = {
        k
        for k in old.services.keys() | new.services.keys()
        if old.services.get(k) != new.services.get(k)
    }
    assert diff(old, new).services == expected, f"seed {seed}"


@pytest.mark.parametrize("seed", range(20))
def test_diff_of_a_next_version_with_the_same_keys_in_the_same_order(seed: int) -> None:
    # As the manifests source gives it: the previous mapping copied, some values replaced
    # (the walk side by side); then the same keys in another order (the lookups).
    rng = random.Random(seed)
    keys = [ServiceKey("shop", f"s{i}") for i in range(30)]
    old_services = {k: ExportedService(k, ServiceType.HEADLESS) for k in keys}
    new_services = dict(old_services)
    for key in rng.sample(keys, rng.randrange(4)):
        kind = rng.choice([ServiceType.HEADLESS, ServiceType.CLUSTER_SET_IP])
        new_services[key] = ExportedService(key, kind)  # maybe equal, as another object
    old = ClusterState("east", 1, 1, services=old_services)
    expected = {k for k in keys if old_services[k] != new_services[k]}
    new = ClusterState("east", 1, 2, services=new_services)
    assert diff(old, new).services == expected, f"seed {seed}"
    shuffled = dict(rng.sample(list(new_services.items()), len(keys)))
    reordered = ClusterState("east", 1, 2, services=shuffled)
    assert diff(old, reordered).services == expected, f"seed {seed}"
    copies = {ServiceKey(k.namespace, k.name): v for k, v in new_services.items()}
    decoded = ClusterState("east", 1, 2, services=copies)  # equal keys, other objects
    assert diff(old, decoded).services == expected, f"seed {seed}"
