"""Routing policy: namespace sameness, readiness, health, locality tiers, caps, headless."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsserver.zone import HeadlessEndpoint, ServiceRecords
from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.routing import view as view_module
from mesh.routing.policy import DEFAULT_MAX_ADDRESSES, Locality, PolicyResult, decide
from mesh.routing.view import merge_clusterset, merge_service

WEB = ServiceKey("shop", "web")
HERE = Locality("east", "us", "us-1a")
# cluster -> region; "east" is this cluster.
REGIONS = {"east": "us", "west": "us", "wast": "us", "south": "eu", "north": "eu"}
ALL = frozenset(REGIONS)
NAMESPACES = frozenset({"shop"})


def ep(*addresses: str, ready: bool = True, hostname: str | None = None) -> Endpoint:
    return Endpoint(tuple(addresses), ready=ready, hostname=hostname)


def exported(
    *endpoints: Endpoint,
    key: ServiceKey = WEB,
    headless: bool = False,
    ports: tuple[ServicePort, ...] = (ServicePort("http", "TCP", 80),),
    at: float = 0.0,
) -> ExportedService:
    return ExportedService(
        key=key,
        type=ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP,
        ports=ports,
        endpoints=endpoints,
        exported_at=at,
    )


def cluster(
    cid: str, *services: ExportedService, namespaces: Iterable[str] = ("shop",)
) -> ClusterState:
    return ClusterState(
        cluster_id=cid,
        generation=1,
        version=1,
        region=REGIONS.get(cid, "ap"),
        namespaces=frozenset(namespaces),
        services={s.key: s for s in services},
    )


def run(
    states: Iterable[ClusterState],
    healthy: Iterable[str] = ALL,
    namespaces: Iterable[str] = NAMESPACES,
    **kwargs: int,
) -> PolicyResult:
    return decide(list(states), HERE, frozenset(namespaces), frozenset(healthy), **kwargs)


def only(result: PolicyResult, key: ServiceKey = WEB) -> ServiceRecords:
    records = [r for r in result.records if (r.namespace, r.name) == (key.namespace, key.name)]
    assert len(records) == 1, result.records
    return records[0]


def ready_svc(*addresses: str) -> ExportedService:
    return exported(*(ep(a) for a in addresses))


# --------------------------------------------------------------------- namespace sameness


def test_service_in_namespace_this_cluster_lacks_is_not_answered() -> None:
    other = ServiceKey("other", "web")
    states = [cluster("west", exported(ep("10.1.0.1"), key=other), namespaces=["other"])]
    result = run(states, namespaces={"shop"})
    assert result.records == []
    assert result.failed_open == []


def test_service_exported_only_elsewhere_is_answered_when_namespace_exists_here() -> None:
    states = [cluster("east"), cluster("south", ready_svc("10.3.0.1"))]
    record = only(run(states))
    assert record == ServiceRecords("shop", "web", False, ("10.3.0.1",), (("http", "TCP", 80),))


def test_records_sorted_by_namespace_then_name() -> None:
    keys = [ServiceKey("b", "a"), ServiceKey("a", "z"), ServiceKey("a", "b")]
    states = [
        cluster("east", *(exported(ep("10.0.0.1"), key=k) for k in keys), namespaces=["a", "b"])
    ]
    result = run(states, namespaces={"a", "b"})
    assert [(r.namespace, r.name) for r in result.records] == [("a", "b"), ("a", "z"), ("b", "a")]


# ------------------------------------------------------------------------------ readiness


def test_not_ready_endpoints_are_never_answered() -> None:
    states = [
        cluster("east", exported(ep("10.0.0.1", ready=False), ep("10.0.0.2"))),
        cluster("west", exported(ep("10.1.0.1", ready=False))),
    ]
    assert only(run(states)).addresses == ("10.0.0.2",)


# ------------------------------------------------------------------------- locality tiers


@pytest.mark.parametrize(
    ("exports", "expected"),
    [
        pytest.param(
            {"east": ["10.0.0.1"], "west": ["10.1.0.1"], "south": ["10.3.0.1"]},
            ("10.0.0.1",),
            id="local-first-exclusively",
        ),
        pytest.param(
            {"west": ["10.1.0.1"], "south": ["10.3.0.1"]},
            ("10.1.0.1",),
            id="same-region-when-no-local",
        ),
        pytest.param(
            {"south": ["10.3.0.1"], "north": ["10.4.0.1"]},
            ("10.4.0.1", "10.3.0.1"),
            id="others-last-interleaved-by-cluster-id",
        ),
        pytest.param(
            {"east": [], "west": ["10.1.0.1"], "south": ["10.3.0.1"]},
            ("10.1.0.1",),
            id="local-exports-without-endpoints",
        ),
        pytest.param(
            {"west": ["10.1.0.1", "10.1.0.2", "10.1.0.3"], "wast": ["10.2.0.1"]},
            ("10.2.0.1", "10.1.0.1", "10.1.0.2", "10.1.0.3"),
            id="interleaved-across-same-region",
        ),
        pytest.param(
            {"west": ["10.1.0.1", "10.1.0.2"], "wast": ["10.2.0.1", "10.2.0.2"]},
            ("10.2.0.1", "10.1.0.1", "10.2.0.2", "10.1.0.2"),
            id="round-robin",
        ),
        pytest.param(
            {"west": ["10.9.0.1", "10.1.0.2"], "wast": ["10.9.0.1", "10.2.0.2"]},
            ("10.9.0.1", "10.2.0.2", "10.1.0.2"),
            id="shared-address-once",
        ),
    ],
)
def test_locality_tiers(exports: dict[str, list[str]], expected: tuple[str, ...]) -> None:
    states = [cluster(cid, ready_svc(*addresses)) for cid, addresses in exports.items()]
    if "east" not in exports:
        states.append(cluster("east"))
    assert only(run(states)).addresses == expected


def test_failover_when_local_has_no_ready_endpoint() -> None:
    states = [
        cluster("east", exported(ep("10.0.0.1", ready=False))),
        cluster("west", exported(ep("10.1.0.1", ready=False))),
        cluster("south", ready_svc("10.3.0.1")),
    ]
    result = run(states)
    assert only(result).addresses == ("10.3.0.1",)
    assert result.failed_open == []


def test_no_region_means_no_same_region_tier() -> None:
    states = [
        cluster("east"),
        ClusterState(
            "west", 1, 1, region="", namespaces=NAMESPACES, services={WEB: ready_svc("10.1.0.1")}
        ),
        ClusterState(
            "zzz", 1, 1, region="", namespaces=NAMESPACES, services={WEB: ready_svc("10.5.0.1")}
        ),
    ]
    result = decide(states, Locality("east", ""), NAMESPACES, ALL | {"zzz"})
    # Both are "others": interleaved, no preference for the empty region.
    assert only(result).addresses == ("10.1.0.1", "10.5.0.1")


# ------------------------------------------------------------------------------ the cap


def test_every_candidate_is_kept_and_the_cap_travels_to_the_zone() -> None:
    """The policy orders candidates; the zone shows ``max_addresses`` and rotates."""
    assert DEFAULT_MAX_ADDRESSES == 8
    v4 = [f"10.0.0.{i}" for i in range(1, 13)]
    v6 = [f"fd00::{i:x}" for i in range(1, 13)]
    records = only(run([cluster("east", ready_svc(*v4, *v6))]))
    assert records.addresses == (*v4, *v6)
    assert records.max_addresses == 8


def test_candidates_interleave_clusters_of_a_tier() -> None:
    west = [f"10.1.0.{i}" for i in range(1, 7)]
    wast = [f"10.2.0.{i}" for i in range(1, 7)]
    states = [cluster("east"), cluster("west", ready_svc(*west)), cluster("wast", ready_svc(*wast))]
    addresses = only(run(states)).addresses
    assert addresses == tuple(a for pair in zip(wast, west, strict=True) for a in pair)


@pytest.mark.parametrize("cap", [1, 3, 20])
def test_custom_cap(cap: int) -> None:
    v4 = [f"10.0.0.{i}" for i in range(1, 13)]
    records = only(run([cluster("east", ready_svc(*v4))], max_addresses=cap))
    assert records.max_addresses == cap
    assert records.addresses == tuple(v4)


def test_one_family_only_is_not_padded() -> None:
    v6 = [f"fd00::{i:x}" for i in range(1, 4)]
    assert only(run([cluster("east", ready_svc(*v6))])).addresses == tuple(v6)


# ---------------------------------------------------------------------------- health


@pytest.mark.parametrize(
    ("healthy", "expected"),
    [
        pytest.param(ALL, ("10.0.0.1",), id="all-healthy"),
        pytest.param(ALL - {"east"}, ("10.1.0.1",), id="local-unhealthy"),
        pytest.param(ALL - {"east", "west"}, ("10.3.0.1",), id="region-unhealthy"),
        pytest.param({"east", "south"}, ("10.0.0.1",), id="others-unhealthy"),
    ],
)
def test_unhealthy_clusters_are_left_out(
    healthy: frozenset[str], expected: tuple[str, ...]
) -> None:
    states = [
        cluster("east", ready_svc("10.0.0.1")),
        cluster("west", ready_svc("10.1.0.1")),
        cluster("south", ready_svc("10.3.0.1")),
    ]
    result = run(states, healthy=healthy)
    assert only(result).addresses == expected
    assert result.failed_open == []


def test_fail_open_when_every_exporter_is_unhealthy() -> None:
    other = ServiceKey("shop", "other")
    states = [
        cluster("east", exported(ep("10.0.0.9"), key=other)),
        cluster("west", exported(ep("10.1.0.1"), ep("10.1.0.2", ready=False))),
        cluster("south", ready_svc("10.3.0.1")),
    ]
    result = run(states, healthy={"east"})
    assert result.failed_open == [WEB]
    # Last-known ready endpoints, still by tier; never the not-ready one.
    assert only(result).addresses == ("10.1.0.1",)
    assert only(result, other).addresses == ("10.0.0.9",)


def test_fail_open_uses_every_tier_order_and_cap() -> None:
    states = [
        cluster("east"),
        cluster("south", ready_svc(*(f"10.3.0.{i}" for i in range(1, 11)))),
        cluster("north", ready_svc(*(f"10.4.0.{i}" for i in range(1, 11)))),
    ]
    result = run(states, healthy={"east"}, max_addresses=4)
    assert result.failed_open == [WEB]
    assert only(result).addresses[:4] == ("10.4.0.1", "10.3.0.1", "10.4.0.2", "10.3.0.2")
    assert len(only(result).addresses) == 20
    assert only(result).max_addresses == 4


def test_no_fail_open_to_not_ready_endpoints() -> None:
    states = [
        cluster("east"),
        cluster("west", exported(ep("10.1.0.1", ready=False))),
        cluster("south", exported(ep("10.3.0.1", ready=False))),
    ]
    for healthy in (set(), {"east"}, ALL):
        result = run(states, healthy=healthy)
        assert result.failed_open == []
        assert only(result).addresses == ()


def test_no_fail_open_when_a_healthy_exporter_has_ready_endpoints() -> None:
    states = [
        cluster("east"),
        cluster("west", ready_svc("10.1.0.1")),
        cluster("south", ready_svc("10.3.0.1")),
    ]
    result = run(states, healthy={"east", "south"})
    assert result.failed_open == []
    assert only(result).addresses == ("10.3.0.1",)


def test_headless_fail_open() -> None:
    states = [
        cluster("east"),
        cluster(
            "west",
            exported(ep("10.1.0.1", hostname="w-0"), ep("10.1.0.2", ready=False), headless=True),
        ),
    ]
    result = run(states, healthy={"east"})
    assert result.failed_open == [WEB]
    record = only(result)
    assert record.addresses == ("10.1.0.1",)
    assert record.endpoints == (HeadlessEndpoint("west", ("10.1.0.1",), "w-0"),)


# ------------------------------------------------------------------------------- headless


def test_headless_answers_every_ready_endpoint_of_every_healthy_cluster() -> None:
    many = [ep(f"10.0.0.{i}") for i in range(1, 13)]
    states = [
        cluster("east", exported(*many, ep("10.0.9.9", ready=False), headless=True)),
        cluster(
            "west",
            exported(
                ep("10.1.0.1", hostname="web-0"),
                ep("10.0.0.1", hostname="dup"),  # already answered by east
                ep("10.1.0.2", "10.0.0.2", hostname="web-1"),  # one address is a duplicate
                headless=True,
            ),
        ),
        cluster("south", exported(ep("10.3.0.1", hostname="s-0"), headless=True)),
        cluster("north", exported(ep("10.4.0.1"), headless=True)),
    ]
    result = run(states, healthy=ALL - {"north"})
    record = only(result)
    assert record.headless is True
    # In tier order (this cluster, its region, the rest), each tier an SRV priority; never
    # capped.
    expected_addresses = (
        *(f"10.0.0.{i}" for i in range(1, 13)),
        "10.1.0.1",
        "10.1.0.2",
        "10.3.0.1",
    )
    assert record.addresses == expected_addresses
    assert len(set(record.addresses)) == len(record.addresses)
    assert record.endpoints == (
        *(HeadlessEndpoint("east", (f"10.0.0.{i}",), None, 0) for i in range(1, 13)),
        HeadlessEndpoint("west", ("10.1.0.1",), "web-0", 1),
        HeadlessEndpoint("west", ("10.1.0.2",), "web-1", 1),
        HeadlessEndpoint("south", ("10.3.0.1",), "s-0", 2),
    )
    assert result.failed_open == []


T0 = 1_700_000_000.0  # a ServiceExport's creationTimestamp, epoch seconds


def test_the_oldest_exports_type_wins_even_over_this_clusters() -> None:
    older_clusterip = cluster("west", exported(ep("10.1.0.1"), at=T0))
    newer_headless_here = cluster("east", exported(ep("10.0.0.1"), headless=True, at=T0 + 60))
    assert only(run([newer_headless_here, older_clusterip])).headless is False
    older_headless = cluster("west", exported(ep("10.1.0.1"), headless=True, at=T0))
    newer_clusterip_here = cluster("east", exported(ep("10.0.0.1"), at=T0 + 60))
    assert only(run([newer_clusterip_here, older_headless])).headless is True


def test_an_unknown_export_time_ranks_last_and_ties_go_by_cluster_id() -> None:
    manifest_here = cluster("east", exported(ep("10.0.0.1"), headless=True))  # at=0: unknown
    dated = cluster("west", exported(ep("10.1.0.1"), at=T0))
    assert only(run([manifest_here, dated])).headless is False
    states = [
        cluster("east"),
        cluster("west", exported(ep("10.1.0.1"), at=T0)),
        cluster("wast", exported(ep("10.2.0.1"), headless=True, at=T0)),
    ]
    # The same time: wast < west, so wast's type wins.
    assert only(run(states)).headless is True


# ---------------------------------------------------------------------------------- ports


def test_ports_merge_with_the_older_definition_winning() -> None:
    http, http_here = ServicePort("http", "TCP", 80), ServicePort("http", "TCP", 8080)
    dns_udp, dns_tcp = ServicePort("dns", "UDP", 53), ServicePort("dns", "TCP", 53)
    unnamed = ServicePort("", "TCP", 9090)
    states = [
        cluster("west", exported(ep("10.1.0.1"), ports=(dns_udp, http), at=T0)),
        # This cluster's export is newer: its "http" on 8080 loses to west's on 80.
        cluster("east", exported(ep("10.0.0.1"), ports=(http_here, unnamed), at=T0 + 5)),
        # "dns" is taken by west's UDP/53: south's TCP/53 under that name loses.
        cluster("south", exported(ep("10.3.0.1"), ports=(dns_tcp, http), at=T0 + 9)),
    ]
    record = only(run(states))
    assert record.ports == (("dns", "UDP", 53), ("http", "TCP", 80), ("", "TCP", 9090))


def test_ports_include_unhealthy_exporters() -> None:
    states = [
        cluster("east", exported(ep("10.0.0.1"), ports=(ServicePort("http", "TCP", 80),))),
        cluster("west", exported(ep("10.1.0.1"), ports=(ServicePort("grpc", "TCP", 9000),))),
    ]
    assert only(run(states, healthy={"east"})).ports == (("http", "TCP", 80), ("grpc", "TCP", 9000))


_PORTS = st.sampled_from(
    [
        ServicePort("http", "TCP", 80),
        ServicePort("http", "TCP", 8080),
        ServicePort("", "TCP", 80),
        ServicePort("dns", "UDP", 53),
        ServicePort("dns", "TCP", 53),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(REGIONS)),
            st.booleans(),
            st.lists(_PORTS, max_size=3, unique=True),
            st.sampled_from([0.0, T0, T0 + 1]),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda item: item[0],
    )
)
def test_dns_and_the_service_import_share_one_view(
    exports: list[tuple[str, bool, list[ServicePort], float]],
) -> None:
    """Whatever the clusters export, DNS answers the type and ports that the ServiceImport
    write-back publishes (``merge_clusterset``): the clusterset never disagrees with itself."""
    states = [
        cluster(cid, exported(ep(f"10.9.0.{i}"), headless=h, ports=tuple(ps), at=at))
        for i, (cid, h, ps, at) in enumerate(exports, start=1)
    ]
    view = merge_clusterset(states)[WEB]
    record = only(run(states))
    assert record.headless == (view.type is ServiceType.HEADLESS), exports
    assert record.ports == tuple((p.name, p.protocol, p.port) for p in view.ports), exports


# --------------------------------------------------------------------------- determinism


def _mixed_states() -> list[ClusterState]:
    db = ServiceKey("shop", "db")
    return [
        cluster(
            "east",
            ready_svc("10.0.0.1", "fd00::1"),
            exported(ep("10.0.1.1", hostname="db-0"), key=db, headless=True),
        ),
        cluster("west", ready_svc("10.1.0.1"), exported(ep("10.1.1.1"), key=db, headless=True)),
        cluster("wast", ready_svc("10.2.0.1", "10.2.0.2")),
        cluster("south", ready_svc(*(f"10.3.0.{i}" for i in range(1, 10)))),
        cluster(
            "north",
            exported(ep("10.4.0.1", ready=False), ep("10.4.0.2")),
            exported(ep("10.4.1.1"), key=db, headless=True),
        ),
    ]


def test_output_does_not_depend_on_input_order() -> None:
    states = _mixed_states()
    for healthy in (ALL, {"south", "north"}, set()):
        expected = run(states, healthy=healthy)
        for perm in itertools.permutations(states):
            assert run(perm, healthy=healthy) == expected


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(_mixed_states()),
    healthy=st.sets(st.sampled_from(sorted(ALL))),
    cap=st.integers(1, 10),
)
def test_output_is_deterministic_for_any_order(
    order: list[ClusterState], healthy: set[str], cap: int
) -> None:
    expected = run(_mixed_states(), healthy=healthy, max_addresses=cap)
    assert run(order, healthy=healthy, max_addresses=cap) == expected
    # Iterables other than lists, and generators, give the same answer.
    assert run(iter(order), healthy=healthy, max_addresses=cap) == expected


_PORTS = st.lists(
    st.builds(
        ServicePort,
        st.sampled_from(["", "http", "grpc"]),
        st.sampled_from(["TCP", "UDP"]),
        st.sampled_from([53, 80, 443]),
    ),
    max_size=4,
).map(tuple)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    ports=_PORTS,
    headless=st.booleans(),
    annotations=st.sampled_from([(), (("meshd.io/weights", "a=1"),)]),
    affinity=st.sampled_from([("", 0), ("ClientIP", 30)]),
    addresses=st.lists(st.sampled_from(["10.0.0.1", "fd00::1", "10.0.0.2"]), max_size=3),
    cluster_ips=st.sampled_from([(), ("10.96.0.1",), ("fd00::96",)]),
)
def test_a_service_of_one_exporter_merges_as_the_general_rule_does(
    ports: tuple[ServicePort, ...],
    headless: bool,
    annotations: tuple[tuple[str, str], ...],
    affinity: tuple[str, int],
    addresses: list[str],
    cluster_ips: tuple[str, ...],
) -> None:
    """view.py: the shortcut for a service only one cluster exports (a catch-up merges most
    services that way) gives the view the general merge gives, duplicate ports included."""
    kind = ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP
    svc = ExportedService(
        ServiceKey("shop", "web"),
        kind,
        ports,
        tuple(Endpoint((a,)) for a in addresses),
        annotations=annotations,
        cluster_ips=cluster_ips,
        session_affinity=affinity[0],
        affinity_timeout_s=affinity[1],
    )
    general = view_module._merge(svc.key, [("east", svc)])
    assert merge_service(svc.key, [("east", svc)]) == general
