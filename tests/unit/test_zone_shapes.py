"""The zone's bookkeeping of what each service owns (``Zone._services``, as prefixes of its
name, one shared tuple per shape): whatever services come and go, the table holds exactly
the names of the services set now, and nothing stays behind when they leave."""

from __future__ import annotations

import random

import pytest

from dnsserver import wire
from dnsserver.records import ServiceRecords, encode_service
from dnsserver.zone import Zone
from tests.unit.test_plain_records import ORIGIN, random_service


def _expected(
    base: set[bytes], current: dict[tuple[str, str], ServiceRecords]
) -> tuple[set[bytes], set[bytes]]:
    """The names the table must hold, and the empty non-terminals below services (not in
    the table, but NODATA)."""
    names = set(base)
    empty: set[bytes] = set()
    for svc in current.values():
        encoded = encode_service(svc, ORIGIN, 5)
        names |= {name for name, types in encoded.names.items() if types}
        empty |= {name for name, types in encoded.names.items() if not types}
        if encoded.names:
            own = encoded.service_name
            names.add(own[1 + own[0] :])  # its ``<ns>.svc.<zone>``
    return names, empty


@pytest.mark.parametrize("seed", range(12))
def test_the_table_holds_the_names_of_the_services_set_now(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    zone = Zone("clusterset.local", serial=1, on_skipped=None)
    zone.synced = True
    base = set(zone.table)
    current: dict[tuple[str, str], ServiceRecords] = {}
    keys: list[tuple[str, str]] = []
    for _ in range(300):
        if keys and rng.random() < 0.3:
            key = rng.choice(keys)
            zone.set_service(*key, None)
            current.pop(key, None)
            continue
        svc = random_service(rng)
        key = (svc.namespace, svc.name)
        keys.append(key)
        zone.set_service(*key, svc)
        current[key] = svc
    names, empty = _expected(base, current)
    assert set(zone.table) == names, f"seed {seed}"
    for name in empty:
        assert zone.empty_nonterminal(name), f"seed {seed} {name!r}"
        assert zone.lookup(wire.name_text(name), 1) is zone.nodata, f"seed {seed} {name!r}"
    for name in names:  # below every name, a name that does not exist
        below = b"\x04nope" + name
        if len(below) <= 255 and below not in names | empty:
            assert not zone.empty_nonterminal(below), f"seed {seed} {below!r}"
    for key in keys:
        zone.set_service(*key, None)
    assert set(zone.table) == base, f"seed {seed}"
    assert not any(zone.empty_nonterminal(name) for name in empty), f"seed {seed}"


def test_services_of_one_shape_share_their_bookkeeping() -> None:
    zone = Zone("clusterset.local", serial=1)
    for name in ("a", "b"):
        svc = ServiceRecords("ns", name, False, ("10.0.0.1",), (("http", "TCP", 80),))
        zone.set_service("ns", name, svc)
    shapes = list(zone._services.values())
    assert shapes[0] == (b"", b"\x05_http\x04_tcp", b"\x04_tcp")
    assert shapes[0] is shapes[1]


def test_records_of_another_service_than_the_call_still_leave_when_replaced() -> None:
    zone = Zone("clusterset.local", serial=1)
    base = set(zone.table)
    other = ServiceRecords("ns", "other", False, ("10.0.0.1",), (("http", "TCP", 80),))
    zone.set_service("ns", "web", other)  # a caller's bug: records of ns/other
    assert zone.lookup("_http._tcp.other.ns.svc.clusterset.local", 33).body
    zone.set_service("ns", "web", None)
    assert set(zone.table) == base
