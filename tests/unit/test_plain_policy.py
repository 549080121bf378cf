"""The routing shortcut of plain services (``mesh.routing.plain``) decides what the general
rules (``policy.decide_service``) decide, or declines.

Seeded random services of every shape: one or two exporters, either type, annotations (good,
bad, unknown), healthy, unhealthy and drained clusters, endpoints ready or not and with
duplicate or no addresses, clashing ports, endpoint ports that differ from the Service's,
every default answer mode; half the services' endpoints all plain, packed when all IPv4
(``PackedEndpoints``). ``plain_decision`` returns None or the very ``Decision`` of
``decide_service``; and it takes the plain services (it must not quietly decline them all).
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from mesh.model import (
    ClusterState,
    Endpoint,
    Endpoints,
    ExportedService,
    PackedEndpoints,
    ServiceKey,
    ServicePort,
    ServiceType,
    pack_endpoints,
)
from mesh.routing.modes import ANSWER_MODES, Answering
from mesh.routing.plain import plain_decision
from mesh.routing.policy import Locality, decide_service

KEY = ServiceKey("shop", "web")
HERE = Locality("c1", "r1")


def _endpoint(rng: random.Random) -> Endpoint:
    addresses = tuple(
        rng.choice(["10.0.0.1", "10.0.0.2", f"10.1.0.{rng.randint(1, 9)}", "fd00::1"])
        for _ in range(rng.choice([1, 1, 1, 2, 0]))
    )
    return Endpoint(addresses, rng.random() < 0.85, rng.choice([None, None, "h"]))


def _endpoints(rng: random.Random) -> Endpoints:
    """Endpoints of every kind; half the time all plain (packed when all IPv4: the catch-up's
    commonest service), duplicates included."""
    if rng.random() < 0.5:
        return tuple(_endpoint(rng) for _ in range(rng.randint(0, 5)))
    v6 = rng.random() < 0.2
    chosen = [
        "fd00::1" if v6 and rng.random() < 0.3 else f"10.0.0.{rng.randint(1, 12)}"
        for _ in range(rng.randint(1, 5))
    ]
    return pack_endpoints(Endpoint((a,)) for a in chosen)


def _ports(rng: random.Random) -> tuple[ServicePort, ...]:
    pool = [
        ServicePort("http", "TCP", 80),
        ServicePort("grpc", "TCP", 9090),
        ServicePort("http", "TCP", 81),  # clashes with http/80 by name
        ServicePort("", "UDP", 53),
        ServicePort("dns", "UDP", 53),  # clashes with the unnamed UDP/53 by number
    ]
    return tuple(rng.sample(pool, rng.randint(0, 3)))


def _annotations(rng: random.Random) -> tuple[tuple[str, str], ...]:
    return rng.choice(
        [
            (),
            (),
            (),
            (("meshd.io/ttl", "30"),),
            (("meshd.io/max-answers", "2"),),
            (("meshd.io/affinity", "none"),),
            (("meshd.io/typo", "1"),),
            (("meshd.io/answer-mode", "cluster-ip"),),
        ]
    )


def _export(rng: random.Random) -> ExportedService:
    ports = _ports(rng)
    endpoint_ports = tuple(
        ServicePort(p.name, p.protocol, rng.choice([p.port, 8080])) for p in ports
    )
    return ExportedService(
        KEY,
        ServiceType.CLUSTER_SET_IP if rng.random() < 0.85 else ServiceType.HEADLESS,
        ports,
        _endpoints(rng),
        rng.choice([0.0, 100.0, 200.0]),
        _annotations(rng),
        endpoint_ports if rng.random() < 0.5 else (),
        rng.choice([(), ("10.96.0.1",)]),
    )


@pytest.mark.parametrize("seed", range(30))
def test_the_shortcut_decides_as_the_general_rules_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    taken = packed_ones = 0
    for _ in range(300):
        clusters = rng.sample(["c1", "c2", "c3"], rng.choice([1, 1, 1, 2]))
        exporters = [
            (ClusterState(c, 1, 1, rng.choice(["r1", "r2"]), services={KEY: svc}), svc)
            for c in clusters
            for svc in [_export(rng)]
        ]
        healthy = {c for c in ["c1", "c2", "c3"] if rng.random() < 0.8}
        drained = {c for c in ["c1", "c2"] if rng.random() < 0.1}
        answering = Answering(rng.choice(ANSWER_MODES + ("endpoints",) * 3), rng.random() < 0.5)
        max_addresses = rng.choice([1, 8])
        plain = plain_decision(KEY, exporters, healthy, drained, max_addresses, answering)
        general = decide_service(
            KEY,
            exporters,
            HERE,
            healthy,
            max_addresses,
            drained=drained,
            answering=answering,
        )
        if plain is None:
            continue
        taken += 1
        assert plain == general, f"seed {seed}"
        octets = plain.records.packed_v4  # (not part of equality: checked here)
        if octets:
            packed_ones += 1
            texts = plain.records.addresses
            assert octets == b"".join(ipaddress.IPv4Address(a).packed for a in texts)
        else:  # given whenever the endpoints are packed and without duplicates
            eps = exporters[0][1].endpoints
            assert type(eps) is not PackedEndpoints or len(set(eps)) < len(eps), f"seed {seed}"
    assert taken > 10, f"seed {seed}: the shortcut took only {taken} services"
    assert packed_ones > 2, f"seed {seed}: only {packed_ones} packed services taken"
