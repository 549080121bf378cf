"""A query interrupts the task step under way (``dnsserver.preempt``): SIGIO while a step
runs, no answer from a zone being updated, no re-entry into the C reader, nothing armed
between steps.

Real loopback sockets. Loopback queues a datagram (and sends the signal) within ``sendto``,
so after it returns the handler runs at the next bytecode; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.opcode
import pytest
import pytest_asyncio
import uvloop

from dnsserver import preempt, queries_first
from dnsserver import server as server_module
from dnsserver.query import respond
from dnsserver.records import ServiceRecords
from mesh.daemon.front import DnsFront
from mesh.daemon.settings import AgentSettings
from mesh.model import ServiceKey
from tests.unit.test_dns_fastpath import ReaderRig, make_zone, query_wire

pytestmark = pytest.mark.skipif(
    server_module._fastpath is None, reason="the C fast path is not built"
)
WAIT_S = 5.0
F_GETOWN_EX = getattr(fcntl, "F_GETOWN_EX", 16)
WEB = ServiceKey("shop", "web")
QUERY = dns.message.make_query("web.shop.svc.clusterset.local.", "A")


@pytest_asyncio.fixture
async def front() -> AsyncIterator[DnsFront]:
    settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
    made = DnsFront(settings, serial=1)
    await made.start()
    records = ServiceRecords("shop", "web", False, ("10.1.0.1",), (("http", "TCP", 80),))
    made.apply([(WEB, records)], 2)
    try:
        yield made
    finally:
        await made.close()


def answered_within(client: socket.socket, seconds: float) -> bool:
    """Whether a reply reaches ``client`` within ``seconds`` of Python bytecode (no await,
    no blocking call: only a signal's handler can answer meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([client], [], [], 0)[0]:
            return True
    return False


def armed(fd: int) -> bool:
    """Whether the kernel signals a datagram on ``fd``: O_ASYNC, and an owner to signal."""
    owner = struct.unpack("ii", fcntl.fcntl(fd, F_GETOWN_EX, bytes(8)))[1]
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ASYNC) and owner != 0


@pytest.mark.asyncio
async def test_a_query_is_answered_in_the_middle_of_a_step(front: DnsFront) -> None:
    loop = asyncio.get_running_loop()
    assert queries_first.preemption(loop) is not None
    fd = front.dns.fast_fd
    assert fd is not None
    between_steps = loop.create_future()
    loop.call_soon(lambda: between_steps.set_result(armed(fd)))  # a callback, not a step
    assert await between_steps is False  # the loop polls the socket itself there
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:

        async def long_step() -> tuple[bool, bool]:
            was_armed = armed(fd)
            client.sendto(QUERY.to_wire(), front.dns.address)
            return was_armed, answered_within(client, WAIT_S)

        was_armed, answered = await asyncio.create_task(long_step())
        assert (was_armed, answered) == (True, True)
        reply = dns.message.from_wire(client.recv(4096))
        assert reply.id == QUERY.id
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.1"]
        after = loop.create_future()
        loop.call_soon(lambda: after.set_result(armed(fd)))
        assert await after is False  # disarmed when the step ended
    finally:
        client.close()


@pytest.mark.asyncio
async def test_no_answer_while_the_zone_changes(front: DnsFront) -> None:
    preemption = queries_first.preemption(asyncio.get_running_loop())
    assert preemption is not None
    declined = preemption.declined
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = front.dns._sock
    assert sock is not None
    try:

        async def step_that_updates_the_zone() -> tuple[bool, bool]:
            with preempt.holding():
                client.sendto(QUERY.to_wire(), front.dns.address)
                arrived = bool(select.select([sock], [], [], WAIT_S)[0])
                # The signal came with the datagram and was declined: nothing answers it
                # until the update ends.
                early = bool(select.select([client], [], [], 0)[0])
            return arrived, early

        arrived, early = await asyncio.create_task(step_that_updates_the_zone())
        assert (arrived, early) == (True, False)
        assert preemption.declined == declined + 1  # the signal came, and was turned down
        front.dns.serve_waiting()  # as the end of DnsFront.apply does
        assert dns.message.from_wire(client.recv(4096)).id == QUERY.id
    finally:
        client.close()


@pytest.mark.asyncio
async def test_apply_holds_and_then_answers_who_waited(front: DnsFront) -> None:
    preemption = queries_first.preemption(asyncio.get_running_loop())
    assert preemption is not None
    declined = preemption.declined
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seen: list[bool] = []
    zone = front.zone

    class Watched:
        """The zone, with a query arriving in the middle of each service's update."""

        def __getattr__(self, name: str) -> Any:
            return getattr(zone, name)

        def __setattr__(self, name: str, value: Any) -> None:
            setattr(zone, name, value)

        def set_service(self, *args: Any) -> None:
            client.sendto(QUERY.to_wire(), front.dns.address)
            seen.append(bool(select.select([client], [], [], 0)[0]))
            zone.set_service(*args)

    try:
        front.zone = Watched()  # type: ignore[assignment]

        async def rebuild_step() -> None:
            records = ServiceRecords("shop", "web", False, ("10.1.0.2",), (("http", "TCP", 80),))
            front.apply([(WEB, records)], 3)

        await asyncio.create_task(rebuild_step())
        assert seen == [False]
        assert preemption.declined == declined + 1
        reply = dns.message.from_wire(client.recv(4096))  # answered by apply's end
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.2"]
    finally:
        front.zone = zone
        client.close()


def test_the_reader_does_not_reenter_itself() -> None:
    """A signal may arrive while the reader runs Python (``respond``, for an unusual query):
    the handler's inner call must not reuse the buffers the outer one is answering from,
    and the datagram that signalled is answered by the outer call, not left waiting."""
    inner: list[None] = []
    rig: ReaderRig

    def slow(*args: Any) -> bytes | None:
        rig.client.send(query_wire("one.shop.svc.clusterset.local.", 22))
        inner.append(rig.reader())
        assert not select.select([rig.client], [], [], 0)[0]  # the inner call answered none
        return respond(*args)

    rig = ReaderRig(make_zone(), slow=slow)
    try:
        notify = dns.message.make_query("one.shop.svc.clusterset.local.", "A")
        notify.set_opcode(dns.opcode.NOTIFY)
        notify.id = 21
        rig.client.send(notify.to_wire())
        rig.reader()
        assert inner == [None]
        assert rig.errors == []
        assert dns.message.from_wire(rig.client.recv(65535)).id == 21  # whole, not overwritten
        # The refused call was made up for: one more pass of the outer call answered it.
        assert select.select([rig.client], [], [], 0)[0]
        assert dns.message.from_wire(rig.client.recv(65535)).id == 22
        assert rig.reader.wakeups == 2  # the call, and its second pass
    finally:
        rig.close()


@pytest.mark.asyncio
async def test_a_sigio_handler_of_someone_else_is_left_alone() -> None:
    def theirs(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGIO, theirs)
    try:
        settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
        made = DnsFront(settings, serial=1)
        await made.start()
        try:
            loop = asyncio.get_running_loop()
            assert queries_first.preemption(loop) is None
            assert loop.get_task_factory() is not None  # queries first still
            assert signal.getsignal(signal.SIGIO) is theirs
        finally:
            await made.close()
    finally:
        signal.signal(signal.SIGIO, previous)


@pytest.mark.asyncio
async def test_close_disarms_and_leaves_nothing_installed(front: DnsFront) -> None:
    loop = asyncio.get_running_loop()
    assert queries_first.preemption(loop) is not None
    await front.close()
    assert queries_first.preemption(loop) is None
    assert loop.get_task_factory() is None


@pytest.mark.asyncio
async def test_a_flood_interrupts_a_step_for_a_bounded_time(
    front: DnsFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    preemption = queries_first.preemption(asyncio.get_running_loop())
    assert preemption is not None
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A budget that the first answer uses up, as a flood's answers would a larger one.
    monkeypatch.setattr(preempt, "SERVE_BUDGET_NS", 1)
    try:

        async def flooded_step() -> list[bool]:
            answered = []
            for _ in range(4):
                client.sendto(QUERY.to_wire(), front.dns.address)
                answered.append(answered_within(client, 0.2))
                while select.select([client], [], [], 0)[0]:
                    client.recv(4096)
            return answered

        spent, served = preemption.spent, preemption.served
        assert await asyncio.create_task(flooded_step()) == [True, False, False, False]
        assert (preemption.served - served, preemption.spent - spent) == (1, 1)
        # The rest waited for the step's end; the next step answers them.
        await asyncio.create_task(asyncio.sleep(0))
        assert select.select([client], [], [], WAIT_S)[0]
    finally:
        client.close()


@pytest.mark.asyncio
async def test_cancelled_and_failing_steps_are_disarmed(front: DnsFront) -> None:
    loop = asyncio.get_running_loop()
    fd = front.dns.fast_fd
    assert fd is not None
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fails() -> None:
        raise ValueError("in a step")

    waiting = asyncio.create_task(waits())
    await started.wait()
    waiting.cancel()  # its last step runs through throw()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(ValueError, match="in a step"):
        await asyncio.create_task(fails())
    after = loop.create_future()
    loop.call_soon(lambda: after.set_result((armed(fd), preempt._armed)))
    assert await after == (False, None)


def test_a_socket_closed_behind_its_back_stops_being_armed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert preempt.available()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    preemption = preempt.Preemption(lambda: None)
    preemption.add(sock.fileno())
    sock.close()
    preemption.arm()  # no OSError into the task's step
    preemption.disarm()
    assert preemption.fds == []
    assert "no longer signals" in caplog.text


def test_on_uvloop_as_the_agent_runs() -> None:
    """The agent's loop is uvloop's, which reads the signal's wakeup byte itself."""

    async def main() -> tuple[bool, bool]:
        settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
        made = DnsFront(settings, serial=1)
        await made.start()
        records = ServiceRecords("shop", "web", False, ("10.1.0.1",), (("http", "TCP", 80),))
        made.apply([(WEB, records)], 2)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:

            async def long_step() -> bool:
                client.sendto(QUERY.to_wire(), made.dns.address)
                return answered_within(client, WAIT_S)

            active = queries_first.preemption(asyncio.get_running_loop()) is not None
            return active, await asyncio.create_task(long_step())
        finally:
            client.close()
            await made.close()

    assert uvloop.run(main()) == (True, True)
