"""Per-service routing policy: annotations (good and bad), tiers, weights, min-healthy, TTL,
and the weighted answers the zone builds from them."""

from __future__ import annotations

import math
from collections import Counter

import dns.message
import dns.rdatatype
import pytest

from dnsserver.query import QueryStats, respond
from dnsserver.weighted import schedule
from dnsserver.zone import Zone
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.annotations import DEFAULT_POLICY, MinHealthy, parse_policy
from mesh.routing.policy import Locality, decide_service
from mesh.routing.tiers import tiers

WEB = ServiceKey("shop", "web")
REGIONS = {"east": "us", "west": "us", "south": "eu", "north": "eu", "far": "ap"}
HERE = Locality("east", "us")


def svc(*addresses: str, headless: bool = False, at: float = 0.0, **notes: str) -> ExportedService:
    annotations = tuple(sorted((f"meshd.io/{k.replace('_', '-')}", v) for k, v in notes.items()))
    return ExportedService(
        WEB,
        ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP,
        (ServicePort("http", "TCP", 80),),
        tuple(Endpoint((a,)) for a in addresses),
        at,
        annotations,
    )


def state(cid: str, service: ExportedService) -> ClusterState:
    return ClusterState(cid, 1, 1, REGIONS[cid], "", frozenset({"shop"}), {WEB: service})


def exporters(**services: ExportedService) -> list[tuple[ClusterState, ExportedService]]:
    found = [(state(c, s), s) for c, s in services.items()]
    return sorted(found, key=lambda p: (p[0].cluster_id != HERE.cluster_id, p[0].cluster_id))


def decide(healthy: set[str] | None = None, **services: ExportedService):  # type: ignore[no-untyped-def]
    found = exporters(**services)
    alive = set(services) if healthy is None else healthy
    return decide_service(WEB, found, HERE, alive)


# --- annotations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("affinity", "closest", "bad_affinity"),
        ("failover-order", "east,,west", "bad_failover_order"),
        ("failover-order", "east,east", "bad_failover_order"),
        ("failover", "us-east", "bad_failover"),
        ("failover", "us=us", "bad_failover"),
        ("weights", "east=70,west", "bad_weights"),
        ("weights", "east=-1", "bad_weights"),
        ("weights", "east=0,west=0", "bad_weights"),
        ("max-answers", "0", "bad_max_answers"),
        ("max-answers", "65", "bad_max_answers"),
        ("min-healthy", "0", "bad_min_healthy"),
        ("min-healthy", "120%", "bad_min_healthy"),
        ("ttl", "3601", "bad_ttl"),
        ("ttl", "five", "bad_ttl"),
        ("answer-mode", "vip", "bad_answer_mode"),
        ("wieghts", "east=1", "unknown_annotation"),
    ],
)
def test_a_bad_annotation_takes_the_default_and_is_reported(
    key: str, value: str, reason: str
) -> None:
    policy, problems = parse_policy([(f"meshd.io/{key}", value)])
    assert policy == DEFAULT_POLICY, (key, value)
    assert [p.reason for p in problems] == [reason], (key, value, problems)
    assert value[:20] in problems[0].message or key in problems[0].message


def test_good_annotations_parse() -> None:
    policy, problems = parse_policy(
        [
            ("meshd.io/affinity", "remote"),
            ("meshd.io/failover-order", "west|south, eu ,far"),
            ("meshd.io/weights", "east=70, west=30"),
            ("meshd.io/max-answers", "1"),
            ("meshd.io/min-healthy", "50%"),
            ("meshd.io/ttl", "0"),
        ]
    )
    assert problems == []
    assert policy.affinity == "remote"
    assert policy.failover_order == (("west", "south"), ("eu",), ("far",))
    assert dict(policy.weights) == {"east": 70, "west": 30}
    assert (policy.max_answers, policy.ttl) == (1, 0)
    assert policy.min_healthy == MinHealthy(50, True)


def test_failover_order_wins_over_failover_and_the_conflict_is_reported() -> None:
    policy, problems = parse_policy(
        [("meshd.io/failover-order", "south"), ("meshd.io/failover", "us=ap")]
    )
    assert policy.failover_order == (("south",),)
    assert not policy.failover
    assert [p.reason for p in problems] == ["conflict"]


# --- tiers -----------------------------------------------------------------------------------


def order(**notes: str) -> list[list[str]]:
    policy, _ = parse_policy([(f"meshd.io/{k.replace('_', '-')}", v) for k, v in notes.items()])
    found = exporters(**{c: svc("10.0.0.1") for c in REGIONS})
    return [[st.cluster_id for st, _ in tier] for tier in tiers(policy, found, "east", "us")]


def test_default_tiers_are_this_cluster_its_region_then_the_rest() -> None:
    assert order() == [["east"], ["west"], ["far", "north", "south"]]


def test_affinity_remote_puts_this_cluster_last_and_none_makes_one_tier() -> None:
    assert order(affinity="remote") == [["west"], ["far", "north", "south"], ["east"]]
    assert order(affinity="none") == [["east", "far", "north", "south", "west"]]


def test_failover_order_names_clusters_or_regions_and_the_rest_come_last() -> None:
    assert order(failover_order="south|west,eu,east") == [
        ["south", "west"],
        ["north"],
        ["east"],
        ["far"],
    ]


def test_a_name_that_is_both_a_cluster_and_a_region_means_the_cluster() -> None:
    found = exporters(east=svc("10.0.0.1"), west=svc("10.1.0.1"), south=svc("10.3.0.1"))
    # A cluster named "us" exports too: "us" means that cluster, not region us.
    us_cluster = ClusterState("us", 1, 1, "eu", "", frozenset({"shop"}), {WEB: svc("10.9.0.1")})
    found.append((us_cluster, us_cluster.services[WEB]))
    policy, _ = parse_policy([("meshd.io/failover-order", "us")])
    names = [[st.cluster_id for st, _ in tier] for tier in tiers(policy, found, "east", "us")]
    assert names == [["us"], ["east", "south", "west"]]


def test_failover_maps_this_region_to_the_next_one_before_the_rest() -> None:
    assert order(failover="us=eu") == [["east"], ["west"], ["north", "south"], ["far"]]
    assert order(failover="eu=ap") == [["east"], ["west"], ["far", "north", "south"]]


# --- choosing --------------------------------------------------------------------------------


def test_the_first_healthy_tier_answers_and_dead_clusters_fail_over() -> None:
    decision = decide(east=svc("10.0.0.1"), west=svc("10.1.0.1"), south=svc("10.3.0.1"))
    assert (decision.records.addresses, decision.state) == (("10.0.0.1",), "first_tier")
    decision = decide(
        healthy={"south"}, east=svc("10.0.0.1"), west=svc("10.1.0.1"), south=svc("10.3.0.1")
    )
    assert (decision.records.addresses, decision.state) == (("10.3.0.1",), "later_tier")
    decision = decide(healthy=set(), east=svc("10.0.0.1"), west=svc("10.1.0.1"))
    assert (decision.records.addresses, decision.state) == (("10.0.0.1",), "failed_open")


def test_weights_pick_clusters_within_the_tier_and_weight_zero_never_blocks_failover() -> None:
    notes = {"affinity": "none", "weights": "east=70,west=30"}
    decision = decide(east=svc("10.0.0.1", **notes), west=svc("10.1.0.1"), south=svc("10.3.0.1"))
    assert decision.records.weighted == ((("10.0.0.1",), 70), (("10.1.0.1",), 30))
    # east and west down: south (weight 0) still answers rather than nothing.
    decision = decide(
        healthy={"south"},
        east=svc("10.0.0.1", **notes),
        west=svc("10.1.0.1"),
        south=svc("10.3.0.1"),
    )
    assert decision.records.addresses == ("10.3.0.1",)
    assert decision.state == "first_tier"


def test_min_healthy_spills_into_the_next_tier() -> None:
    here = svc("10.0.0.1", min_healthy="2")
    decision = decide(east=here, west=svc("10.1.0.1", "10.1.0.2"), south=svc("10.3.0.1"))
    assert decision.records.addresses == ("10.0.0.1", "10.1.0.1", "10.1.0.2")
    here = svc("10.0.0.1", "10.0.0.2", min_healthy="2")
    decision = decide(east=here, west=svc("10.1.0.1"))
    assert decision.records.addresses == ("10.0.0.1", "10.0.0.2")


def test_the_oldest_exports_annotations_win() -> None:
    older = svc("10.1.0.1", at=100.0, max_answers="1")
    newer_here = svc("10.0.0.1", at=200.0, max_answers="5")
    assert decide(east=newer_here, west=older).records.max_addresses == 1


def test_max_answers_and_ttl_reach_the_records() -> None:
    decision = decide(east=svc("10.0.0.1", "10.0.0.2", max_answers="1", ttl="30"))
    assert (decision.records.max_addresses, decision.records.ttl) == (1, 30)


def test_headless_srv_carries_the_tier_as_priority_and_the_share_as_weight() -> None:
    decision = decide(
        east=svc("10.0.0.1", headless=True, weights="east=1,west=3"),
        west=svc("10.1.0.1", "10.1.0.2", headless=True),
        south=svc("10.3.0.1", headless=True),
    )
    zone = Zone("clusterset.local", serial=1, ttl=5)
    zone.set_service("shop", "web", decision.records)
    srv = query(zone, "web.shop.svc.clusterset.local", "SRV")
    plan = sorted((r.priority, r.weight, str(r.target)) for r in srv.answer[0])
    assert plan == [
        (0, 10000, "10-0-0-1.east.web.shop.svc.clusterset.local."),
        (1, 5000, "10-1-0-1.west.web.shop.svc.clusterset.local."),
        (1, 5000, "10-1-0-2.west.web.shop.svc.clusterset.local."),
        # Alone in its tier, south takes all of it (weight 0 never blocks failover).
        (2, 10000, "10-3-0-1.south.web.shop.svc.clusterset.local."),
    ]


# --- weighted answers ------------------------------------------------------------------------


def query(zone: Zone, name: str, rtype: str) -> dns.message.Message:
    request = dns.message.make_query(name, rtype)
    request.flags &= ~0x0100
    wire = respond(zone, request.to_wire(), False, QueryStats())  # TCP: never cut
    assert wire is not None
    return dns.message.from_wire(wire)


def test_schedule_follows_the_weights_and_spreads_them() -> None:
    assert Counter(schedule([7, 3])) == {0: 7, 1: 3}
    assert schedule([1, 1]) == [0, 1]
    assert Counter(schedule([33, 67])) == {0: 33, 1: 67}
    assert len(schedule([1, 1_000_000])) == 100  # capped, still leading by share
    assert Counter(schedule([1, 1_000_000]))[0] <= 1


@pytest.mark.parametrize(
    ("weights", "max_answers"),
    [({"east": 70, "west": 30}, "1"), ({"east": 1, "west": 1, "south": 2}, "3")],
)
def test_weighted_answers_follow_the_weights_over_10000_queries(
    weights: dict[str, int], max_answers: str
) -> None:
    notes = {
        "affinity": "none",
        "weights": ",".join(f"{c}={w}" for c, w in weights.items()),
        "max_answers": max_answers,
    }
    prefix = {"east": "10.0.0.", "west": "10.1.0.", "south": "10.3.0."}
    services = {
        c: svc(*(f"{prefix[c]}{i}" for i in range(1, 4)), **(notes if c == "east" else {}))
        for c in weights
    }
    zone = Zone("clusterset.local", serial=1, ttl=5)
    zone.set_service("shop", "web", decide(**services).records)
    leaders: Counter[str] = Counter()
    for _ in range(10_000):
        answer = query(zone, "web.shop.svc.clusterset.local", "A").answer[0]
        addresses = [r.address for r in answer]
        assert len(addresses) == int(max_answers) == len(set(addresses))
        leaders[next(c for c, p in prefix.items() if addresses[0].startswith(p))] += 1
    total = sum(weights.values())
    chi_square = sum(
        (leaders[c] - 10_000 * w / total) ** 2 / (10_000 * w / total) for c, w in weights.items()
    )
    # Far below the 0.999 quantile for 2 degrees of freedom (13.8): the schedule is exact.
    assert chi_square < 13.8, (leaders, chi_square)
    assert math.isclose(leaders["east"] / 10_000, weights["east"] / total, abs_tol=0.01)


def test_the_ttl_annotation_sets_the_answers_ttl() -> None:
    zone = Zone("clusterset.local", serial=1, ttl=5)
    zone.set_service("shop", "web", decide(east=svc("10.0.0.1", ttl="42")).records)
    assert query(zone, "web.shop.svc.clusterset.local", "A").answer[0].ttl == 42
