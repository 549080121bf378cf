"""Ports of endpoint answers: SRV carries what the pods listen on (the EndpointSlice port),
and a service whose Service port differs is noted (issue 15, part 1)."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.rdatatype
import pytest

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone
from mesh.kube.conditions import ports_condition
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.modes import CLUSTER_IP
from mesh.routing.policy import Locality, decide_service
from mesh.routing.ports import plan_ports
from mesh.sources.translate import translate

WEB = ServiceKey("shop", "web")
HTTP = ServicePort("http", "TCP", 80)
HERE = Locality("east", "us")
REGIONS = {"east": "us", "west": "us", "south": "eu"}


def svc(
    *addresses: str,
    listen: int | None = 8080,
    headless: bool = False,
    ports: tuple[ServicePort, ...] = (HTTP,),
) -> ExportedService:
    return ExportedService(
        WEB,
        ServiceType.HEADLESS if headless else ServiceType.CLUSTER_SET_IP,
        ports,
        tuple(
            Endpoint((a,), hostname=f"web-{i}" if headless else None)
            for i, a in enumerate(addresses)
        ),
        endpoint_ports=() if listen is None else (ServicePort("http", "TCP", listen),),
    )


def exporters(**services: ExportedService) -> list[tuple[ClusterState, ExportedService]]:
    found = [
        (ClusterState(c, 1, 1, REGIONS[c], "", frozenset({"shop"}), {WEB: s}), s)
        for c, s in services.items()
    ]
    return sorted(found, key=lambda p: (p[0].cluster_id != HERE.cluster_id, p[0].cluster_id))


def srv(records: Any, qname: str = "web.shop.svc.clusterset.local") -> set[tuple[int, str]]:
    zone = Zone("clusterset.local", serial=1)
    zone.synced = True
    zone.set_service("shop", "web", records)
    query = dns.message.make_query(qname, "SRV")
    wire = respond(zone, query.to_wire(), False, QueryStats())
    assert wire is not None
    reply = dns.message.from_wire(wire)
    return {
        (rd.port, str(rd.target))
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.SRV
        for rd in rrset
    }


# --- the source: EndpointSlice ports ---------------------------------------------------------


def slice_doc(name: str, port: Any, *ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": port}],
        "endpoints": [
            {"addresses": [f"10.0.{i}.{len(name)}"], "conditions": {"ready": r}}
            for i, r in enumerate(ready)
        ],
    }


def exported_from(*slices: dict[str, Any]) -> tuple[ExportedService, list[str]]:
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
        },
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {"name": "web", "namespace": "shop"},
        },
        *slices,
    ]
    exports, problems = translate([("f.yaml", o) for o in objects])
    return exports.services[WEB], [p.reason for p in problems]


def test_the_source_reads_what_the_pods_listen_on_from_the_slices() -> None:
    exported, problems = exported_from(slice_doc("web-1", 8080, True))
    assert problems == []
    assert exported.ports == (HTTP,)
    assert exported.endpoint_ports == (ServicePort("http", "TCP", 8080),)
    assert exported.endpoint_port(HTTP) == 8080
    assert exported.endpoint_port(ServicePort("http", "UDP", 80)) is None


def test_slices_that_disagree_mid_rollout_give_the_port_most_ready_endpoints_use() -> None:
    exported, _ = exported_from(
        slice_doc("web-a", 8080, True, False, False), slice_doc("web-b", 9090, True, True)
    )
    assert exported.endpoint_ports == (ServicePort("http", "TCP", 9090),)


def test_a_slice_port_without_a_number_says_nothing_and_a_bad_one_is_reported() -> None:
    exported, problems = exported_from(slice_doc("web-1", None, True))
    assert exported.endpoint_ports == ()
    exported, problems = exported_from(slice_doc("web-1", 70000, True))
    assert exported.endpoint_ports == ()
    assert len(exported.endpoints) == 1  # the endpoints stay
    assert any("ports[0].port must be an integer 1-65535" in p for p in problems), problems


# --- the policy and the zone: SRV ports -----------------------------------------------------


def test_endpoint_answers_carry_the_endpoints_port_in_srv() -> None:
    decision = decide_service(WEB, exporters(east=svc("10.1.0.1")), HERE, {"east"})
    assert decision.records.ports == (("http", "TCP", 8080),)
    assert srv(decision.records) == {(8080, "web.shop.svc.clusterset.local.")}
    assert srv(decision.records, "_http._tcp.web.shop.svc.clusterset.local") == {
        (8080, "web.shop.svc.clusterset.local.")
    }
    assert '"http" TCP/80 -> 8080' in decision.ports_note
    assert [p.reason for p in decision.problems] == ["target_port_differs"]


def test_equal_ports_and_unknown_endpoint_ports_answer_the_service_port_unnoted() -> None:
    for service in (svc("10.1.0.1", listen=80), svc("10.1.0.1", listen=None)):
        decision = decide_service(WEB, exporters(east=service), HERE, {"east"})
        assert decision.records.ports == (("http", "TCP", 80),)
        assert decision.ports_note == ""
        assert decision.problems == ()


def test_headless_srv_targets_carry_the_endpoints_port() -> None:
    found = exporters(east=svc("10.1.0.1", headless=True), west=svc("10.2.0.1", headless=True))
    decision = decide_service(WEB, found, HERE, {"east", "west"})
    assert srv(decision.records) == {
        (8080, "web-0.east.web.shop.svc.clusterset.local."),
        (8080, "web-0.west.web.shop.svc.clusterset.local."),
    }


def test_the_answering_clusters_port_wins_and_a_disagreement_is_noted() -> None:
    found = exporters(east=svc("10.1.0.1", listen=8080), west=svc("10.2.0.1", listen=9090))
    # East answers (this cluster's tier): its port, and the disagreement is not in play.
    assert decide_service(WEB, found, HERE, {"east", "west"}).records.ports == (
        ("http", "TCP", 8080),
    )
    # East is out: west answers with its own port.
    assert decide_service(WEB, found, HERE, {"west"}).records.ports == (("http", "TCP", 9090),)
    # Both answer (one tier): SRV carries the first's, and the note names both.
    plan = plan_ports((HTTP,), [("east", found[0][1]), ("west", found[1][1])], mapped=False)
    assert plan.ports == (("http", "TCP", 8080),)
    assert "clusters disagree (east 8080, west 9090), SRV gives 8080" in plan.note


def test_a_proxied_answer_keeps_the_service_port() -> None:
    plan = plan_ports((HTTP,), [("east", svc("10.1.0.1"))], mapped=True)
    assert plan.ports == (("http", "TCP", 80),)
    assert plan.note == ""


# --- the ServiceExport condition ------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (8080, ("False", "TargetPortDiffers")),
        (80, ("True", "PortsMatch")),
        (None, ("True", "PortsMatch")),
    ],
)
def test_the_ports_condition(listen: int | None, expected: tuple[str, str]) -> None:
    status, reason, message = ports_condition(svc("10.1.0.1", listen=listen))
    assert (status, reason) == expected
    if status == "False":
        assert '"http" TCP/80 -> 8080' in message
        assert "cluster-ip" in message


def test_the_ports_condition_is_unknown_until_the_export_is_published() -> None:
    # Claiming PortsMatch before the endpoints are known would be a guess (and was written
    # to the API server before the first publish).
    assert ports_condition(None)[:2] == ("Unknown", "Pending")
    assert ports_condition(None, CLUSTER_IP)[:2] == ("True", "Proxied")
