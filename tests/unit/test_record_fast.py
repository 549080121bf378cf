"""mesh/wire/record_fast.py and service_decode.py: the catch-up's decoders give what the
general path gives, or (the fast path) no answer.

Seeded random records, most of them of the common shape and some of every other kind
(IPv6, several addresses, not ready, hostnames, zones, annotations, bad names, bad ports,
bad addresses, bad times), and random mutations of their bytes. For each:

- ``service_decode.service_from_pb`` equals ``_reference`` (the decoder it replaced, one
  attribute read per field), value or ``CodecError``;
- ``fast_service`` is None, or the general path's (version, service) exactly, every
  attribute and the endpoints' compact form included; it answers every valid record of the
  common shape (so the fast path is taken, and this test can fail).

Failures print the seed and the record's bytes.
"""

from __future__ import annotations

import math
import os
import random

import pytest
from google.protobuf.message import DecodeError

from mesh.address import ip_version
from mesh.model import (
    ANNOTATION_PREFIX,
    MAX_ANNOTATION_BYTES,
    MAX_ANNOTATIONS,
    Endpoint,
    ExportedService,
    PackedEndpoints,
    ServiceKey,
    ServicePort,
    ServiceType,
    is_dns_label,
)
from mesh.wire.record_fast import encode_sealed, fast_sealed, fast_service, record_prefix
from mesh.wire.service_decode import CodecError, service_from_pb
from mesh.wire.v1 import gossip_pb2 as pb

SEEDS = [int(os.environ.get("MESHD_TEST_SEED", "0")) or s for s in (1, 2, 3, 4, 5, 6)]


def _reference(msg: pb.Service) -> ExportedService:
    """The decoder before the fast one (``mesh.wire.codec`` at bc76d67), rules inline."""

    def check(ok: bool) -> None:
        if not ok:
            raise CodecError("bad")

    check(is_dns_label(msg.namespace) and is_dns_label(msg.name))
    check(msg.type in (pb.CLUSTER_SET_IP, pb.HEADLESS))
    check(msg.session_affinity in ("", "ClientIP"))
    check(msg.affinity_timeout_seconds <= 86400)
    check(bool(msg.session_affinity) == bool(msg.affinity_timeout_seconds))
    check(math.isfinite(msg.exported_at) and msg.exported_at >= 0)
    endpoints = []
    for e in msg.endpoints:
        check(len(e.addresses) > 0)
        for a in e.addresses:
            try:
                ip_version(a)
            except ValueError:
                check(False)
        check(not e.hostname or is_dns_label(e.hostname))
        endpoints.append(Endpoint(tuple(e.addresses), e.ready, e.hostname or None, e.zone or None))

    def ports(items: list[pb.Port]) -> tuple[ServicePort, ...]:
        for p in items:
            check(p.protocol in ("TCP", "UDP", "SCTP") and 0 < p.port < 65536)
            check(not p.name or is_dns_label(p.name))
        return tuple(ServicePort(p.name, p.protocol, p.port) for p in items)

    families = []
    for a in msg.cluster_ips:
        try:
            families.append(ip_version(a))
        except ValueError:
            check(False)
    check(len(set(families)) == len(families))
    kept: dict[str, str] = {}
    for item in msg.annotations:
        if (
            item.key.startswith(ANNOTATION_PREFIX)
            and len(item.key) <= 253
            and len(item.value.encode()) <= MAX_ANNOTATION_BYTES
            and len(kept) < MAX_ANNOTATIONS
        ):
            kept[item.key] = item.value
    return ExportedService(
        ServiceKey(msg.namespace, msg.name),
        ServiceType.CLUSTER_SET_IP if msg.type == pb.CLUSTER_SET_IP else ServiceType.HEADLESS,
        ports(list(msg.ports)),
        tuple(endpoints),
        msg.exported_at or 0.0,
        tuple(sorted(kept.items())),
        ports(list(msg.endpoint_ports)),
        tuple(msg.cluster_ips),
        msg.session_affinity,
        msg.affinity_timeout_seconds,
    )


def _label(rng: random.Random, bad: float) -> str:
    if rng.random() < bad:
        return rng.choice(["", "Web", "web-", "-web", "a" * 64, "w_b", "web\n", "wé"])
    size = rng.choice([1, 2, 5, 12, 63])
    middle = "".join(rng.choice("abcdefghij0123456789-") for _ in range(max(0, size - 2)))
    return (rng.choice("ab9") + middle + rng.choice("z0"))[:size]


def _address(rng: random.Random, bad: float) -> str:
    roll = rng.random()
    if roll < bad:
        return rng.choice(["", "1.2.3", "1.2.3.04", "256.1.1.1", "1.2.3.4 ", "x", "1..2.3"])
    if roll < 0.1:
        return rng.choice(["fd00::1", "2001:db8::7", "::ffff:10.0.0.1"])
    return ".".join(
        str(rng.choice([0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255])) for _ in range(4)
    )


def _port(rng: random.Random, bad: float) -> pb.Port:
    name = "" if rng.random() < 0.3 else _label(rng, bad)
    protocol = rng.choice(["TCP", "UDP", "SCTP"] if rng.random() > bad else ["tcp", "", "ICMP"])
    number = rng.choice([1, 42, 80, 127, 128, 443, 8080, 65535] + ([0, 65536] if bad else []))
    return pb.Port(name=name, protocol=protocol, port=number)


def _endpoint(rng: random.Random, bad: float) -> pb.Endpoint:
    if rng.random() < 0.8:  # the common shape
        return pb.Endpoint(addresses=[_address(rng, bad)], ready=True)
    return pb.Endpoint(
        addresses=[_address(rng, bad) for _ in range(rng.choice([0, 1, 2]))],
        ready=rng.random() < 0.5,
        hostname="" if rng.random() < 0.5 else _label(rng, bad),
        zone="" if rng.random() < 0.5 else rng.choice(["z1", "eu-1a"]),
    )


def _service(rng: random.Random) -> pb.Service:
    bad = rng.choice([0.0, 0.0, 0.05])
    msg = pb.Service(
        namespace=_label(rng, bad),
        name=_label(rng, bad),
        type=rng.choice([1, 1, 2] + ([0, 3] if bad else [])),
        ports=[_port(rng, bad) for _ in range(rng.choice([0, 1, 1, 2]))],
        endpoints=[_endpoint(rng, bad) for _ in range(rng.choice([0, 1, 3, 3, 9]))],
        exported_at=rng.choice(
            [0.0, 0.0, 1.7e9, 12.5, -0.0] + ([-1.0, math.nan, math.inf] if bad else [])
        ),
        endpoint_ports=[_port(rng, bad) for _ in range(rng.choice([0, 0, 1]))],
        cluster_ips=[_address(rng, bad) for _ in range(rng.choice([0, 1, 1, 2]))],
    )
    if rng.random() < 0.05:
        msg.annotations.add(key="meshd.io/affinity", value="local")
    if rng.random() < 0.05:
        msg.session_affinity, msg.affinity_timeout_seconds = "ClientIP", 10800
    return msg


def _general(body: bytes, origin: tuple[str, str, int]) -> tuple[int, ExportedService] | None:
    """What the general path takes from ``body`` (None: it rejects it or it is no service
    record of ``origin``)."""
    try:
        record = pb.Record.FromString(body)
    except DecodeError:
        return None
    if (record.cluster_id, record.replica, record.generation) != origin:
        return None
    if record.WhichOneof("body") != "service":
        return None
    try:
        return record.version, service_from_pb(record.service, origin[0])
    except CodecError:
        return None


def _same(fast: tuple[int, ExportedService], general: tuple[int, ExportedService] | None) -> bool:
    if general is None or fast != general:
        return False
    fs, gs = fast[1], general[1]
    return (
        all(type(a) is type(b) for a, b in zip(fs.endpoints, gs.endpoints, strict=True))
        and type(fs.endpoints) is type(gs.endpoints)  # both packed (or both not)
        and fs.__slots__ == gs.__slots__
    )  # type: ignore[attr-defined]


def _records(rng: random.Random, count: int) -> list[tuple[bytes, pb.Service]]:
    out = []
    for _ in range(count):
        service = _service(rng)
        record = pb.Record(
            cluster_id="c1",
            replica=rng.choice(["", "a", "r-7"]),
            generation=rng.choice([1, 2, 300]),
            version=rng.choice([1, 127, 128, 70000, 2**40]),
            service=service,
        )
        out.append((record.SerializeToString(deterministic=True), service))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_the_decoders_agree_with_the_reference_and_the_fast_path_with_both(seed: int) -> None:
    rng = random.Random(seed)
    answered = common = 0
    for body, service in _records(rng, 600):
        record = pb.Record.FromString(body)
        origin = (record.cluster_id, record.replica, record.generation)
        try:
            reference: ExportedService | None = _reference(service)
        except CodecError:
            reference = None
        general = _general(body, origin)
        assert (general and general[1]) == reference, f"seed {seed}: {body!r}"
        fast = fast_service(body, *origin)
        if fast is not None:
            answered += 1
            assert _same(fast, general), f"seed {seed}: {body!r}"
        plain = all(
            len(e.addresses) == 1 and e.ready and not e.hostname and not e.zone
            for e in service.endpoints
        )
        simple = (
            plain
            and not service.annotations
            and not service.session_affinity
            and len(service.cluster_ips) <= 1
            and all(":" not in a for e in service.endpoints for a in e.addresses)
            and all(":" not in a for a in service.cluster_ips)
            and math.copysign(1.0, service.exported_at) > 0  # -0.0: not as agents write it
        )
        if general is not None:  # equal to the tuple the reference holds, and packed iff plain IPv4
            assert hash(general[1]) == hash(reference), f"seed {seed}: {body!r}"
            packable = plain and all(":" not in a for e in service.endpoints for a in e.addresses)
            packed = type(general[1].endpoints) is PackedEndpoints
            assert packed == (packable and bool(service.endpoints)), f"seed {seed}: {body!r}"
        if general is not None and simple:
            common += 1
            assert fast is not None, f"seed {seed}: the common shape missed: {body!r}"
        # Of another origin: never answered.
        assert fast_service(body, "c2", origin[1], origin[2]) is None
        assert fast_service(body, origin[0], origin[1], origin[2] + 1) is None
    print(f"seed {seed}: {answered} answered by the fast path, {common} of the common shape")
    assert common > 100


def _mutations(rng: random.Random, body: bytes) -> list[bytes]:
    out = []
    for _ in range(12):
        data = bytearray(body)
        at = rng.randrange(len(data))
        roll = rng.random()
        if roll < 0.4:
            data[at] = rng.randrange(256)
        elif roll < 0.6:
            data.insert(at, rng.randrange(256))
        elif roll < 0.8:
            del data[at]
        elif roll < 0.9:
            del data[at:]
        else:
            data += bytes([rng.randrange(256) for _ in range(rng.choice([1, 2, 10]))])
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_bytes_get_the_general_answer_or_none(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for body, _ in _records(rng, 300):
        record = pb.Record.FromString(body)
        origin = (record.cluster_id, record.replica, record.generation)
        for data in _mutations(rng, body):
            fast = fast_service(data, *origin)
            if fast is not None:
                checked += 1
                assert _same(fast, _general(data, origin)), f"seed {seed}: {data!r}"
    print(f"seed {seed}: {checked} mutated records answered by the fast path, all as protobuf")
    assert checked > 20


def test_a_mutated_length_byte_is_never_read_another_way() -> None:
    """Each length byte of a common record, set to every other value: no answer unless
    protobuf reads the same (it cannot: the lengths would not add up)."""
    body = pb.Record(
        cluster_id="c1",
        replica="a",
        generation=1,
        version=9,
        service=pb.Service(
            namespace="ns",
            name="web",
            type=1,
            ports=[pb.Port(name="http", protocol="TCP", port=80)],
            endpoints=[pb.Endpoint(addresses=["10.0.0.1"], ready=True)] * 2,
            endpoint_ports=[pb.Port(name="http", protocol="TCP", port=8080)],
            cluster_ips=["10.96.0.10"],
            exported_at=1.5,
        ),
    ).SerializeToString(deterministic=True)
    assert fast_service(body, "c1", "a", 1) == _general(body, ("c1", "a", 1))
    for at in range(len(body)):
        for value in range(64):
            data = bytearray(body)
            data[at] = value
            fast = fast_service(bytes(data), "c1", "a", 1)
            if fast is not None:
                assert _same(fast, _general(bytes(data), ("c1", "a", 1))), f"{bytes(data)!r}"


def _sealings(rng: random.Random, body: bytes) -> list[bytes]:
    """``body`` sealed as agents seal it: unsigned, signed, in a batch, both."""
    signature, key_id = bytes(rng.randrange(256) for _ in range(64)), "ab" * 16
    return [
        pb.Sealed(body=body).SerializeToString(),
        pb.Sealed(body=body, batch=rng.choice([1, 65, 2**20])).SerializeToString(),
        pb.Sealed(body=body, signature=signature, key_id=key_id).SerializeToString(),
        pb.Sealed(body=body, signature=signature, key_id=key_id, batch=129).SerializeToString(),
    ]


def _general_sealed(
    data: bytes, origin: tuple[str, str, int]
) -> tuple[int, ExportedService, bytes, int] | None:
    try:
        sealed = pb.Sealed.FromString(data)
    except DecodeError:
        return None
    got = _general(sealed.body, origin)
    return None if got is None else (*got, sealed.body, sealed.batch)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sealed_record_is_read_as_protobuf_reads_it_or_not_at_all_and_made_again(
    seed: int,
) -> None:
    rng = random.Random(seed)
    answered = 0
    for body, _ in _records(rng, 200):
        record = pb.Record.FromString(body)
        origin = (record.cluster_id, record.replica, record.generation)
        for sealed in _sealings(rng, body):
            for data in [sealed, *_mutations(rng, sealed)]:
                fast = fast_sealed(data, *origin)
                if fast is None:
                    continue
                answered += 1
                version, service, start, end, batch, signature, key_id = fast
                general = _general_sealed(data, origin)
                assert general is not None, f"seed {seed}: {data!r}"
                assert _same((version, service), general[:2]), f"seed {seed}: {data!r}"
                assert (data[start:end], batch) == general[2:], f"seed {seed}: {data!r}"
                # What it read makes its bytes again, exactly (what a relay sends on).
                prefix = record_prefix(*origin)
                again = encode_sealed(prefix, version, service, signature, key_id, batch)
                assert again == data, f"seed {seed}: {data!r} made again as {again!r}"
    print(f"seed {seed}: {answered} sealed records answered by the fast path, all as protobuf")
    assert answered > 100
