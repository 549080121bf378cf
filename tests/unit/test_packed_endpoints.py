"""mesh/endpoints.py: ``PackedEndpoints`` is, to every reader, the tuple of ``Endpoint`` it
packs; ``pack_quads``/``pack_endpoints`` pack exactly the canonical plain IPv4 endpoints.

Seeded random lists of plain IPv4 endpoints (seed printed; ``MESHD_TEST_SEED`` overrides)
are packed and compared with their tuple in every way the model's readers use one:
``==``/``!=`` both ways, ``hash``, ``len``, ``bool``, iteration, indexing (negative too),
slices, ``in``, ``index``/``count``, ``+``, pickling and copies, and as the endpoints of an
``ExportedService`` (equality, hash, dict keys). Texts that are not a canonical dotted quad
and endpoints that are not plain are never packed (unpacking would not give them back).
A source (``mesh.sources.translate``) holds a plain IPv4 service's endpoints packed too.
"""

from __future__ import annotations

import copy
import os
import pickle
import random

import pytest

from mesh.model import (
    Endpoint,
    ExportedService,
    PackedEndpoints,
    ServiceKey,
    ServicePort,
    ServiceType,
    pack_endpoints,
    pack_quads,
    plain_endpoint,
)
from mesh.sources.translate import translate

SEEDS = [int(os.environ.get("MESHD_TEST_SEED", "0")) or s for s in (11, 12, 13)]


def _quad(rng: random.Random) -> str:
    return ".".join(
        str(rng.choice([0, 1, 9, 10, 99, 100, 255, rng.randrange(256)])) for _ in "1234"
    )


def _endpoints(rng: random.Random) -> tuple[Endpoint, ...]:
    count = rng.choice([1, 2, 3, 3, 3, 7, 40])
    made = rng.choice([plain_endpoint, lambda a: Endpoint((a,))])  # both constructors
    return tuple(made(_quad(rng)) for _ in range(count))


@pytest.mark.parametrize("seed", SEEDS)
def test_packed_endpoints_behave_as_their_tuple(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(300):
        held = _endpoints(rng)
        packed = pack_endpoints(held)
        assert type(packed) is PackedEndpoints, f"seed {seed}: {held!r}"
        assert packed == held
        assert held == packed
        assert (packed != held) is False
        assert (held != packed) is False
        assert hash(packed) == hash(held)
        assert len(packed) == len(held)
        assert bool(packed)
        assert list(packed) == list(held)
        assert tuple(packed) == held
        assert all(type(e) is Endpoint for e in packed)
        for i in range(-len(held), len(held)):
            assert packed[i] == held[i], f"seed {seed}: index {i}"
        for i in (len(held), -len(held) - 1):
            with pytest.raises(IndexError):
                held[i]
            with pytest.raises(IndexError):
                packed[i]
        start, stop = rng.randrange(-5, 6), rng.randrange(-5, 6)
        step = rng.choice([None, 1, 2, -1])
        assert packed[start:stop:step] == held[start:stop:step]
        member = rng.choice(held)
        assert member in packed
        assert packed.index(member) == held.index(member)
        assert packed.count(member) == held.count(member)
        other = plain_endpoint(_quad(rng))
        assert (other in packed) == (other in held)
        assert Endpoint(member.addresses, ready=False) not in packed
        assert Endpoint(member.addresses, hostname="h") not in packed
        assert member.addresses[0] not in packed
        assert 1 not in packed
        assert packed + (other,) == held + (other,)  # noqa: RUF005  (``+`` itself, tested)
        assert (other,) + packed == (other,) + held  # noqa: RUF005
        assert pickle.loads(pickle.dumps(packed)) == packed
        assert copy.copy(packed) == held
        assert copy.deepcopy(packed) == held
        assert repr(member.addresses[0]) in repr(packed)
        # Not equal to a different tuple, nor to another packing, nor to bytes or lists.
        changed = (*held[:-1], other)
        assert (packed == changed) == (held == changed)
        assert (packed == pack_endpoints(changed)) == (held == changed)
        assert packed != list(held)
        assert packed != bytes(packed)
        assert bytes(packed) != packed
        assert list(held) != packed


@pytest.mark.parametrize("seed", SEEDS)
def test_a_service_is_the_same_whichever_form_holds_its_endpoints(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(100):
        held = _endpoints(rng)
        key = ServiceKey("ns", f"web-{rng.randrange(10)}")
        ports = (ServicePort("http", "TCP", 80),)
        old = ExportedService(key, ServiceType.CLUSTER_SET_IP, ports, held)
        new = ExportedService(key, ServiceType.CLUSTER_SET_IP, ports, pack_endpoints(held))
        assert type(new.endpoints) is PackedEndpoints
        assert old == new
        assert new == old
        assert hash(old) == hash(new)
        assert {old: 1}[new] == 1
        assert len({old, new}) == 1
        assert new.ready_endpoints() == old.ready_endpoints()
        assert pickle.loads(pickle.dumps(new)) == old


@pytest.mark.parametrize(
    "text",
    [
        "01.2.3.4",
        "1.2.3.004",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        " 1.2.3.4",
        "1.2.3.4 ",
        "+1.2.3.4",
        "1.2.3.\uff14",  # a full-width digit: int() takes it
        "1_0.1.1.1",
        "1..2.3",
        "::1",
        "::ffff:1.2.3.4",
        "",
    ],
)
def test_only_canonical_dotted_quads_are_packed(text: str) -> None:
    assert pack_quads([text]) is None
    assert pack_quads(["10.0.0.1", text]) is None
    held = (plain_endpoint("10.0.0.1"), plain_endpoint(text))
    assert pack_endpoints(held) == held
    assert type(pack_endpoints(held)) is tuple


def test_what_is_not_plain_stays_a_tuple() -> None:
    for other in (
        Endpoint(("10.0.0.2",), ready=False),
        Endpoint(("10.0.0.2",), hostname="db-0"),
        Endpoint(("10.0.0.2",), zone="eu-1a"),
        Endpoint(("10.0.0.2", "10.0.0.3")),
        Endpoint(("fd00::2",)),
    ):
        held = (plain_endpoint("10.0.0.1"), other)
        assert type(pack_endpoints(held)) is tuple
        assert pack_endpoints(held) == held
    assert pack_endpoints(()) == ()
    assert pack_quads([]) is None
    packed = pack_quads(["10.0.0.1", "0.0.0.0", "255.255.255.255"])
    assert packed is not None
    assert pack_endpoints(packed) is packed
    assert packed.octets() == bytes([10, 0, 0, 1, 0, 0, 0, 0, 255, 255, 255, 255])
    assert packed.addresses() == ["10.0.0.1", "0.0.0.0", "255.255.255.255"]


def _translated(endpoints: list[dict[str, object]]) -> ExportedService:
    meta = {"name": "web", "namespace": "shop"}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"port": 80}]},
        },
        {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": meta},
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
        },
    ]
    exports, problems = translate([("m.yaml", obj) for obj in objects])
    assert problems == []
    return exports.services[ServiceKey("shop", "web")]


def test_a_source_holds_plain_ipv4_endpoints_packed_and_others_as_before() -> None:
    plain = _translated([{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}])
    assert type(plain.endpoints) is PackedEndpoints
    assert plain.endpoints == (Endpoint(("10.0.0.1",)), Endpoint(("10.0.0.2",)))
    mixed = _translated([{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"], "hostname": "b"}])
    assert type(mixed.endpoints) is tuple
    assert mixed.endpoints == (Endpoint(("10.0.0.1",)), Endpoint(("10.0.0.2",), hostname="b"))
