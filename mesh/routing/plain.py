"""The routing decision of the commonest service, in few calls (pure).

A catch-up decides every service of the clusterset at once, and most are plain: a
ClusterSetIP service that one cluster exports, without ``meshd.io/`` annotations (the
default policy) or clashing ports, answered in mode ``endpoints``. For such a service the
general rules (``policy.decide_service``: merge the exports, parse the policy, order tiers,
choose, interleave, plan ports) come to this: when its cluster is healthy, not drained and
has a ready endpoint, that cluster alone answers (first tier, weight 1) with its ready
addresses in order without duplicates, and SRV carries the ports ``ports.plan_ports`` plans
(a ``target_port_differs`` problem when they are not the Service's). ``plain_decision``
builds that ``Decision`` directly (``plain_records``: its records and ports' note alone,
for the planner, which needs no more), and declines (None) every other service, which the caller
decides the general way: several exporters, annotations, another answer mode, an unhealthy,
drained or not ready cluster (it may fail open). A service whose endpoints are packed
(``PackedEndpoints``: all ready, one IPv4 address each) is read without making an
``Endpoint``, and its addresses' octets go to the DNS encoder with the texts
(``ServiceRecords.packed_v4``), which then parses nothing; the texts come from one C call
(``dnsserver.plainblob.quad_texts``) when there is no duplicate. A property test
(tests/unit/test_plain_policy.py) holds it to ``decide_service`` over seeded random
services of every shape.
"""

from __future__ import annotations

from collections.abc import Set

from dnsserver.plainblob import quad_texts
from dnsserver.records import ServiceRecords
from mesh.model import (
    ClusterId,
    ClusterState,
    Endpoints,
    ExportedService,
    PackedEndpoints,
    ServiceKey,
    ServiceType,
)
from mesh.routing.annotations import Problem
from mesh.routing.modes import ENDPOINTS, Answering
from mesh.routing.policy import Decision
from mesh.routing.ports import PortPlan, plan_ports
from mesh.routing.tiers import Choice
from mesh.routing.view import distinct_ports


def plain_decision(
    key: ServiceKey,
    exporters: list[tuple[ClusterState, ExportedService]],
    healthy: Set[ClusterId],
    drained: Set[ClusterId],
    max_addresses: int,
    answering: Answering,
) -> Decision | None:
    """``policy.decide_service`` of a plain service (see the module docstring), else None."""
    if len(exporters) != 1:
        return None
    state, svc = exporters[0]
    plain = plain_records(key, state, svc, healthy, drained, max_addresses, answering)
    if plain is None:
        return None
    records, note = plain
    problems = (Problem("target_port_differs", note),) if note else ()
    choice = Choice(((state, svc, 1),), 0)
    return Decision(records, "first_tier", problems, note, ENDPOINTS, choice)


def plain_records(
    key: ServiceKey,
    state: ClusterState,
    svc: ExportedService,
    healthy: Set[ClusterId],
    drained: Set[ClusterId],
    max_addresses: int,
    answering: Answering,
) -> tuple[ServiceRecords, str] | None:
    """What ``plain_decision`` decides for a service ``state`` alone exports, without the
    ``Decision`` (a catch-up's planner needs only these: ``AnswerPlanner._note_plain``):
    its records and its ports' note ("" or what a ``target_port_differs`` problem says);
    the state is "first_tier", the mode ``endpoints``, the choice ``state`` alone with
    weight 1. None for every other service."""
    if answering.default != ENDPOINTS:
        return None
    cluster = state.cluster_id
    if (
        svc.type is not ServiceType.CLUSTER_SET_IP
        or svc.annotations
        or cluster not in healthy
        or cluster in drained
        or not distinct_ports(svc.ports)
    ):
        return None
    addresses, packed = _ready_addresses(svc.endpoints)
    if not addresses:
        return None  # it fails open, the general way
    if svc.endpoint_ports:
        ports = plan_ports(svc.ports, ((cluster, svc),), mapped=False)
    else:  # no slice says what its endpoints listen on: the Service ports stand
        ports = PortPlan(tuple([(p.name, p.protocol, p.port) for p in svc.ports]))
    records = ServiceRecords(
        key.namespace, key.name, False, addresses, ports.ports, (), max_addresses, packed_v4=packed
    )
    return records, ports.note


def _ready_addresses(endpoints: Endpoints) -> tuple[tuple[str, ...], bytes]:
    """The ready addresses in order without duplicates, and their octets when the endpoints
    are packed (all ready, one IPv4 address each): the DNS encoder then takes the octets
    instead of parsing the texts, and no ``Endpoint`` is made (``PackedEndpoints``)."""
    if isinstance(endpoints, PackedEndpoints):
        octets = endpoints.octets()
        quads = quad_texts(octets)  # in one call, when there is no duplicate (most)
        if quads is not None:
            return quads, octets
        texts = endpoints.addresses()
        addresses = tuple(dict.fromkeys(texts))
        return addresses, octets if len(addresses) == len(texts) else b""
    ready = [a for e in endpoints if e.ready for a in e.addresses]
    return tuple(dict.fromkeys(ready)), b""
