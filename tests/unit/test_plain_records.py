"""The one-go encoder of plain ClusterSetIP services (``dnsserver.plain``) builds what the
general encoder (``records.encode_service``) builds, byte for byte, or declines.

Seeded random services of every shape (headless, weighted, capped, bad and duplicate
addresses, bad ports, long and bad names and labels, both families, many ports, TTLs): for
each, ``encode_plain`` either returns None or names the same names in the same order, each
with the same answers (kind, body, heads, cut points, rotation, rcode) and the same sharing
of answer objects between slots and names; and it takes every plain service the catch-up
produces (it must not quietly decline them all). Given the addresses' octets as well
(``ServiceRecords.packed_v4``, as routing gives those of packed endpoints), it builds the
same again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from typing import Any

import pytest

from dnsserver import wire
from dnsserver.answer import Answer
from dnsserver.plain import encode_plain
from dnsserver.records import Encoded, HeadlessEndpoint, ServiceRecords, encode_service

ORIGIN = wire.encode_name("clusterset.local")


def _label(rng: random.Random) -> str:
    return rng.choice(
        [
            "web",
            "shop",
            "a" * 63,
            "b" * 64,  # one over the limit
            "x" * rng.randint(1, 63),
            "Mixed-Case",
            "bad.dot",
            "",
            "ünï",
        ]
    )


def _address(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        return f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
    if kind < 0.85:
        return f"fd00::{rng.randint(0, 0xFFFF):x}"
    return rng.choice(["010.0.0.1", "not-an-ip", "1.2.3", "::ffff:1.2.3.4", "256.1.1.1", ""])


def _ports(rng: random.Random) -> tuple[tuple[str, str, int], ...]:
    ports = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5, 7])):
        name = rng.choice(["http", "grpc", "", "dns", "p" * 62, "p" * 63, "bad.port", "Web"])
        protocol = rng.choice(["TCP", "UDP", "SCTP", "tcp"])
        port = rng.choice([80, 443, 53, 8080, 0, 65535, 65536, -1, rng.randint(1, 65535)])
        ports.append((name, protocol, port))
    return tuple(ports)


def random_service(rng: random.Random) -> ServiceRecords:
    plain = rng.random() < 0.5  # half of them the shape the catch-up makes
    namespace = "ns1" if plain else _label(rng)
    name = f"s{rng.randint(0, 999)}" if plain else _label(rng)
    count = rng.choice([0, 1, 2, 3, 3, 8, 9, 40, 65, 130, 300])
    if plain:
        addresses = tuple(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(count))
        ports: tuple[tuple[str, str, int], ...] = (("http", "TCP", 80),)
    else:
        addresses = tuple(_address(rng) for _ in range(count))
        ports = _ports(rng)
    headless = not plain and rng.random() < 0.2
    endpoints: tuple[HeadlessEndpoint, ...] = ()
    if headless:
        endpoints = tuple(
            HeadlessEndpoint(rng.choice(["c1", "c2"]), (a,), rng.choice([None, "h1", "h2"]))
            for a in addresses
        )
    weighted: tuple[tuple[tuple[str, ...], int], ...] = ()
    if not plain and not headless and rng.random() < 0.25 and addresses:
        cut = rng.randint(0, len(addresses))
        weighted = (
            (addresses[:cut], rng.choice([0, 1, 3])),
            (addresses[cut:], rng.choice([1, 2])),
        )
    return ServiceRecords(
        namespace,
        name,
        headless,
        addresses,
        ports,
        endpoints,
        rng.choice([1, 2, 8, 8, 64]),
        weighted,
        rng.choice([None, None, 0, 30]),
    )


def _answer(answer: Answer | None) -> Any:
    if answer is None:
        return None
    cuts = answer.cuts.tolist() if answer.cuts is not None else None
    return (type(answer), answer.body, answer.heads, cuts, answer.rotation, answer.rcode)


def _sharing(encoded: Encoded) -> list[int]:
    """Which slots hold one object: each slot's index of the first slot holding it."""
    slots = [a for table in encoded.names.values() for a in table]
    first: dict[int, int] = {}
    return [first.setdefault(id(a), i) for i, a in enumerate(slots) if a is not None]


def assert_same(plain: Encoded, general: Encoded, seed: int) -> None:
    assert plain.service_name == general.service_name, f"seed {seed}"
    assert list(plain.names) == list(general.names), f"seed {seed}"
    for name, table in general.names.items():
        mine = plain.names[name]
        assert [_answer(a) for a in mine] == [_answer(a) for a in table], f"seed {seed} {name!r}"
    assert _sharing(plain) == _sharing(general), f"seed {seed}"
    assert plain.skipped == general.skipped == [], f"seed {seed}"


@pytest.mark.parametrize("seed", range(40))
def test_plain_encoding_is_the_general_one_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    taken = given_ones = 0
    for _ in range(150):
        svc = random_service(rng)
        ttl = rng.choice([5, 30])
        plain = encode_plain(svc, ORIGIN, ttl)
        general = encode_service(svc, ORIGIN, ttl)
        if plain is None:
            continue
        taken += 1
        assert_same(plain, general, seed)
        octets = _octets(svc.addresses)
        if octets:  # given the addresses' octets (as routing gives a packed service's)
            given = encode_plain(dataclasses.replace(svc, packed_v4=octets), ORIGIN, ttl)
            assert given is not None, f"seed {seed}"
            assert_same(given, general, seed)
            given_ones += 1
    assert taken > 30, f"seed {seed}: the plain encoder took only {taken} services"
    assert given_ones > 10, f"seed {seed}: only {given_ones} services given as octets"


def _octets(addresses: tuple[str, ...]) -> bytes:
    """The addresses' octets if all are canonical dotted quads, else b""."""
    try:
        parsed = [ipaddress.IPv4Address(a) for a in addresses]
    except ValueError:
        return b""
    if [str(a) for a in parsed] != list(addresses):
        return b""
    return b"".join(a.packed for a in parsed)


def test_declines_what_the_general_encoder_leaves_out_or_cuts() -> None:
    base = ServiceRecords("ns", "web", False, ("10.0.0.1",), (("http", "TCP", 80),))
    cases = [
        ServiceRecords("ns", "web", True, ("10.0.0.1",)),  # headless
        ServiceRecords("ns", "web", False, ("10.0.0.1", "oops")),  # not an address
        ServiceRecords("ns", "web", False, ("10.0.0.1",), (("http", "TCP", 70000),)),
        ServiceRecords("ns", "web", False, ("10.0.0.1",), (("a.b", "TCP", 80),)),
        ServiceRecords("ns", "b" * 64, False, ("10.0.0.1",)),  # the name cannot be encoded
        ServiceRecords("ns", "w" * 20, False, (), tuple(("", "TCP", p) for p in range(1, 6))),
        ServiceRecords("ns", "web", False, ("10.0.0.1",), weighted=((("10.0.0.1",), 1),)),
    ]
    assert encode_plain(base, ORIGIN, 5) is not None
    for svc in cases:
        assert encode_plain(svc, ORIGIN, 5) is None, svc
