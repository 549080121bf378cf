"""mesh/ring/record_log.py: a live service record held compactly (``ServiceRecord``) reads
as the ``Record`` of the same values does, attribute by attribute, and is immutable."""

from __future__ import annotations

import pytest

from mesh.model import Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.ring.record_log import OriginLog, Record, ServiceRecord
from mesh.wire.record_batch import digest_of
from mesh.wire.sealed_record import SealedRecord, SealedServiceRecord, held_record
from mesh.wire.v1 import gossip_pb2 as pb

KEY = ServiceKey("shop", "web")
SERVICE = ExportedService(KEY, ServiceType.CLUSTER_SET_IP, (), (Endpoint(("10.0.0.1",)),))
SEALED = pb.Sealed(body=b"\n\x02c1", batch=7).SerializeToString()
ATTRIBUTES = ("version", "slot", "service", "info", "sealed", "since", "batch", "live")


def test_a_service_record_reads_as_the_record_of_its_values() -> None:
    compact = ServiceRecord(9, SERVICE, SEALED, b"batch")
    full = Record(9, KEY, SERVICE, None, SEALED, 0.0, b"batch")
    for name in ATTRIBUTES:
        assert getattr(compact, name) == getattr(full, name), name
    assert compact == full
    assert full == compact
    assert compact != Record(9, KEY, SERVICE, None, SEALED, 0.0, b"")
    assert hash(compact) == hash(ServiceRecord(9, SERVICE, SEALED, b"batch"))
    with pytest.raises(AttributeError):
        compact.version = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        _ = compact.weight  # only one that can open its seal knows it


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
