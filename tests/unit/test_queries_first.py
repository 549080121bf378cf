"""Queries first (``dnsserver.queries_first``): every task step on the agent's loop begins by
answering the UDP queries that wait, so a burst of ready tasks does not hold a query until
the loop next polls its sockets.

Real loopback sockets; every wait is bounded (``select`` with a timeout), nothing sleeps.
"""

from __future__ import annotations

import asyncio
import select
import socket
from typing import Any

import dns.message
import pytest

from dnsserver import queries_first
from dnsserver import server as server_module
from dnsserver.records import ServiceRecords
from mesh.daemon.front import DnsFront
from mesh.daemon.settings import AgentSettings
from mesh.model import ServiceKey

WAIT_S = 5.0


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.mark.asyncio
async def test_serve_runs_before_every_step_and_the_task_behaves_as_its_coroutine() -> None:
    loop = asyncio.get_running_loop()
    counter = Counter()
    assert queries_first.install(loop, counter)
    try:
        seen: list[int] = []

        async def three_steps() -> str:
            for _ in range(3):
                seen.append(counter.calls)
                await asyncio.sleep(0)
            return "done"

        task = asyncio.create_task(three_steps(), name="steps")
        assert await task == "done"
        # Each step saw one more call than the one before: serve ran before each of them
        # (4 steps: three awaits and the return).
        assert seen == [seen[0], seen[0] + 1, seen[0] + 2]
        assert task.get_name() == "steps"
        assert "three_steps" in repr(task)

        async def fails() -> None:
            await asyncio.sleep(0)
            raise ValueError("from the coroutine")

        with pytest.raises(ValueError, match="from the coroutine"):
            await asyncio.create_task(fails())

        started = asyncio.Event()

        async def waits_forever() -> None:
            started.set()
            await asyncio.Event().wait()

        waiting = asyncio.create_task(waits_forever())
        await started.wait()
        assert waiting.get_stack()  # a debugger still sees where it waits
        before = counter.calls
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert counter.calls > before  # the cancellation's step served first too
    finally:
        queries_first.uninstall(loop, counter)
    assert loop.get_task_factory() is None
    before = counter.calls
    await asyncio.create_task(asyncio.sleep(0))
    assert counter.calls == before  # plain tasks again


@pytest.mark.asyncio
async def test_a_task_factory_set_by_someone_else_is_left_alone() -> None:
    loop = asyncio.get_running_loop()

    def theirs(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(theirs)
    try:
        assert not queries_first.install(loop, Counter())
        assert loop.get_task_factory() is theirs
    finally:
        loop.set_task_factory(None)


@pytest.mark.asyncio
async def test_two_servers_on_one_loop_are_both_served_until_each_leaves() -> None:
    loop = asyncio.get_running_loop()
    first, second = Counter(), Counter()
    queries_first.install(loop, first)
    queries_first.install(loop, second)
    try:
        await asyncio.create_task(asyncio.sleep(0))
        assert first.calls
        assert second.calls
        queries_first.uninstall(loop, first)
        calls, others = first.calls, second.calls
        await asyncio.create_task(asyncio.sleep(0))
        assert first.calls == calls
        assert second.calls > others
        assert loop.get_task_factory() is not None
    finally:
        queries_first.uninstall(loop, first)  # twice: a no-op
        queries_first.uninstall(loop, second)
    assert loop.get_task_factory() is None


@pytest.mark.asyncio
@pytest.mark.skipif(server_module._fastpath is None, reason="the C fast path is not built")
async def test_a_query_waiting_behind_a_burst_of_tasks_is_answered_by_the_next_step() -> None:
    """Two tasks ready in the same turn of the loop (a change waking two exchanges): a query
    that arrives during the first is answered before the second's body runs, though the
    loop has not polled its sockets in between."""
    settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
    front = DnsFront(settings, serial=1)
    await front.start()
    try:
        records = ServiceRecords("shop", "web", False, ("10.1.0.1",), (("http", "TCP", 80),))
        front.apply([(ServiceKey("shop", "web"), records)], 2)
        sock = front.dns._sock
        assert sock is not None
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        query = dns.message.make_query("web.shop.svc.clusterset.local.", "A")
        answered_before_second_body: list[bool] = []

        async def first() -> None:
            client.sendto(query.to_wire(), front.dns.address)
            assert select.select([sock], [], [], WAIT_S)[0], "query never arrived"

        async def second() -> None:
            answered_before_second_body.append(bool(select.select([client], [], [], 0)[0]))

        await asyncio.gather(asyncio.create_task(first()), asyncio.create_task(second()))
        assert answered_before_second_body == [True]
        reply = dns.message.from_wire(client.recv(4096))
        assert reply.id == query.id
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.1"]
        client.close()
    finally:
        await front.close()
    assert asyncio.get_running_loop().get_task_factory() is None
