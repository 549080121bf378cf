"""The commonest name blob in one call (``dnsserver.plainblob``, ``_fastpath_plain.c``).

Three seeded properties: the C function and its pure-Python twin ``build`` give the same
result (or both decline) and take the same rotation counters, over random arguments of
every kind (names with dots, upper case, non-ASCII, too long; octets not a multiple of 4;
TTLs and counts out of range; caps of none, one, many, negative or huge); ``encode``
(with the C function, and with the twin) names what ``plain.encode_plain`` names, in the
same order, with the same blobs and the same counters taken, or declines; and it takes
the services a catch-up makes. Each failure prints its seed.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

import pytest

from dnsserver import nameblob, plainblob, records, wire
from dnsserver.answer import NEVER_CUT
from dnsserver.nameblob import Turns
from dnsserver.plain import encode_plain
from dnsserver.records import ServiceRecords
from dnsserver.zone import Zone
from tests.unit.test_plain_records import _answer, _octets, random_service

ORIGIN = wire.encode_name("clusterset.local")
C_SOURCE = Path(plainblob.__file__).with_name("_fastpath_plain.c")

try:
    from dnsserver._fastpath import plain_blob as c_build
except ImportError:  # the extension is not built: only the twin is tested
    c_build = None


def _turns(rng: random.Random) -> tuple[Turns, Turns]:
    """Two rotation counters in the same state: some slots taken, some given back."""
    taken = rng.randint(0, 6)
    back = rng.sample(range(taken), rng.randint(0, taken))
    counters = bytes(rng.randrange(256) for _ in range(4 * taken))
    pair = (Turns(), Turns())
    for turns in pair:
        turns.counters[:] = counters
        turns.give_back(back)
    return pair


def _same_turns(a: Turns, b: Turns) -> bool:
    return a.counters == b.counters and a.free == b.free


def _name(rng: random.Random) -> str:
    return rng.choice(
        [
            "web",
            "Web-API",
            "s" + str(rng.randint(0, 99999)),
            "s" + str(rng.randint(0, 99999)),
            "s" + str(rng.randint(0, 99999)),
            "x" * rng.randint(0, 70),
            "bad.dot",
            "",
            "ünï",
            "Z" * 63,
        ]
    )


def test_c_constants_are_the_python_ones() -> None:
    if not C_SOURCE.exists():  # an installed copy without its sources
        pytest.skip("no _fastpath_plain.c next to dnsserver/plainblob.py")
    source = C_SOURCE.read_text()
    defines = dict(re.findall(r"#define (\w+) (\d+)", source))
    assert int(defines["NEVER_CUT"]) == NEVER_CUT
    assert int(defines["MAX_ROTATIONS"]) == records.MAX_ROTATIONS
    assert int(defines["MAX_BODIES"]) == nameblob.MAX_BODIES
    assert int(defines["HAS_A_SRV"]) == nameblob.HAS_A | nameblob.HAS_SRV


@pytest.mark.skipif(c_build is None, reason="the C fast path is not built")
@pytest.mark.parametrize("seed", range(30))
def test_c_function_is_its_twin(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    built = 0
    for _ in range(300):
        name = _name(rng)
        suffix = rng.choice(
            [b"\x03ns1\x03svc\x0aclusterset\x05local\x00"] * 3 + [b"\x00", b"\x01a" * 95]
        )
        count = rng.choice([0, 1, 2, 3, 3, 3, 8, 14, 15, 64, 65, 129, 4078, 4079])
        octets = bytes(
            rng.randrange(256) for _ in range(4 * count + rng.choice([0, 0, 0, 0, 0, 1]))
        )
        srv = bytes(rng.randrange(256) for _ in range(rng.choice([18, 18, 18, 36, 0, 300])))
        srv_count = rng.choice([1, 1, 1, 1, 2, 0, -1, 255, 256])
        ttl = rng.choice([5, 5, 5, 0, 30, 0xFFFFFFFF, -1, 2**32, 2**70])
        cap = rng.choice([1, 2, 8, 8, 8, 14, 15, 64, 0, -3, 2**70])
        args = (name, suffix, octets, srv, srv_count, ttl, cap)
        twin_turns, c_turns = _turns(rng)
        twin = plainblob.build(*args, twin_turns)
        assert c_build is not None
        made = c_build(*args, c_turns)
        assert made == twin, f"seed {seed}: {args!r:.300}"
        assert _same_turns(twin_turns, c_turns), f"seed {seed}: {args!r:.300}"
        built += made is not None
    assert built > 15, f"seed {seed}: only {built} built"


@pytest.mark.skipif(c_build is None, reason="the C fast path is not built")
def test_c_function_refuses_wrong_types() -> None:
    assert c_build is not None
    with pytest.raises(TypeError):
        c_build(b"web", b"\x00", b"\x01\x02\x03\x04", b"", 1, 5, 8, Turns())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c_build("web", b"\x00", b"\x01\x02\x03\x04")  # type: ignore[call-arg]


def _random_service(rng: random.Random) -> ServiceRecords:
    """``test_plain_records``' services, most with their octets, some ports of their own."""
    svc = random_service(rng)
    if rng.random() < 0.3:
        ports = rng.choice(
            [
                (),
                (("", "TCP", 80),),
                (("dns", "UDP", 53), ("dns-tcp", "TCP", 53)),
                (("http", "TCP", 80), ("https", "TCP", 443)),
            ]
        )
        svc = dataclasses.replace(svc, ports=ports)
    octets = _octets(svc.addresses)
    if rng.random() < 0.1 and octets:
        octets = octets[:-4]  # not the addresses' octets: declined, parsed by ``plain``
    return dataclasses.replace(svc, packed_v4=octets) if rng.random() < 0.85 else svc


@pytest.mark.parametrize("twin", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_encode_is_encode_plain_or_declines(
    seed: int, twin: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if twin:
        monkeypatch.setattr(plainblob, "build_blob", plainblob.build)
    rng = random.Random(seed)
    print(f"seed {seed} twin {twin}")
    taken = 0
    for _ in range(200):
        svc = _random_service(rng)
        ttl = rng.choice([5, 30])
        mine, theirs = _turns(rng)
        one = plainblob.encode(svc, ORIGIN, ttl, mine)
        if one is None:
            assert _same_turns(mine, theirs), f"seed {seed}: a declined one took a counter"
            continue
        plain = encode_plain(svc, ORIGIN, ttl, theirs)
        assert plain is not None, f"seed {seed}: {svc}"
        assert one.service_name == plain.service_name, f"seed {seed}: {svc}"
        assert list(one.names.items()) == list(plain.names.items()), f"seed {seed}: {svc}"
        assert one.skipped == plain.skipped == [], f"seed {seed}"
        cut = len(plain.service_name)
        assert one.shape == tuple(n[: len(n) - cut] for n in plain.names), f"seed {seed}"
        assert _same_turns(mine, theirs), f"seed {seed}: {svc}"
        taken += 1
    assert taken > 20, f"seed {seed}: the one-call route took only {taken} services"


def test_declined_services_take_no_counter() -> None:
    turns = Turns()
    base = ServiceRecords(
        "ns", "web", False, ("10.0.0.1", "10.0.0.2"), (("http", "TCP", 80),),
        packed_v4=bytes((10, 0, 0, 1, 10, 0, 0, 2)),
    )  # fmt: skip
    declined = [
        dataclasses.replace(base, name="bad.dot"),
        dataclasses.replace(base, name="b" * 64),
        dataclasses.replace(base, max_addresses=0),
        dataclasses.replace(base, ports=()),
        dataclasses.replace(base, headless=True),
        dataclasses.replace(base, ports=(("http", "TCP", 80), ("https", "TCP", 443))),
    ]
    for svc in declined:
        assert plainblob.encode(svc, ORIGIN, 5, turns) is None, svc
    assert turns.in_use() == 0
    assert not turns.counters
    made = plainblob.encode(base, ORIGIN, 5, turns)
    assert made is not None
    assert turns.in_use() == 1


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_octets_of_another_bytes_like_type_go_the_general_way(kind: type) -> None:
    """``packed_v4`` that is not ``bytes`` (a bytearray, a memoryview: the field is not
    checked) is declined, not handed to the C function (which refuses it with a TypeError,
    so the zone left the whole service out as ``internal``): ``encode_plain`` encodes it,
    as before the one-call route."""
    octets = bytes((10, 0, 0, 1, 10, 0, 0, 2))
    base = ServiceRecords(
        "ns", "web", False, ("10.0.0.1", "10.0.0.2"), (("http", "TCP", 80),), packed_v4=octets
    )
    odd = dataclasses.replace(base, packed_v4=kind(octets))
    assert plainblob.encode(odd, ORIGIN, 5, Turns()) is None
    assert plainblob.made(odd, ORIGIN, 5, Turns()) is None
    zones = []
    for svc in (base, odd):
        zone = Zone("clusterset.local", serial=1, on_skipped=None)
        zone.set_service("ns", "web", svc)
        zones.append(zone)
    assert not zones[1].skipped, zones[1].skipped
    assert _table(zones[1]) == _table(zones[0])


@pytest.mark.parametrize("seed", range(10))
def test_quad_texts_c_and_twin(seed: int) -> None:
    """``quad_texts`` (C) and its twin agree, and give the texts ``PackedEndpoints`` gives."""
    c_quads = pytest.importorskip("dnsserver._fastpath").quad_texts

    rng = random.Random(seed)
    print(f"seed {seed}")
    given = 0
    for _ in range(500):
        count = rng.choice([0, 1, 2, 3, 3, 5, 64, 65])
        pool = [bytes(rng.randrange(256) for _ in range(4)) for _ in range(rng.choice([2, 300]))]
        octets = b"".join(rng.choice(pool) for _ in range(count))
        octets += bytes(rng.choice([0, 0, 0, 0, 1, 3]))
        twin = plainblob.quad_texts_py(octets)
        assert c_quads(octets) == twin, f"seed {seed}: {octets.hex()}"
        if twin is not None:
            given += 1
            expected = tuple(
                ".".join(str(b) for b in octets[i : i + 4]) for i in range(0, len(octets), 4)
            )
            assert twin == expected, f"seed {seed}: {octets.hex()}"
    assert given > 50, f"seed {seed}: only {given} given"


def _table(zone: Zone) -> list[tuple[bytes, Any]]:
    """The zone's table, each answer as what it holds (blobs as they are)."""
    out: list[tuple[bytes, Any]] = []
    for name, answers in zone.table.items():
        if isinstance(answers, bytes):
            out.append((name, answers))
        else:
            out.append((name, [_answer(a) for a in answers]))
    return out


def _zone_state(zone: Zone) -> tuple[object, ...]:
    return (
        _table(zone),
        zone._services,
        zone._strays,
        zone._namespace_refs,
        zone.skipped,
        zone._skipped_now,
        bytes(zone.turns.counters),
        zone.turns.free,
    )


class _GeneralZone(Zone):
    """A zone that never takes the plain way (``Zone`` has slots: patched by subclassing)."""

    __slots__ = ()

    def _set_plain(self, *args: object) -> bool:
        return False


@pytest.mark.parametrize("seed", range(20))
def test_the_zone_sets_a_plain_service_as_the_general_way(seed: int) -> None:
    """``Zone.set_service`` puts what ``plainblob`` makes straight in its table; a zone that
    always goes the general way (``Encoded``) ends in the same state after every call:
    services set, replaced by another shape, removed, and named otherwise than the call."""
    print(f"seed {seed}")
    rng = random.Random(seed)
    fast = Zone("clusterset.local", serial=1, on_skipped=None)
    general = _GeneralZone("clusterset.local", serial=1, on_skipped=None)
    names = [("ns1", f"s{i}") for i in range(12)] + [("ns2", "web"), ("bad.ns", "x")]
    for step in range(300):
        namespace, name = rng.choice(names)
        svc: ServiceRecords | None = None
        if rng.random() < 0.85:
            svc = dataclasses.replace(_random_service(rng), namespace=namespace, name=name)
            if rng.random() < 0.05:  # a caller's bug: the records name another service
                svc = dataclasses.replace(svc, name=name + "x")
        for zone in (fast, general):
            zone.set_service(namespace, name, svc)
        assert _zone_state(fast) == _zone_state(general), f"seed {seed}, step {step}: {svc}"
