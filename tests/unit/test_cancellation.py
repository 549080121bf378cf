"""The agent's loops end when cancelled, even when their wake-up comes at the same moment.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of raising when the
outer task is cancelled just as the inner wait completes. A loop around such a wait (SWIM's
pump, the ring's rounds, the manifests poll) then went on after ``Agent.stop`` cancelled
it, and the agent never exited: on an overloaded 50-agent ring, where a datagram or a nudge
wakes these loops all the time, 19 of 50 agents were still running two minutes after
SIGTERM. Each test sets the loop's wake-up and cancels it in the same turn of the event
loop, the case that wait_for lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mesh.model import ClusterState
from mesh.ring.catalog import Catalog
from mesh.ring.peers import PeerTable
from mesh.sources.manifests import ManifestSource
from mesh.swim.messages import Event
from mesh.transport.gossip import Ring
from mesh.transport.swim import SwimPump
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.test_manifests import Recorder, export, service, write

ENDS_WITHIN_S = 5.0


async def blocked(task: asyncio.Task[None]) -> None:
    """Turn the loop until ``task`` waits (its wake-up not yet set)."""
    for _ in range(100):
        await asyncio.sleep(0)
    assert not task.done()


async def cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(ENDS_WITHIN_S):  # the bug: a TimeoutError here
            await task


class _QuietMembership:
    """A SWIM core with nothing to send and its next timer an hour away."""

    def __init__(self, now: float) -> None:
        self.timer = now + 3600.0
        self.timers_handled = 0

    def get_timer(self) -> float:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.timers_handled += 1

    def messages_to_send(self, now: float) -> list[tuple[str, pb.SwimDatagram]]:
        return []

    def next_event(self) -> Event | None:
        return None


async def _never_sent(address: str, datagram: pb.SwimDatagram) -> bool:
    raise AssertionError("nothing to send")


@pytest.mark.asyncio
async def test_swim_pump_ends_when_cancelled_as_a_datagram_wakes_it() -> None:
    membership = _QuietMembership(asyncio.get_running_loop().time())
    pump = SwimPump(membership, _never_sent, lambda event: None)  # type: ignore[arg-type]
    task = asyncio.create_task(pump.run())
    await blocked(task)
    pump._wake.set()  # what ``receive`` does for every datagram
    await cancelled(task)
    assert membership.timers_handled == 0


@pytest.mark.asyncio
async def test_ring_rounds_end_when_cancelled_as_a_nudge_wakes_them() -> None:
    peers = PeerTable("east", "127.0.0.1:1", [])
    ring = Ring(Catalog(ClusterState("east", 1, 0)), peers, lambda change: None)
    task = asyncio.create_task(ring.run(interval_s=3600.0))
    await blocked(task)
    ring.nudge()  # a local change
    await cancelled(task)


@pytest.mark.asyncio
async def test_the_manifests_source_ends_when_cancelled_as_an_edit_wakes_it(
    tmp_path: Path,
) -> None:
    write(tmp_path / "web.yaml", service(), export())
    recorder = Recorder()
    source = ManifestSource(
        tmp_path, recorder.on_change, recorder.on_problem, poll_interval_s=3600.0
    )
    task = asyncio.create_task(source.run())
    await recorder.next_change()
    watch = source._watch
    assert watch is not None  # inotify here: the source waits on its wake-up
    await blocked(task)
    watch.changed.set()  # what an edit does
    await cancelled(task)
