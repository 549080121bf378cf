"""A plain name's answers held in one blob (``dnsserver.nameblob``) answer as ``Answer``s do.

The blob form of ``encode_plain`` (with the zone's ``Turns``) must describe the same answers
as its type-table form, name by name (``nameblob.view``); a zone holding blobs must send
the same octets, rotation after rotation, as one holding the ``Answer`` objects, on the
Python path and on the C path, with the same counters; counters are given back when a
service changes or goes; and a malformed blob is an error, never a read out of bounds.
"""

from __future__ import annotations

import random
import struct

import dns.message
import pytest

from dnsserver import nameblob, wire
from dnsserver.plain import encode_plain
from dnsserver.query import QueryStats, respond
from dnsserver.records import ServiceRecords
from dnsserver.zone import Zone
from tests.unit.test_plain_records import _answer, random_service

try:
    from dnsserver import _fastpath
except ImportError:  # pragma: no cover - the extension is built by make setup
    _fastpath = None  # type: ignore[assignment]

ORIGIN = wire.encode_name("clusterset.local")


@pytest.mark.parametrize("seed", range(20))
def test_blob_form_describes_the_table_form(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    blobs = 0
    for _ in range(150):
        svc = random_service(rng)
        ttl = rng.choice([5, 30])
        turns = nameblob.Turns()
        packed = encode_plain(svc, ORIGIN, ttl, turns)
        tables = encode_plain(svc, ORIGIN, ttl)
        if tables is None:
            assert packed is None
            continue
        assert packed is not None
        assert list(packed.names) == list(tables.names), f"seed {seed}"
        for name, table in tables.names.items():
            mine = packed.names[name]
            if isinstance(mine, bytes):
                blobs += 1
                mine = nameblob.view(mine, name)
            assert not isinstance(table, bytes)
            assert [_answer(a) for a in mine] == [_answer(a) for a in table], f"seed {seed}"
    assert blobs > 30, f"seed {seed}: only {blobs} names as blobs"


def _service(name: str, count: int, shown: int = 3, ports: int = 1) -> ServiceRecords:
    addresses = tuple(f"10.2.{i // 250}.{i % 250 + 1}" for i in range(count))
    addresses += tuple(f"fd00::{i + 1:x}" for i in range(count // 2))
    named = (("http", "TCP", 80), ("grpc", "TCP", 9090))[:ports]
    return ServiceRecords("shop", name, False, addresses, named, max_addresses=shown)


SERVICES = [
    _service("one", 1),
    _service("three", 3),
    _service("ten", 10, shown=4, ports=2),
    _service("wide", 150, shown=8),  # 150 addresses, 64 rotations
    _service("none", 2, shown=0),  # nothing shown: a type table
    _service("huge", 5000, shown=8),  # rings longer than a blob's offsets reach: tables
    ServiceRecords("shop", "six", False, ("10.3.0.1", "10.3.0.2"), (), max_addresses=1),
]
NAMES = [
    "one",
    "three",
    "THREE",
    "_http._tcp.three",
    "ten",
    "_http._tcp.ten",
    "_grpc._tcp.ten",
    "_tcp.ten",
    "wide",
    "_http._tcp.wide",
    "none",
    "huge",
    "six",
]


def _queries() -> list[bytes]:
    out = []
    for name in NAMES:
        for rdtype in ("A", "AAAA", "SRV", "ANY", "TXT", "MX"):
            for edns in (-1, 0):
                fqdn = f"{name}.shop.svc.clusterset.local"
                out.append(dns.message.make_query(fqdn, rdtype, use_edns=edns).to_wire())
    return out


def _zone(as_tables: bool) -> Zone:
    zone = Zone("clusterset.local", serial=7)
    zone.synced = True
    for svc in SERVICES:
        zone.set_service(svc.namespace, svc.name, svc)
    if as_tables:  # the same answers as ``Answer`` objects (what the zone held before)
        for key, value in list(zone.table.items()):
            if isinstance(value, bytes):
                zone.table[key] = nameblob.view(value, key)
    return zone


def test_blobs_send_what_answers_sent_on_both_paths() -> None:
    blobs = _zone(as_tables=False)
    assert sum(isinstance(v, bytes) for v in blobs.table.values()) >= 7
    huge = wire.encode_name("huge.shop.svc.clusterset.local")
    assert isinstance(blobs.table[huge], tuple)
    tables = _zone(as_tables=True)
    c_zone = _zone(as_tables=False)
    stats = [QueryStats(), QueryStats(), QueryStats()]
    for round_ in range(70):  # past a full turn of the widest rotation (64)
        for q in _queries():
            expected = respond(tables, q, True, stats[0])
            assert respond(blobs, q, True, stats[1]) == expected, (round_, q)
            if _fastpath is not None:
                assert _fastpath.answer(c_zone, q, stats[2], respond) == expected, (round_, q)
    assert stats[1].answered == stats[0].answered
    assert stats[1].truncated == stats[0].truncated == 0
    if _fastpath is not None:
        assert stats[2].answered == stats[0].answered


def test_counters_are_given_back_and_reused() -> None:
    zone = _zone(as_tables=False)
    rotating = zone.turns.in_use()
    # three: A; ten and wide: A and AAAA; six: A (one, none and huge do not rotate here)
    assert rotating == 6
    for svc in SERVICES:  # the same again: new counters taken, the old given back
        zone.set_service(svc.namespace, svc.name, svc)
    assert zone.turns.in_use() == rotating
    # Services change one at a time: one service's new counters (two at most) are taken
    # before its old are given back, the rest reused.
    assert len(zone.turns.counters) == 4 * (rotating + 2)
    for svc in SERVICES:
        zone.set_service(svc.namespace, svc.name, None)
    assert zone.turns.in_use() == 0
    assert all(isinstance(v, tuple) for v in zone.table.values())


def _entry(offset: int, length: int, records: int, count: int) -> bytes:
    return struct.pack("<HHBB", offset, length, records, count)


@pytest.mark.skipif(_fastpath is None, reason="the C extension is not built")
@pytest.mark.parametrize(
    ("qtype", "tail"),
    [
        ("A", b""),  # no answers octet
        ("A", b"\x01"),  # no target octet
        ("A", b"\x01\x00"),  # an A answer without its entry
        ("A", b"\x01\x00" + _entry(0xFFFF, 16, 1, 0)),  # a body past the end
        ("A", b"\x01\x00" + _entry(9, 16, 1, 5)),  # a rotation without its numbers
        ("A", b"\x01\x00" + _entry(17, 16, 1, 5) + struct.pack("<HHI", 4, 4, 0) + bytes(16)),
        ("A", b"\x01\x00" + _entry(17, 16, 1, 2) + struct.pack("<HHI", 4, 4, 1 << 24) + bytes(16)),
        ("SRV", b"\x04\xff" + _entry(9, 18, 1, 0) + bytes(18)),  # a target longer than the name
        ("SRV", b"\x04\x01" + _entry(9, 17, 1, 0) + bytes(17)),  # not whole SRV records
    ],
)
def test_a_malformed_blob_is_an_error_not_a_read_past_it(qtype: str, tail: bytes) -> None:
    zone = _zone(as_tables=False)
    key = wire.encode_name("three.shop.svc.clusterset.local")
    zone.table[key] = bytes((len(key),)) + tail
    q = dns.message.make_query("three.shop.svc.clusterset.local", qtype).to_wire()
    stats = QueryStats()
    with pytest.raises(TypeError, match=r"malformed name blob|beyond zone\.turns"):
        _fastpath.answer(zone, q, stats, respond)


@pytest.mark.skipif(_fastpath is None, reason="the C extension is not built")
def test_the_c_path_serves_a_zone_without_counters() -> None:
    """A zone object without ``turns`` (another release's zone module, as the upgrade test
    runs it against this extension) is served; only a rotating blob in it is an error."""
    zone = _zone(as_tables=False)
    del zone.turns
    stats = QueryStats()
    soa = dns.message.make_query("clusterset.local", "SOA").to_wire()
    assert _fastpath.answer(zone, soa, stats, respond) == respond(zone, soa, True, QueryStats())
    one = dns.message.make_query("one.shop.svc.clusterset.local", "A").to_wire()
    assert _fastpath.answer(zone, one, stats, respond) is not None  # a blob that does not rotate
    three = dns.message.make_query("three.shop.svc.clusterset.local", "A").to_wire()
    with pytest.raises(TypeError, match="beyond zone"):
        _fastpath.answer(zone, three, stats, respond)
