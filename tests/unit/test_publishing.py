"""Local changes published as ring records in slices: the loop turns between slices, and the
records hold what one synchronous publish would make them hold."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from mesh.daemon.publishing import LocalPublisher
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.ring.catalog import Change
from mesh.ring.records import OriginLog
from mesh.wire.record_codec import Publisher


def state(services: int, address: str = "10.0.0.1") -> ClusterState:
    keys = [ServiceKey("shop", f"s{i}") for i in range(services)]
    return ClusterState(
        "east",
        1,
        1,
        "us",
        "",
        frozenset({"shop"}),
        {
            k: ExportedService(k, ServiceType.HEADLESS, endpoints=(Endpoint((address,)),))
            for k in keys
        },
    )


def everything(local: ClusterState) -> Change:
    return Change(local.cluster_id, frozenset(local.services), cluster=True)


def services(log: OriginLog) -> dict[object, object]:
    return {slot: (record.service, record.info) for slot, record in log.records.items()}


@pytest.mark.asyncio
async def test_a_large_publish_lets_the_loop_turn_and_writes_what_one_publish_writes() -> None:
    local = state(500)
    reference = OriginLog("east", "", 1)
    Publisher(reference, None).publish(local, everything(local), 0.0)

    log = OriginLog("east", "", 1)
    published: list[int] = []
    sliced = LocalPublisher(
        Publisher(log, None), lambda: local, lambda: published.append(1), slice_s=0.0
    )
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    sliced.note(everything(local))
    assert sliced.pending == 500
    await sliced.publish_pending()
    tick.cancel()
    assert turns > 5  # the loop ran other work between slices
    assert published == [1]
    assert sliced.pending == 0
    assert services(log) == services(reference)
    assert (log.progress, log.live) == (reference.progress, reference.live)
    assert log.head is not None
    assert (log.head.version, log.head.live) == (log.progress, log.live)  # covers them all


@pytest.mark.asyncio
async def test_a_change_noted_mid_publish_is_published_as_it_is_now() -> None:
    current = state(300)
    log = OriginLog("east", "", 1)
    sliced = LocalPublisher(Publisher(log, None), lambda: current, lambda: None, slice_s=0.0)
    sliced.note(everything(current))
    task = asyncio.create_task(sliced.publish_pending())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done()
    key = ServiceKey("shop", "s299")  # sorts last of s0..s299: not published yet
    changed = ExportedService(key, ServiceType.HEADLESS, endpoints=(Endpoint(("10.9.9.9",)),))
    current = replace(current, version=2, services={**current.services, key: changed})
    sliced.note(Change("east", frozenset({key})))
    await task
    assert log.records[key].service == changed
    assert log.live == 301  # 300 services and the cluster's own record
