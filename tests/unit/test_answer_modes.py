"""Answer modes (issue 15, part 2): endpoints, cluster-ip (each chosen cluster's Service
ClusterIP) and clusterset-ip (the VIP), chosen by the same routing policy."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dns.message
import dns.rdatatype
import pytest

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.annotations import DEFAULT_POLICY, ServicePolicy, parse_policy
from mesh.routing.modes import DEFAULT_ANSWERING, Answering, resolve_mode
from mesh.routing.policy import Decision, Locality, decide_service
from mesh.sources.fields import InvalidFieldError, cluster_ips

WEB = ServiceKey("shop", "web")
HERE = Locality("east", "us")
REGIONS = {"east": "us", "west": "us", "south": "eu"}
IPS = {"east": ("10.96.0.1", "fd00:96::1"), "west": ("10.97.0.1",), "south": ("10.98.0.1",)}
NAME = "web.shop.svc.clusterset.local"


def svc(
    cid: str,
    *,
    ready: bool = True,
    ips: tuple[str, ...] | None = None,
    headless: bool = False,
    **notes: str,
) -> ExportedService:
    annotations = tuple(sorted((f"meshd.io/{k.replace('_', '-')}", v) for k, v in notes.items()))
    octet = {"east": 1, "west": 2, "south": 3}[cid]
    return ExportedService(
        WEB,
        ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP,
        (ServicePort("http", "TCP", 80),),
        (Endpoint((f"10.{octet}.0.10",), ready=ready), Endpoint((f"10.{octet}.0.11",))),
        annotations=annotations,
        endpoint_ports=(ServicePort("http", "TCP", 8080),),
        cluster_ips=IPS[cid] if ips is None else ips,
    )


def decide(
    healthy: set[str] | None = None,
    answering: Answering = DEFAULT_ANSWERING,
    vip: tuple[str, ...] = (),
    **services: ExportedService,
) -> Decision:
    found = [
        (ClusterState(c, 1, 1, REGIONS[c], "", frozenset({"shop"}), {WEB: s}), s)
        for c, s in services.items()
    ]
    found.sort(key=lambda p: (p[0].cluster_id != HERE.cluster_id, p[0].cluster_id))
    alive = set(services) if healthy is None else healthy
    return decide_service(WEB, found, HERE, alive, 8, answering=answering, vip=vip)


def query(records: Any, rtype: str) -> list[Any]:
    zone = Zone("clusterset.local", serial=1)
    zone.synced = True
    zone.set_service("shop", "web", records)
    request = dns.message.make_query(NAME, rtype)
    wire = respond(zone, request.to_wire(), False, QueryStats())
    assert wire is not None
    reply = dns.message.from_wire(wire)
    return [rd for rrset in reply.answer for rd in rrset]


# --- the annotation and the mode a service answers in ---------------------------------------


def test_the_annotation_parses_and_a_bad_value_is_reported() -> None:
    assert parse_policy([("meshd.io/answer-mode", "cluster-ip")]) == (
        ServicePolicy(answer_mode="cluster-ip"),
        [],
    )
    policy, problems = parse_policy([("meshd.io/answer-mode", "VIP")])
    assert policy == DEFAULT_POLICY
    assert [p.reason for p in problems] == ["bad_answer_mode"]


@pytest.mark.parametrize(
    ("asked", "kind", "answering", "mode", "problem"),
    [
        (None, ServiceType.CLUSTER_SET_IP, Answering("cluster-ip"), "cluster-ip", None),
        ("endpoints", ServiceType.CLUSTER_SET_IP, Answering("cluster-ip"), "endpoints", None),
        ("clusterset-ip", ServiceType.CLUSTER_SET_IP, Answering(vips=True), "clusterset-ip", None),
        (
            "clusterset-ip",
            ServiceType.CLUSTER_SET_IP,
            Answering("cluster-ip"),
            "cluster-ip",
            "clusterset_ip_unavailable",
        ),
        ("cluster-ip", ServiceType.HEADLESS, Answering(), "endpoints", "headless_answer_mode"),
        (None, ServiceType.HEADLESS, Answering("cluster-ip"), "endpoints", None),
    ],
)
def test_the_mode_a_service_answers_in(
    asked: str | None, kind: ServiceType, answering: Answering, mode: str, problem: str | None
) -> None:
    found, reported = resolve_mode(ServicePolicy(answer_mode=asked), kind, answering)
    assert found == mode
    assert (reported.reason if reported is not None else None) == problem


# --- cluster-ip ----------------------------------------------------------------------------


def test_cluster_ip_answers_the_chosen_clusters_service_ip_per_family() -> None:
    # Default tiers: east (this cluster) answers alone, with its IPv4 and IPv6 ClusterIP.
    decision = decide(
        answering=Answering("cluster-ip"), east=svc("east"), west=svc("west"), south=svc("south")
    )
    assert decision.mode == "cluster-ip"
    assert [rd.address for rd in query(decision.records, "A")] == ["10.96.0.1"]
    assert [rd.address for rd in query(decision.records, "AAAA")] == ["fd00:96::1"]
    # SRV: kube-proxy maps the Service port, so SRV keeps it and nothing is reported.
    assert [rd.port for rd in query(decision.records, "SRV")] == [80]
    assert decision.ports_note == ""
    assert decision.problems == ()


def test_cluster_ip_fails_over_as_the_policy_does() -> None:
    services = {"east": svc("east"), "west": svc("west"), "south": svc("south")}
    mode = Answering("cluster-ip")
    # East dead: west (same region); west not ready either: south; nothing healthy: fail open.
    assert decide({"west", "south"}, mode, **services).records.addresses == ("10.97.0.1",)
    services["west"] = ExportedService(
        WEB,
        ServiceType.CLUSTER_SET_IP,
        services["west"].ports,
        (Endpoint(("10.2.0.10",), ready=False),),
        cluster_ips=IPS["west"],
    )
    assert decide({"west", "south"}, mode, **services).records.addresses == ("10.98.0.1",)
    failed = decide(set(), mode, **services)
    assert failed.state == "failed_open"
    assert set(failed.records.addresses) == {"10.96.0.1", "fd00:96::1"}


def test_cluster_ip_with_affinity_none_gives_one_ip_per_cluster() -> None:
    services = {c: svc(c, ips=IPS[c][:1], affinity="none") for c in ("east", "west", "south")}
    decision = decide(answering=Answering("cluster-ip"), **services)
    assert set(decision.records.addresses) == {"10.96.0.1", "10.97.0.1", "10.98.0.1"}


def test_cluster_ip_weights_decide_which_clusters_ip_comes_first() -> None:
    notes = {"affinity": "none", "weights": "east=70,west=30", "max_answers": "1"}
    services = {"east": svc("east", ips=("10.96.0.1",), **notes), "west": svc("west")}
    decision = decide(answering=Answering("cluster-ip"), **services)
    zone = Zone("clusterset.local", serial=1)
    zone.set_service("shop", "web", decision.records)
    leaders: Counter[str] = Counter()
    for _ in range(1000):
        wire = respond(zone, dns.message.make_query(NAME, "A").to_wire(), False, QueryStats())
        assert wire is not None
        (rrset,) = dns.message.from_wire(wire).answer
        (only,) = [rd.address for rd in rrset]
        leaders[only] += 1
    assert leaders == {"10.96.0.1": 700, "10.97.0.1": 300}


def test_a_cluster_without_cluster_ip_is_not_a_candidate_and_none_falls_back() -> None:
    services = {"east": svc("east", ips=()), "west": svc("west")}
    decision = decide(answering=Answering("cluster-ip"), **services)
    assert decision.records.addresses == ("10.97.0.1",)  # west, the next tier
    decision = decide(answering=Answering("cluster-ip"), east=svc("east", ips=()))
    assert decision.mode == "endpoints"
    assert set(decision.records.addresses) == {"10.1.0.10", "10.1.0.11"}
    assert [p.reason for p in decision.problems] == ["no_cluster_ip", "target_port_differs"]


def test_the_annotation_picks_the_mode_per_service() -> None:
    decision = decide(east=svc("east", answer_mode="cluster-ip"))
    assert decision.records.addresses == ("10.96.0.1", "fd00:96::1")
    decision = decide(answering=Answering("cluster-ip"), east=svc("east", answer_mode="endpoints"))
    assert set(decision.records.addresses) == {"10.1.0.10", "10.1.0.11"}


# --- clusterset-ip: the VIP once it exists, endpoints until then ----------------------------


def test_clusterset_ip_answers_the_vip_and_the_service_port() -> None:
    mode = Answering("clusterset-ip", vips=True)
    waiting = decide(answering=mode, east=svc("east"), west=svc("west"))
    assert waiting.mode == "clusterset-ip"
    assert set(waiting.records.addresses) == {"10.1.0.10", "10.1.0.11"}
    assert [rd.port for rd in query(waiting.records, "SRV")] == [8080]
    answered = decide(answering=mode, vip=("10.100.0.7",), east=svc("east"), west=svc("west"))
    assert answered.records.addresses == ("10.100.0.7",)
    assert [rd.port for rd in query(answered.records, "SRV")] == [80]
    # The choice is still the policy's: east's tier (for the derived EndpointSlices).
    assert [st.cluster_id for st, _, _ in answered.choice.clusters] == ["east"]


def test_clusterset_ip_as_an_annotation_without_the_api_source_answers_the_default() -> None:
    decision = decide(east=svc("east", answer_mode="clusterset-ip"))
    assert decision.mode == "endpoints"
    assert "clusterset_ip_unavailable" in [p.reason for p in decision.problems]


# --- the source: ClusterIPs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"clusterIP": "10.96.0.1"}, ("10.96.0.1",)),
        (
            {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"]},
            ("10.96.0.1", "fd00::1"),
        ),
        ({"clusterIP": "None"}, ()),
        ({"clusterIPs": ["None"]}, ()),
        ({}, ()),
        ({"clusterIP": ""}, ()),
    ],
)
def test_cluster_ips_from_the_service(spec: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert cluster_ips(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        {"clusterIP": "10.96.0.300"},
        {"clusterIPs": ["10.96.0.1", "10.96.0.2"]},
        {"clusterIPs": "10.96.0.1"},
        {"clusterIPs": ["10.96.0.1", "fd00::1", "10.0.0.1"]},
    ],
)
def test_bad_cluster_ips_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidFieldError, match=r"spec\.clusterIP"):
        cluster_ips(spec)
