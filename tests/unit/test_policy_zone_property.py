"""From a catalog to the zone, nothing raises (issue 13): arbitrary clusters and exports,
including what Kubernetes accepts but DNS cannot carry (63-character names everywhere, long
hostnames and port names) and what only a broken peer would send (bad addresses and
labels), through the routing policy into the zone. The zone leaves out what cannot be
encoded and never leaves out a service for a bug of ours (``internal``).

Uses ``mesh.routing.policy`` and ``mesh.model`` (the catalog side); if those move, only the imports
below change.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver.zone import build_zone
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.routing.policy import Locality, decide

LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
LABELS = st.one_of(
    st.sampled_from(["east", "west", "shop", "web", "a" * 63]),
    st.text(LABEL_CHARS, min_size=1, max_size=63),
    st.text(max_size=6),  # what a validating source would refuse
)
ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.text(max_size=10)
)
ENDPOINTS = st.builds(
    Endpoint,
    st.lists(ADDRESSES, min_size=1, max_size=2).map(tuple),
    st.booleans(),
    st.one_of(st.none(), LABELS),
)
PORTS = st.builds(
    ServicePort,
    st.one_of(st.just(""), LABELS),
    st.sampled_from(["TCP", "UDP", "SCTP"]),
    st.integers(1, 65535),
)
KEYS = st.builds(ServiceKey, st.sampled_from(["shop", "a" * 63]), LABELS)


@st.composite
def cluster_states(draw: st.DrawFn) -> list[ClusterState]:
    states = []
    for cluster_id in draw(st.lists(LABELS, min_size=1, max_size=3, unique=True)):
        services = {}
        for key in draw(st.lists(KEYS, max_size=3)):
            services[key] = ExportedService(
                key,
                draw(st.sampled_from(ServiceType)),
                tuple(draw(st.lists(PORTS, max_size=3))),
                tuple(draw(st.lists(ENDPOINTS, max_size=6))),
            )
        states.append(
            ClusterState(
                cluster_id, 1, 1, draw(st.sampled_from(["us", "eu", ""])), "", services=services
            )
        )
    return states


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(states=cluster_states(), max_addresses=st.integers(1, 64))
def test_any_catalog_builds_a_zone(states: list[ClusterState], max_addresses: int) -> None:
    namespaces = {"shop", "a" * 63}
    healthy = {s.cluster_id for s in states[:-1]}  # the last one unreachable: fail open too
    result = decide(
        states, Locality(states[0].cluster_id, "us"), namespaces, healthy, max_addresses
    )
    zone = build_zone("clusterset.local", result.records, serial=1)
    assert "internal" not in zone.skipped, zone.skipped
    assert zone.service_count() <= len(result.records)
