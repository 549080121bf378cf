"""Model <-> protobuf translation, and the validation of everything a peer sends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.catalog import Digest
from mesh.codec import CodecError, digest_from_pb, digest_to_pb, state_from_pb, state_to_pb
from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.wire.v1 import gossip_pb2 as pb

WEB = ServiceKey("shop", "web")


def sample_state() -> ClusterState:
    web = ExportedService(
        key=WEB,
        type=ServiceType.CLUSTER_SET_IP,
        ports=(ServicePort("http", "TCP", 80), ServicePort("", "UDP", 53)),
        endpoints=(
            Endpoint(("10.0.0.1", "fd00::1"), ready=True, hostname="web-0", zone="us-1a"),
            Endpoint(("10.0.0.2",), ready=False),
        ),
    )
    db = ExportedService(
        key=ServiceKey("data", "db"),
        type=ServiceType.HEADLESS,
        ports=(ServicePort("pg", "SCTP", 5432),),
        endpoints=(Endpoint(("10.0.1.1",), hostname="db-0"),),
    )
    return ClusterState(
        cluster_id="east",
        generation=1_700_000_000_000_000_000,
        version=42,
        region="us",
        zone="us-1a",
        namespaces=frozenset({"shop", "data", "empty"}),
        services={web.key: web, db.key: db},
    )


# ------------------------------------------------------------------------------ round trip


def test_round_trip_sample() -> None:
    state = sample_state()
    msg = state_to_pb(state)
    assert msg.cluster_id == "east"
    assert list(msg.namespaces) == ["data", "empty", "shop"]
    assert [(s.namespace, s.name) for s in msg.services] == [("data", "db"), ("shop", "web")]
    assert msg.services[1].type == pb.CLUSTER_SET_IP
    assert msg.services[0].type == pb.HEADLESS
    back = state_from_pb(msg)
    assert back == state
    assert back.stamp == state.stamp


def test_round_trip_through_bytes() -> None:
    state = sample_state()
    data = state_to_pb(state).SerializeToString()
    msg = pb.ClusterState()
    msg.ParseFromString(data)
    assert state_from_pb(msg) == state
    assert state_from_pb(pb.ClusterState.FromString(data)) == state


def test_round_trip_empty_state() -> None:
    state = ClusterState("a", 1, 0)
    assert state_from_pb(state_to_pb(state)) == state


def test_digest_round_trip() -> None:
    d = Digest("west", 2**63, 7)
    assert digest_from_pb(digest_to_pb(d)) == d
    assert digest_from_pb(pb.Digest.FromString(digest_to_pb(d).SerializeToString())) == d
    with pytest.raises(CodecError, match="cluster id"):
        digest_from_pb(pb.Digest(cluster_id="Bad_Name", generation=1, version=1))


labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
endpoints = st.builds(
    Endpoint,
    addresses=st.lists(addresses, min_size=1, max_size=4).map(tuple),
    ready=st.booleans(),
    hostname=st.none() | labels,
    zone=st.none() | st.text(min_size=1, max_size=10),
)
ports = st.builds(
    ServicePort,
    name=st.just("") | labels,
    protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
    port=st.integers(1, 65535),
)


@st.composite
def cluster_states(draw: st.DrawFn) -> ClusterState:
    keys = draw(st.lists(st.builds(ServiceKey, labels, labels), max_size=4, unique=True))
    services = {
        key: ExportedService(
            key=key,
            type=draw(st.sampled_from(list(ServiceType))),
            ports=tuple(draw(st.lists(ports, max_size=3))),
            endpoints=tuple(draw(st.lists(endpoints, max_size=4))),
        )
        for key in keys
    }
    return ClusterState(
        cluster_id=draw(labels),
        generation=draw(st.integers(1, 2**64 - 1)),
        version=draw(st.integers(0, 2**64 - 1)),
        region=draw(st.text(max_size=10)),
        zone=draw(st.text(max_size=10)),
        namespaces=frozenset(draw(st.lists(labels, max_size=4))),
        services=services,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=cluster_states())
def test_round_trip_generated(state: ClusterState) -> None:
    msg = state_to_pb(state)
    assert state_from_pb(msg) == state
    assert state_from_pb(pb.ClusterState.FromString(msg.SerializeToString())) == state


# ------------------------------------------------------------------------------ validation


def good() -> pb.ClusterState:
    return state_to_pb(sample_state())


def _web(msg: pb.ClusterState) -> pb.Service:
    web: pb.Service = next(s for s in msg.services if s.name == "web")
    return web


def _set_cluster_id(msg: pb.ClusterState) -> None:
    msg.cluster_id = "Bad_Name"


def _set_empty_cluster_id(msg: pb.ClusterState) -> None:
    msg.cluster_id = ""


def _set_generation_zero(msg: pb.ClusterState) -> None:
    msg.generation = 0


def _set_bad_namespace_list(msg: pb.ClusterState) -> None:
    msg.namespaces.append("Shop")


def _set_bad_service_namespace(msg: pb.ClusterState) -> None:
    _web(msg).namespace = "shop.prod"


def _set_empty_service_namespace(msg: pb.ClusterState) -> None:
    _web(msg).namespace = ""


def _set_bad_service_name(msg: pb.ClusterState) -> None:
    _web(msg).name = "-web"


def _set_long_service_name(msg: pb.ClusterState) -> None:
    _web(msg).name = "a" * 64


def _set_unspecified_type(msg: pb.ClusterState) -> None:
    _web(msg).type = pb.SERVICE_TYPE_UNSPECIFIED


def _set_unknown_type(msg: pb.ClusterState) -> None:
    _web(msg).type = 7  # type: ignore[assignment]


def _set_port_zero(msg: pb.ClusterState) -> None:
    _web(msg).ports[0].port = 0


def _set_port_too_big(msg: pb.ClusterState) -> None:
    _web(msg).ports[0].port = 65536


def _set_bad_protocol(msg: pb.ClusterState) -> None:
    _web(msg).ports[0].protocol = "HTTP"


def _set_lower_protocol(msg: pb.ClusterState) -> None:
    _web(msg).ports[0].protocol = "tcp"


def _set_bad_port_name(msg: pb.ClusterState) -> None:
    _web(msg).ports[0].name = "HTTP_1"


def _set_no_addresses(msg: pb.ClusterState) -> None:
    _web(msg).endpoints.append(pb.Endpoint(ready=True))


def _set_bad_address(msg: pb.ClusterState) -> None:
    _web(msg).endpoints[0].addresses.append("10.0.0.256")


def _set_name_address(msg: pb.ClusterState) -> None:
    _web(msg).endpoints[0].addresses[0] = "web.example.org"


def _set_bad_hostname(msg: pb.ClusterState) -> None:
    _web(msg).endpoints[0].hostname = "Web_0"


def _set_duplicate_service(msg: pb.ClusterState) -> None:
    msg.services.append(pb.Service(namespace="shop", name="web", type=pb.HEADLESS))


VIOLATIONS: list[tuple[str, Callable[[pb.ClusterState], None], str]] = [
    ("cluster-id", _set_cluster_id, r"cluster id 'Bad_Name'"),
    ("empty-cluster-id", _set_empty_cluster_id, r"cluster id ''"),
    ("generation-0", _set_generation_zero, r"generation 0"),
    ("namespace-list", _set_bad_namespace_list, r"namespace 'Shop'"),
    ("service-namespace", _set_bad_service_namespace, r"namespace 'shop\.prod'"),
    ("empty-namespace", _set_empty_service_namespace, r"namespace ''"),
    ("service-name", _set_bad_service_name, r"service name '-web'"),
    ("long-service-name", _set_long_service_name, r"service name 'a{64}'"),
    ("unspecified-type", _set_unspecified_type, r"shop/web: unknown service type 0"),
    ("unknown-type", _set_unknown_type, r"shop/web: unknown service type 7"),
    ("port-0", _set_port_zero, r"shop/web: bad port TCP/0"),
    ("port-65536", _set_port_too_big, r"shop/web: bad port TCP/65536"),
    ("protocol", _set_bad_protocol, r"shop/web: bad port HTTP/80"),
    ("protocol-case", _set_lower_protocol, r"shop/web: bad port tcp/80"),
    ("port-name", _set_bad_port_name, r"shop/web: port name 'HTTP_1'"),
    ("no-addresses", _set_no_addresses, r"shop/web: endpoint without addresses"),
    ("bad-address", _set_bad_address, r"shop/web: bad address '10\.0\.0\.256'"),
    ("name-address", _set_name_address, r"shop/web: bad address 'web\.example\.org'"),
    ("hostname", _set_bad_hostname, r"shop/web: hostname 'Web_0'"),
    ("duplicate-service", _set_duplicate_service, r"service shop/web listed twice"),
]


@pytest.mark.parametrize(
    ("mutate", "pattern"), [pytest.param(m, p, id=i) for i, m, p in VIOLATIONS]
)
def test_validation_rejects_with_field_named(
    mutate: Callable[[pb.ClusterState], None], pattern: str
) -> None:
    msg = good()
    state_from_pb(msg)  # the unmodified message is fine
    mutate(msg)
    with pytest.raises(CodecError, match=pattern) as info:
        state_from_pb(msg)
    assert "\n" not in str(info.value)
    # The same rule holds after a trip through bytes.
    with pytest.raises(CodecError, match=pattern):
        state_from_pb(pb.ClusterState.FromString(msg.SerializeToString()))


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_port_boundaries_accepted() -> None:
    msg = good()
    _web(msg).ports[0].port = 65535
    _web(msg).ports[1].port = 1
    state = state_from_pb(msg)
    assert [p.port for p in state.services[WEB].ports] == [65535, 1]


# ------------------------------------------------------------------------------ fuzzing


def _decode(data: bytes) -> ClusterState | None:
    try:
        return state_from_pb(pb.ClusterState.FromString(data))
    except (CodecError, DecodeError):
        return None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_give_state_or_clean_error(data: bytes) -> None:
    result = _decode(data)
    assert result is None or isinstance(result, ClusterState)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=cluster_states(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_valid_messages_give_state_or_clean_error(
    state: ClusterState, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(state_to_pb(state).SerializeToString())
    if not data:
        return
    for position, value in flips:
        data[position % len(data)] = value
    result = _decode(bytes(data))
    assert result is None or isinstance(result, ClusterState)
