"""mesh/ring/record_log.py: a live service record held compactly (``ServiceRecord``) reads
as the ``Record`` of the same values does, attribute by attribute, and is immutable."""

from __future__ import annotations

import pytest

from mesh.model import Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.ring.record_log import OriginLog, Record
from mesh.wire.record_batch import digest_of
from mesh.wire.sealed_record import (
    CanonicalServiceRecord,
    SealedRecord,
    SealedServiceRecord,
    held_record,
)
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import Node, service, wire
from tests.unit.test_signing import NOW, make_clusterset

KEY = ServiceKey("shop", "web")
SERVICE = ExportedService(KEY, ServiceType.CLUSTER_SET_IP, (), (Endpoint(("10.0.0.1",)),))
SEALED = pb.Sealed(body=b"\n\x02c1", batch=7).SerializeToString()
ATTRIBUTES = ("version", "slot", "service", "info", "sealed", "since", "batch", "live")


def test_a_service_record_reads_as_the_record_of_its_values() -> None:
    compact = SealedServiceRecord(9, SERVICE, SEALED, b"batch")
    full = Record(9, KEY, SERVICE, None, SEALED, 0.0, b"batch")
    for name in ATTRIBUTES:
        assert getattr(compact, name) == getattr(full, name), name
    assert compact == full
    assert full == compact
    assert compact != Record(9, KEY, SERVICE, None, SEALED, 0.0, b"")
    assert hash(compact) == hash(SealedServiceRecord(9, SERVICE, SEALED, b"batch"))
    with pytest.raises(AttributeError):
        compact.version = 10  # type: ignore[misc]
    assert compact.weight == int.from_bytes(digest_of(b"\n\x02c1"), "big")


def test_held_records_are_compact_for_live_services_only_and_open_their_seal() -> None:
    made = held_record(9, KEY, SERVICE, None, SEALED, b"")
    assert type(made) is SealedServiceRecord
    assert made.weight == int.from_bytes(digest_of(b"\n\x02c1"), "big")
    tombstone = held_record(10, KEY, None, None, SEALED, b"", 5.0)
    assert type(tombstone) is SealedRecord
    assert not tombstone.live
    assert tombstone.since == 5.0


def test_a_copy_counts_compact_records_as_live() -> None:
    log = OriginLog("c1", "", 1)
    assert log.put(held_record(1, KEY, SERVICE, None, SEALED, b""))
    assert log.live == 1
    assert log.set_hash == int.from_bytes(digest_of(b"\n\x02c1"), "big")
    assert log.put(held_record(2, KEY, None, None, SEALED, b""))  # its tombstone
    assert log.live == 0
    assert log.set_hash == 0
    assert log.state().services == {}
    assert [r.version for r in log.since(0)] == [2]


@pytest.mark.parametrize("per_record", [True, False])
def test_a_canonical_record_makes_the_bytes_it_came_in_again(per_record: bool) -> None:
    """A record of the common shape, taken through a chunk, holds no bytes of its own and
    reads, sends and hashes exactly as the bytes its origin sealed (signed on its own and
    in a batch, or in a batch only); a third agent takes it from the relay."""
    cs = make_clusterset("prod", ("east", "west", "south"))

    def node(cluster: str) -> Node:
        signer, trust = cs.signers[cluster], cs.trust()
        return Node(
            cluster, 1, signer=signer, trust=trust, clusterset=cs.name, per_record=per_record
        )

    east, west, south = node("east"), node("west"), node("south")
    web = ExportedService(
        KEY,
        ServiceType.CLUSTER_SET_IP,
        (ServicePort("http", "TCP", 80),),
        (Endpoint(("10.0.0.1",)), Endpoint(("10.0.0.2",))),
        exported_at=1.7e9,
        endpoint_ports=(ServicePort("http", "TCP", 8080),),
        cluster_ips=("10.96.0.10",),
    )
    east.export({KEY: web, ServiceKey("shop", "db"): service(ServiceKey("shop", "db"), "10.0.0.9")})
    for src, dst in ((east, west), (west, south)):  # south hears of east through west only
        messages, more = wire(src, dst)
        assert not more
        for message in messages:
            dst.take(message, 0.0, wall=NOW, sender=src)
    original = east.store.local.records[KEY]
    for holder in (west, south):
        held = holder.store.logs[("east", "")].records[KEY]
        assert type(held) is CanonicalServiceRecord
        assert held == original
        assert (held.sealed, held.batch, held.weight) == (
            original.sealed,
            original.batch,
            original.weight,
        )
    assert south.view()["east"] == east.exports()
    assert not west.dropped
    assert not south.dropped
