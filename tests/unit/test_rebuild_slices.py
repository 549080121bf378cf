"""The zone rebuild hands the DNS front batches bounded by what they cost to encode (in
addresses), and lets the event loop turn between them once a slice's time is spent: a
catch-up of large headless services must not hold the loop for dozens of them at once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from dnsserver.records import HeadlessEndpoint, ServiceRecords
from mesh.daemon import rebuilding
from mesh.daemon.rebuilding import REBUILD_CHECK_COST, ZoneRebuilder, encoding_cost
from mesh.model import ServiceKey
from mesh.routing.planner import Update
from mesh.routing.rebuild import Rebuild


def headless(name: str, endpoints: int) -> Update:
    eps = tuple(
        HeadlessEndpoint("east", (f"10.0.{i // 250}.{i % 250 + 1}",)) for i in range(endpoints)
    )
    return ServiceKey("shop", name), ServiceRecords("shop", name, True, endpoints=eps)


def test_encoding_cost_counts_addresses_and_endpoints() -> None:
    assert encoding_cost((ServiceKey("shop", "gone"), None)) == 1
    assert encoding_cost(headless("db", 50)) == 51
    cluster_set_ip = ServiceRecords("shop", "web", False, addresses=("10.0.0.1", "10.0.0.2"))
    assert encoding_cost((ServiceKey("shop", "web"), cluster_set_ip)) == 3


class Recorder(ZoneRebuilder):
    """A rebuilder whose plan is given and whose front records each batch."""

    def __init__(self, updates: list[Update | None]) -> None:
        self.updates = updates
        self.batches: list[list[Update]] = []
        self.turns_before: list[int] = []  # loop turns seen before each batch
        self.turns = 0
        self.observers = []

    def _plan_rebuild(self) -> Rebuild:
        return Rebuild(iter(self.updates), 7, [], frozenset())

    def _after_rebuild(self, planned: Rebuild, started: float) -> None:
        pass

    def apply(self, updates: list[Update], serial: int) -> None:
        assert serial == 7
        self.batches.append(list(updates))
        self.turns_before.append(self.turns)


async def count_turns(recorder: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        recorder.turns += 1
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_batches_are_bounded_by_addresses_and_the_loop_turns_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    updates: list[Update | None] = [headless(f"db{i}", 50) for i in range(40)]
    recorder = Recorder(updates)
    # Every slice's time is spent at once: the loop must turn after every batch.
    clock: Iterator[float] = iter(float(n) for n in range(10_000))
    monkeypatch.setattr(rebuilding.time, "perf_counter", lambda: next(clock))
    stop = asyncio.Event()
    turner = asyncio.get_running_loop().create_task(count_turns(recorder, stop))
    await recorder.rebuild()
    stop.set()
    await turner
    applied = [u for batch in recorder.batches for u in batch]
    assert applied == updates  # every update, in order, once
    *full, last = recorder.batches
    assert last == []  # the closing call: the serial and synced, with no update left
    for batch in full:
        cost = sum(encoding_cost(u) for u in batch)
        # A batch closes at the first update that reaches the bound: 4 services of 51 here,
        # not the 50 services a count of services allowed.
        assert REBUILD_CHECK_COST <= cost < REBUILD_CHECK_COST + 51
    assert len(full) == 10
    turns = recorder.turns_before
    assert all(later > earlier for earlier, later in itertools.pairwise(turns))
