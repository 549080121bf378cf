"""DNS over TCP against slow and greedy clients (issue 13, slow-loris).

The rules live in a pure core, ``dnsserver.tcp_table.TcpTable``, tested first with literal
times. Then the server on real loopback sockets: slow clients that send a byte of an
unfinished frame now and then hold every connection, and a real client (dnspython) must
still be answered. Client sockets bind to other loopback addresses (127.0.0.2, ...) to play
different hosts. Waits are bounded; the only pauses are the slow client's own pacing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import pytest

from dnsserver.server import DnsServer, DnsServerConfig
from dnsserver.tcp_table import TcpTable
from tests.unit.test_dns_server import (
    WAIT_S,
    eventually,
    frame,
    query,
    read_frame,
    read_until_closed,
    running,
)

# ------------------------------------------------------------------ the core, literal times


def table(**limits: float) -> TcpTable[str]:
    settings = {"max_connections": 4, "max_per_client": 2, "idle": 10.0, "frame": 3.0} | limits
    return TcpTable(
        int(settings["max_connections"]),
        int(settings["max_per_client"]),
        settings["idle"],
        settings["frame"],
    )


def test_bytes_of_an_unfinished_frame_do_not_keep_a_connection_alive() -> None:
    t = table()
    assert t.admit("slow", "10.0.0.1", now=0.0) == (True, None)
    assert t.deadline("slow") == 10.0
    t.unfinished("slow", 1.0, pending=True)  # first byte of a frame
    assert t.deadline("slow") == 4.0
    for now in (2.0, 3.0, 3.9):  # more bytes, same frame: nothing moves
        t.unfinished("slow", now, pending=True)
        assert t.deadline("slow") == 4.0
        assert t.expired("slow", now) is None
    assert t.expired("slow", 4.0) == "frame"


def test_a_completed_query_moves_the_idle_deadline_and_ends_the_frame() -> None:
    t = table()
    t.admit("c", "10.0.0.1", now=0.0)
    t.unfinished("c", 1.0, pending=True)
    t.query_done("c", 1.5)
    t.unfinished("c", 1.5, pending=False)
    assert t.deadline("c") == 11.5
    assert t.expired("c", 11.4) is None
    assert t.expired("c", 11.5) == "idle"
    t.unfinished("c", 5.0, pending=True)  # the next frame starts arriving
    assert t.deadline("c") == 8.0


def test_one_client_address_holds_at_most_its_share() -> None:
    t = table()
    assert t.admit("a1", "10.0.0.1", 0.0) == (True, None)
    assert t.admit("a2", "10.0.0.1", 0.0) == (True, None)
    assert t.admit("a3", "10.0.0.1", 0.0) == (False, None)
    assert t.admit("b1", "10.0.0.2", 0.0) == (True, None)
    t.forget("a1")
    assert t.admit("a3", "10.0.0.1", 1.0) == (True, None)


def test_when_full_the_connection_idle_longest_makes_room() -> None:
    t = table()
    for n, (conn, client) in enumerate((("a", "h1"), ("b", "h1"), ("c", "h2"), ("d", "h3"))):
        t.admit(conn, client, float(n))
    t.query_done("a", 5.0)  # a answered lately; b has been idle longest
    assert t.admit("e", "h4", 6.0) == (True, "b")
    assert set(t) == {"a", "c", "d", "e"}
    assert t.admit("f", "h1", 7.0) == (True, "c")  # h1 holds one now: room for another


def test_random_operations_keep_the_invariants() -> None:
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    t = table(max_connections=8, max_per_client=3)
    clients: dict[str, str] = {}
    now = 0.0
    for step in range(3000):
        now += rng.random()
        conn = f"c{rng.randrange(40)}"
        action = rng.randrange(4)
        if action == 0 and conn not in t:
            client = f"h{rng.randrange(5)}"
            admitted, evicted = t.admit(conn, client, now)
            if admitted:
                clients[conn] = client
            if evicted is not None:
                assert evicted not in t, (seed, step)
        elif action == 1:
            t.forget(conn)
        elif action == 2:
            t.query_done(conn, now)
        else:
            t.unfinished(conn, now, pending=rng.random() < 0.5)
        held = list(t)
        assert len(held) <= 8, (seed, step)
        for client in set(clients.values()):
            assert sum(clients[c] == client for c in held) <= 3, (seed, step)
        for c in held:
            due = t.deadline(c)
            assert due is not None, (seed, step)
            assert t.expired(c, due) is not None, (seed, step)


# ------------------------------------------------------------------ real sockets


@contextlib.asynccontextmanager
async def slow_clients(
    srv: DnsServer, hosts: list[str]
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """One connection from each of ``hosts``, each holding the first byte of a frame."""
    host, port = srv.address
    held = []
    try:
        for source in hosts:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(source, 0)), WAIT_S
            )
            held.append((reader, writer))
            writer.write(b"\x00")
            with contextlib.suppress(ConnectionError):  # refused: closed already
                await writer.drain()
        yield held
    finally:
        for _, writer in held:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def real_client_answered(srv: DnsServer, qid: int) -> None:
    host, port = srv.address
    q = query(qid=qid)
    reply = await dns.asyncquery.tcp(q, host, timeout=WAIT_S, port=port)
    assert reply.id == qid, reply.to_text()
    assert reply.answer, reply.to_text()


@pytest.mark.asyncio
async def test_slow_clients_holding_every_connection_do_not_lock_out_a_real_client() -> None:
    """The issue's attack: as many slow connections as the server allows, from many
    addresses. A real client gets an answer, and the slow one idle longest gave way."""
    config = DnsServerConfig("127.0.0.1", 0, max_tcp_connections=16)
    async with running(config) as srv:
        hosts = [f"127.0.0.{2 + n}" for n in range(16)]
        async with slow_clients(srv, hosts) as held:
            await eventually(lambda: len(srv.tcp_connections) == 16, "16 slow connections")
            await real_client_answered(srv, qid=0x51)
            assert await read_until_closed(held[0][0]) == b""
            assert srv.tcp_stats.rejected == {"tcp_evicted": 1}
            await real_client_answered(srv, qid=0x52)


@pytest.mark.asyncio
async def test_one_address_cannot_take_every_connection() -> None:
    """The attack from one host, at the default limits (256 connections, 64 per client):
    past its 64th, its connections are refused, and others are served."""
    async with (
        running(DnsServerConfig("127.0.0.1", 0)) as srv,
        slow_clients(srv, ["127.0.0.2"] * 256) as held,
    ):
        await eventually(
            lambda: srv.tcp_stats.rejected.get("tcp_client_limit") == 192, "192 refusals"
        )
        assert len(srv.tcp_connections) == 64
        assert await read_until_closed(held[-1][0]) == b""
        await real_client_answered(srv, qid=0x53)


@pytest.mark.asyncio
async def test_a_frame_must_arrive_in_time_even_if_bytes_keep_coming() -> None:
    config = DnsServerConfig("127.0.0.1", 0, tcp_frame_timeout_s=0.3, tcp_idle_timeout_s=60)
    async with running(config) as srv:
        host, port = srv.address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT_S)
        message = frame(query(qid=7).to_wire())
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def dribble() -> None:  # the slow client's pace: a byte every 50 ms
            for byte in message[:-1]:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dribbling = asyncio.create_task(dribble())
        try:
            assert await read_until_closed(reader) == b""
            assert 0.25 <= loop.time() - started < WAIT_S
        finally:
            dribbling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await dribbling
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        assert srv.tcp_stats.rejected == {"tcp_frame_timeout": 1}
        # A client that sends its frame at once is answered as before.
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT_S)
        writer.write(message)
        assert dns.message.from_wire(await read_frame(reader)).id == 7
        writer.close()
        await writer.wait_closed()


def test_loopback_aliases_are_usable() -> None:
    """The tests above play several hosts with 127.0.0.x, which Linux routes to lo."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.9", 0))
