"""Model <-> protobuf translation, and the validation of everything a peer sends.

Services travel inside sealed records of an ``OriginChunk`` (``mesh.wire.record_codec``), so
every rule is checked twice: on ``service_from_pb`` itself, and on a real chunk made by the
``Publisher`` and opened by the ``ChunkOpener``, as a receiving agent opens it, both from
the message and after a trip through bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.ring.catalog import Change, Digest
from mesh.ring.records import Chunk, ClusterInfo, OriginLog, RecordStore
from mesh.wire.codec import CodecError, digest_from_pb, digest_to_pb, service_from_pb, service_to_pb
from mesh.wire.record_codec import ChunkError, ChunkOpener, Publisher, chunk_to_pb
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


def chunk_of(state: ClusterState) -> pb.OriginChunk:
    """``state`` as its origin sends it to a peer that holds nothing of it: one chunk."""
    log = OriginLog(state.cluster_id, state.replica, state.generation)
    change = Change(state.cluster_id, frozenset(state.services), cluster=True)
    Publisher(log, None).publish(state, change, 0.0)
    (out,), more = RecordStore(log).select(None, 1 << 20)
    assert not more
    return chunk_to_pb(out, "")


def open_chunk(msg: pb.OriginChunk) -> Chunk:
    return ChunkOpener(None).open(msg, 0.0)


def services_in(chunk: Chunk) -> dict[ServiceKey, ExportedService]:
    return {r.service.key: r.service for r in chunk.records if r.service is not None}


def info_in(chunk: Chunk) -> ClusterInfo | None:
    return next((r.info for r in chunk.records if r.info is not None), None)


def edit_records(msg: pb.OriginChunk, edit: Callable[[pb.Record], None]) -> None:
    """Apply ``edit`` to every record body of ``msg``, sealed again (unsigned)."""
    for i, data in enumerate(msg.records):
        sealed = pb.Sealed.FromString(data)
        record = pb.Record.FromString(sealed.body)
        edit(record)
        msg.records[i] = pb.Sealed(body=record.SerializeToString()).SerializeToString()


# ------------------------------------------------------------------------------ round trip


def test_round_trip_sample() -> None:
    state = sample_state()
    web = service_to_pb(state.services[WEB])
    assert (web.namespace, web.name, web.type) == ("shop", "web", pb.CLUSTER_SET_IP)
    assert service_to_pb(state.services[ServiceKey("data", "db")]).type == pb.HEADLESS
    assert service_from_pb(web, "east") == state.services[WEB]
    chunk = open_chunk(chunk_of(state))
    assert (chunk.cluster_id, chunk.generation) == ("east", state.generation)
    assert services_in(chunk) == state.services
    assert info_in(chunk) == ClusterInfo("us", "us-1a", state.namespaces)


def test_round_trip_through_bytes() -> None:
    state = sample_state()
    data = chunk_of(state).SerializeToString()
    msg = pb.OriginChunk()
    msg.ParseFromString(data)
    assert services_in(open_chunk(msg)) == state.services
    assert services_in(open_chunk(pb.OriginChunk.FromString(data))) == state.services
    web = service_to_pb(state.services[WEB]).SerializeToString()
    assert service_from_pb(pb.Service.FromString(web), "east") == state.services[WEB]


def test_round_trip_empty_state() -> None:
    chunk = open_chunk(chunk_of(ClusterState("a", 1, 0)))
    assert services_in(chunk) == {}
    assert info_in(chunk) == ClusterInfo("", "", frozenset())


def test_digest_round_trip() -> None:
    d = Digest("west", 2**63, 7)
    assert digest_from_pb(digest_to_pb(d)) == d
    assert digest_from_pb(pb.Digest.FromString(digest_to_pb(d).SerializeToString())) == d
    with pytest.raises(CodecError, match="cluster id"):
        digest_from_pb(pb.Digest(cluster_id="Bad_Name", generation=1, version=1))
    marked = Digest("west", 2, 7, checked=7, head_hash=bytes(range(8)))
    assert digest_from_pb(digest_to_pb(marked)) == marked
    with pytest.raises(CodecError, match="head hash of 9 bytes"):
        digest_from_pb(pb.Digest(cluster_id="west", generation=1, head_hash=bytes(9)))


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
            exported_at=draw(st.floats(0, 2e9)),
            endpoint_ports=tuple(draw(st.lists(ports, max_size=2))),
            cluster_ips=draw(st.sampled_from([(), ("10.96.0.1",), ("fd00::1", "10.96.0.2")])),
            **draw(
                st.sampled_from([{}, {"session_affinity": "ClientIP", "affinity_timeout_s": 10800}])
            ),
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
    for svc in state.services.values():
        assert service_from_pb(service_to_pb(svc), state.cluster_id) == svc
    msg = chunk_of(state)
    for chunk in (open_chunk(msg), open_chunk(pb.OriginChunk.FromString(msg.SerializeToString()))):
        assert services_in(chunk) == state.services
        assert info_in(chunk) == ClusterInfo(state.region, state.zone, state.namespaces)


# ------------------------------------------------------------------------------ validation

# Rules of one service: each is checked on service_from_pb and inside a chunk.


def good_web() -> pb.Service:
    return service_to_pb(sample_state().services[WEB])


def _set_bad_service_namespace(msg: pb.Service) -> None:
    msg.namespace = "shop.prod"


def _set_empty_service_namespace(msg: pb.Service) -> None:
    msg.namespace = ""


def _set_bad_service_name(msg: pb.Service) -> None:
    msg.name = "-web"


def _set_long_service_name(msg: pb.Service) -> None:
    msg.name = "a" * 64


def _set_unspecified_type(msg: pb.Service) -> None:
    msg.type = pb.SERVICE_TYPE_UNSPECIFIED


def _set_unknown_type(msg: pb.Service) -> None:
    msg.type = 7  # type: ignore[assignment]


def _set_port_zero(msg: pb.Service) -> None:
    msg.ports[0].port = 0


def _set_port_too_big(msg: pb.Service) -> None:
    msg.ports[0].port = 65536


def _set_bad_protocol(msg: pb.Service) -> None:
    msg.ports[0].protocol = "HTTP"


def _set_lower_protocol(msg: pb.Service) -> None:
    msg.ports[0].protocol = "tcp"


def _set_bad_port_name(msg: pb.Service) -> None:
    msg.ports[0].name = "HTTP_1"


def _set_bad_endpoint_port(msg: pb.Service) -> None:
    msg.endpoint_ports.append(pb.Port(name="http", protocol="TCP", port=70000))


def _set_bad_endpoint_port_name(msg: pb.Service) -> None:
    msg.endpoint_ports.append(pb.Port(name="Http", protocol="TCP", port=8080))


def _set_bad_cluster_ip(msg: pb.Service) -> None:
    msg.cluster_ips.append("10.96.0.256")


def _set_two_cluster_ips_of_a_family(msg: pb.Service) -> None:
    msg.cluster_ips.extend(["10.96.0.1", "10.96.0.2"])


def _set_bad_affinity(msg: pb.Service) -> None:
    msg.session_affinity = "Cookie"
    msg.affinity_timeout_seconds = 60


def _set_affinity_without_timeout(msg: pb.Service) -> None:
    msg.session_affinity = "ClientIP"


def _set_no_addresses(msg: pb.Service) -> None:
    msg.endpoints.append(pb.Endpoint(ready=True))


def _set_bad_address(msg: pb.Service) -> None:
    msg.endpoints[0].addresses.append("10.0.0.256")


def _set_name_address(msg: pb.Service) -> None:
    msg.endpoints[0].addresses[0] = "web.example.org"


def _set_bad_hostname(msg: pb.Service) -> None:
    msg.endpoints[0].hostname = "Web_0"


def _set_exported_at_nan(msg: pb.Service) -> None:
    msg.exported_at = math.nan


def _set_exported_at_negative(msg: pb.Service) -> None:
    msg.exported_at = -1.0


SERVICE_VIOLATIONS: list[tuple[str, Callable[[pb.Service], None], str]] = [
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
    ("endpoint-port", _set_bad_endpoint_port, r"shop/web: bad port TCP/70000"),
    ("endpoint-port-name", _set_bad_endpoint_port_name, r"shop/web: port name 'Http'"),
    ("cluster-ip", _set_bad_cluster_ip, r"shop/web: bad cluster IP '10\.96\.0\.256'"),
    ("cluster-ips", _set_two_cluster_ips_of_a_family, r"shop/web: two cluster IPs of one family"),
    ("affinity", _set_bad_affinity, r"shop/web: bad session affinity 'Cookie' \(60 s\)"),
    ("affinity-0", _set_affinity_without_timeout, r"shop/web: bad session affinity 'ClientIP'"),
    ("no-addresses", _set_no_addresses, r"shop/web: endpoint without addresses"),
    ("bad-address", _set_bad_address, r"shop/web: bad address '10\.0\.0\.256'"),
    ("name-address", _set_name_address, r"shop/web: bad address 'web\.example\.org'"),
    ("hostname", _set_bad_hostname, r"shop/web: hostname 'Web_0'"),
    ("exported-at-nan", _set_exported_at_nan, r"shop/web: bad exported_at nan"),
    ("exported-at-negative", _set_exported_at_negative, r"shop/web: bad exported_at -1\.0"),
]


@pytest.mark.parametrize(
    ("mutate", "pattern"), [pytest.param(m, p, id=i) for i, m, p in SERVICE_VIOLATIONS]
)
def test_service_rules_reject_with_field_named(
    mutate: Callable[[pb.Service], None], pattern: str
) -> None:
    msg = good_web()
    service_from_pb(msg, "east")  # the unmodified message is fine
    mutate(msg)
    with pytest.raises(CodecError, match=pattern) as info:
        service_from_pb(msg, "east")
    assert "\n" not in str(info.value)
    # The same rule holds after a trip through bytes.
    with pytest.raises(CodecError, match=pattern):
        service_from_pb(pb.Service.FromString(msg.SerializeToString()), "east")


@pytest.mark.parametrize(
    ("mutate", "pattern"), [pytest.param(m, p, id=i) for i, m, p in SERVICE_VIOLATIONS]
)
def test_service_rules_reject_the_whole_chunk(
    mutate: Callable[[pb.Service], None], pattern: str
) -> None:
    def edit(record: pb.Record) -> None:
        if record.WhichOneof("body") == "service" and record.service.name == "web":
            mutate(record.service)

    msg = chunk_of(sample_state())
    edit_records(msg, lambda record: None)
    open_chunk(msg)  # sealed again but unmodified: fine
    edit_records(msg, edit)
    for copy in (msg, pb.OriginChunk.FromString(msg.SerializeToString())):
        with pytest.raises(ChunkError, match=pattern) as info:
            open_chunk(copy)
        assert info.value.reason == "invalid_record"
        assert "\n" not in str(info.value)


# Rules of the chunk around the services: the origin, and the cluster's own record.


def _set_cluster_id(msg: pb.OriginChunk) -> None:
    msg.cluster_id = "Bad_Name"


def _set_empty_cluster_id(msg: pb.OriginChunk) -> None:
    msg.cluster_id = ""


def _set_bad_replica(msg: pb.OriginChunk) -> None:
    msg.replica = "Bad_Replica"


def _set_generation_zero(msg: pb.OriginChunk) -> None:
    msg.generation = 0


def _set_bad_namespace_list(msg: pb.OriginChunk) -> None:
    def edit(record: pb.Record) -> None:
        if record.WhichOneof("body") == "info":
            record.info.namespaces.append("Shop")

    edit_records(msg, edit)


def _set_deleted_bad_namespace(msg: pb.OriginChunk) -> None:
    def edit(record: pb.Record) -> None:
        if record.WhichOneof("body") == "service" and record.service.name == "web":
            record.deleted.CopyFrom(pb.ServiceRef(namespace="Shop", name="web"))

    edit_records(msg, edit)


def _set_deleted_bad_name(msg: pb.OriginChunk) -> None:
    def edit(record: pb.Record) -> None:
        if record.WhichOneof("body") == "service" and record.service.name == "web":
            record.deleted.CopyFrom(pb.ServiceRef(namespace="shop", name="web_1"))

    edit_records(msg, edit)


def _set_record_twice(msg: pb.OriginChunk) -> None:
    # The record path's "listed twice": each record has its own version, strictly ascending.
    msg.records.append(msg.records[-1])


CHUNK_VIOLATIONS: list[tuple[str, Callable[[pb.OriginChunk], None], str, str]] = [
    ("cluster-id", _set_cluster_id, "malformed", r"cluster id 'Bad_Name'"),
    ("empty-cluster-id", _set_empty_cluster_id, "malformed", r"cluster id ''"),
    ("replica", _set_bad_replica, "malformed", r"replica 'Bad_Replica'"),
    ("generation-0", _set_generation_zero, "malformed", r"generation 0"),
    ("namespace-list", _set_bad_namespace_list, "invalid_record", r"namespace 'Shop'"),
    ("deleted-namespace", _set_deleted_bad_namespace, "invalid_record", r"namespace 'Shop'"),
    ("deleted-name", _set_deleted_bad_name, "invalid_record", r"name 'web_1'"),
    ("record-twice", _set_record_twice, "malformed", r"east: versions not ascending"),
]


@pytest.mark.parametrize(
    ("mutate", "reason", "pattern"),
    [pytest.param(m, r, p, id=i) for i, m, r, p in CHUNK_VIOLATIONS],
)
def test_chunk_rules_reject_with_field_named(
    mutate: Callable[[pb.OriginChunk], None], reason: str, pattern: str
) -> None:
    msg = chunk_of(sample_state())
    open_chunk(msg)  # the unmodified chunk is fine
    mutate(msg)
    for copy in (msg, pb.OriginChunk.FromString(msg.SerializeToString())):
        with pytest.raises(ChunkError, match=pattern) as info:
            open_chunk(copy)
        assert info.value.reason == reason
        assert "\n" not in str(info.value)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_port_boundaries_accepted() -> None:
    msg = good_web()
    msg.ports[0].port = 65535
    msg.ports[1].port = 1
    assert [p.port for p in service_from_pb(msg, "east").ports] == [65535, 1]


# ------------------------------------------------------------------------------ fuzzing


def _decode_service(data: bytes) -> ExportedService | None:
    try:
        return service_from_pb(pb.Service.FromString(data), "east")
    except (CodecError, DecodeError):
        return None


def _decode_chunk(data: bytes) -> Chunk | None:
    try:
        return open_chunk(pb.OriginChunk.FromString(data))
    except (ChunkError, DecodeError):
        return None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_give_a_result_or_a_clean_error(data: bytes) -> None:
    service = _decode_service(data)
    assert service is None or isinstance(service, ExportedService)
    chunk = _decode_chunk(data)
    assert chunk is None or isinstance(chunk, Chunk)


def _flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=cluster_states(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_valid_messages_give_a_result_or_a_clean_error(
    state: ClusterState, flips: list[tuple[int, int]]
) -> None:
    chunk = _decode_chunk(_flipped(chunk_of(state).SerializeToString(), flips))
    assert chunk is None or isinstance(chunk, Chunk)
    for svc in state.services.values():
        data = service_to_pb(svc).SerializeToString()
        service = _decode_service(_flipped(data, flips)) if data else None
        assert service is None or isinstance(service, ExportedService)
