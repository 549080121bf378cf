"""mesh/ring/record_log.py: ``OriginLog.put_all`` holds exactly what ``put`` one record at a
time holds.

Seeded random runs of records against a copy that already holds some: live service records
(compact and plain), tombstones, the cluster record, slots already held (older and newer),
versions at or below the floor given, ascending runs (a chunk's) and shuffled ones, with
the set-hash term given or left to the record. For each, the same run through ``put`` (the
reference: skip at or below ``above``, stamp tombstones, as ``RecordStore`` did) and through
``put_all`` must leave equal copies (records by slot, their order by version, live count,
set hash) and report the same slots taken. Failures print the seed.
"""

from __future__ import annotations

import os
import random

import pytest

from mesh.model import Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.ring.record_log import ClusterInfo, Held, OriginLog, Record, Slot
from mesh.wire.sealed_record import SealedRecord, SealedServiceRecord, weight_of
from mesh.wire.v1 import gossip_pb2 as pb

SEEDS = [int(os.environ.get("MESHD_TEST_SEED", "0")) or s for s in range(1, 9)]
KEYS = [ServiceKey("shop", f"svc-{i}") for i in range(12)]
SINCE = 50.0


def _sealed(version: int) -> bytes:
    body = pb.Record(cluster_id="c1", generation=1, version=version).SerializeToString()
    return bytes(pb.Sealed(body=body).SerializeToString())


def _record(rng: random.Random, version: int) -> tuple[Held, int | None]:
    """A random record of ``version`` with its set-hash term (or None: the record's own)."""
    sealed = _sealed(version)
    term = weight_of(pb.Sealed.FromString(sealed).body)
    slot: Slot = None if rng.random() < 0.1 else rng.choice(KEYS)
    roll = rng.random()
    if slot is None:
        info = ClusterInfo("r1", "z1", frozenset({"shop"}))
        record: Held = SealedRecord(version, None, None, info, sealed)
    elif roll < 0.25:  # a tombstone (taken with ``since``)
        record = Record(version, slot, sealed=sealed, batch=b"b" * rng.randrange(2))
    else:
        service = ExportedService(slot, ServiceType.HEADLESS, endpoints=(Endpoint(("10.0.0.1",)),))
        record = SealedServiceRecord(version, service, sealed, b"")
    return record, (None if rng.random() < 0.3 else term)


def _by_put(log: OriginLog, run: list[tuple[Held, int | None]], above: int) -> list[Slot]:
    taken = []
    for record, weight in run:
        if record.version <= above:
            continue
        if not record.live:
            record = Record(
                record.version, record.slot, sealed=record.sealed, since=SINCE, batch=record.batch
            )
        if log.put(record, weight):
            taken.append(record.slot)
    return taken


def _copy(seed: int) -> tuple[OriginLog, OriginLog, random.Random]:
    """Two equal copies holding a random past, and the generator for what follows."""
    rng = random.Random(seed)
    logs = OriginLog("c1", "", 1), OriginLog("c1", "", 1)
    past = [_record(rng, v) for v in rng.sample(range(1, 200), rng.randrange(0, 15))]
    for log in logs:
        _by_put(log, past, 0)
    return logs[0], logs[1], rng


def _state(log: OriginLog) -> tuple[object, ...]:
    return (
        dict(log.records),
        [r.version for r in log.since(0)],
        log.live,
        log.set_hash,
        log.state(),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_put_all_holds_what_put_holds(seed: int) -> None:
    runs = 0
    for round_ in range(60):
        reference, log, rng = _copy(seed * 1000 + round_)
        start = rng.randrange(1, 250)
        versions = list(range(start, start + rng.randrange(0, 40)))
        if rng.random() < 0.3:
            rng.shuffle(versions)  # not a chunk's order: still taken as ``put`` takes it
        run = [_record(rng, v) for v in versions]
        if run and rng.random() < 0.2:  # the same record twice (never a chunk's: still as put)
            run.insert(rng.randrange(len(run) + 1), rng.choice(run))
        above = rng.choice([0, start - 1, start + 5, 120])
        expected = _by_put(reference, run, above)
        got = log.put_all([r for r, _ in run], [w for _, w in run], above, SINCE)
        assert got == expected, f"seed {seed}, round {round_}"
        assert _state(log) == _state(reference), f"seed {seed}, round {round_}"
        runs += bool(expected)
    assert runs > 30, f"seed {seed}: {runs} of 60 runs took something"  # (it can fail)


def test_put_all_appends_an_ascending_run_past_the_newest_record() -> None:
    log = OriginLog("c1", "", 1)
    services = [
        ExportedService(k, ServiceType.HEADLESS, endpoints=(Endpoint(("10.0.0.1",)),)) for k in KEYS
    ]
    run: list[Held] = [
        SealedServiceRecord(v + 1, s, _sealed(v + 1), b"") for v, s in enumerate(services)
    ]
    terms = [weight_of(pb.Sealed.FromString(r.sealed).body) for r in run]
    assert log.put_all(run, terms, 0, SINCE) == [s.key for s in services]
    assert [r.version for r in log.since(0)] == list(range(1, len(KEYS) + 1))
    assert log.live == len(KEYS)
    assert log.set_hash == sum(terms) % (1 << 256)
    # Nothing above ``above``: nothing taken, nothing changed.
    assert log.put_all(run, terms, len(KEYS), SINCE) == []
    assert log.live == len(KEYS)


def test_a_record_that_cannot_open_its_seal_raises_before_the_copy_changes() -> None:
    log = OriginLog("c1", "", 1)
    plain = Record(1, KEYS[0], ExportedService(KEYS[0], ServiceType.HEADLESS), sealed=b"")
    with pytest.raises(TypeError):
        log.put_all([plain], [None], 0, SINCE)
    assert log.records == {}
    assert (log.live, log.set_hash) == (0, 0)
