"""The asyncio adapter of the DNS server, on real loopback sockets.

Every socket and transport a test opens is closed by the test (pytest runs with
``filterwarnings=error``, so a leaked one fails as a ResourceWarning). Waits are bounded
by ``asyncio.wait_for``; nothing sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
from collections.abc import AsyncIterator, Callable

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import pytest_asyncio

from dnsserver import server as server_module
from dnsserver import tcp as tcp_module
from dnsserver.query import QueryStats, respond
from dnsserver.server import DnsServer, DnsServerConfig
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, Zone, build_zone

WAIT_S = 5.0
WEB_NAME = "web.shop.svc.clusterset.local."
DB_NAME = "db.shop.svc.clusterset.local."
BIG_NAME = "big.shop.svc.clusterset.local."


def web(*addresses: str) -> ServiceRecords:
    return ServiceRecords("shop", "web", False, addresses, (("http", "TCP", 80),))


def headless(name: str, count: int) -> ServiceRecords:
    endpoints = tuple(
        HeadlessEndpoint(f"c{n % 3}", (f"10.{4 + n // 250}.{n % 250}.{1 + n % 5}",))
        for n in range(count)
    )
    return ServiceRecords(
        "shop",
        name,
        True,
        tuple(a for ep in endpoints for a in ep.addresses),
        (("http", "TCP", 8080),),
        endpoints,
    )


def make_zone(*addresses: str, serial: int = 1) -> Zone:
    services = [web(*(addresses or ("10.1.0.10",))), headless("db", 3), headless("big", 60)]
    return build_zone("clusterset.local", services, serial=serial, ttl=5)


ZONE = make_zone()


@contextlib.asynccontextmanager
async def running(config: DnsServerConfig, zone: Zone = ZONE) -> AsyncIterator[DnsServer]:
    srv = DnsServer(config, zone)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


@pytest_asyncio.fixture(params=[True, False], ids=["fastpath", "python"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[DnsServer]:
    """Every server test runs on both UDP paths: the C fast path and pure Python."""
    async with running(DnsServerConfig("127.0.0.1", 0, fastpath=request.param)) as srv:
        assert srv.uses_fastpath is request.param
        yield srv


def query(
    name: str = WEB_NAME,
    qtype: str = "A",
    qid: int = 1,
    use_edns: int | None = None,
    payload: int | None = None,
) -> dns.message.QueryMessage:
    return dns.message.make_query(name, qtype, id=qid, use_edns=use_edns, payload=payload)


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    length = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), WAIT_S))[0]
    return await asyncio.wait_for(reader.readexactly(length), WAIT_S)


@contextlib.asynccontextmanager
async def tcp_connection(
    srv: DnsServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = srv.address
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT_S)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What is left on the connection up to EOF (a reset counts as EOF)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT_S)
    except ConnectionResetError:
        return b""


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition()`` until it holds (bounded); for server-side state after a close."""

    for _ in range(int(WAIT_S / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


async def tcp_ask(srv: DnsServer, q: dns.message.Message) -> dns.message.Message:
    host, port = srv.address
    return await dns.asyncquery.tcp(q, host, timeout=WAIT_S, port=port)


async def udp_ask(srv: DnsServer, q: dns.message.Message) -> dns.message.Message:
    host, port = srv.address
    return await dns.asyncquery.udp(q, host, timeout=WAIT_S, port=port)


# ------------------------------------------------------------------------ tests


@pytest.mark.asyncio
async def test_address_is_the_bound_port(server: DnsServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1"
    assert port != 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        (WEB_NAME, "A", dns.rcode.NOERROR),
        (WEB_NAME, "SRV", dns.rcode.NOERROR),
        (DB_NAME, "SRV", dns.rcode.NOERROR),
        ("clusterset.local.", "SOA", dns.rcode.NOERROR),
        ("nothing.clusterset.local.", "A", dns.rcode.NXDOMAIN),
        ("svc.clusterset.local.", "A", dns.rcode.NOERROR),
        ("example.com.", "A", dns.rcode.REFUSED),
    ],
)
async def test_udp_and_tcp_give_the_same_answer(
    server: DnsServer, name: str, qtype: str, rcode: int
) -> None:
    for edns in (None, 0):
        q = query(name, qtype, qid=0x5151, use_edns=edns)
        by_udp = await udp_ask(server, q)
        by_tcp = await tcp_ask(server, q)
        assert by_udp.rcode() == by_tcp.rcode() == rcode
        assert by_udp == by_tcp  # same flags and sections (records compared as sets)
        assert q.is_response(by_udp)
    assert sum(server.udp_stats.answered.values()) == 2
    assert sum(server.tcp_stats.answered.values()) == 2


@pytest.mark.asyncio
async def test_big_answer_truncated_over_udp_is_complete_over_tcp(server: DnsServer) -> None:
    host, port = server.address
    q = query(BIG_NAME, "SRV", use_edns=0, payload=4096)
    by_udp = await udp_ask(server, q)
    assert by_udp.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in by_udp.answer) < 60  # at most the endpoints that fit
    answer, used_tcp = await dns.asyncquery.udp_with_fallback(q, host, timeout=WAIT_S, port=port)
    assert used_tcp
    assert not answer.flags & dns.flags.TC
    assert len(answer.answer[0]) == 60
    assert server.udp_stats.truncated == 2


@pytest.mark.asyncio
async def test_pipelined_tcp_queries_are_answered_in_order(server: DnsServer) -> None:
    queries = [
        query(BIG_NAME, "SRV", qid=1),  # the long one first
        query(WEB_NAME, "A", qid=2),
        query("nothing.clusterset.local.", "A", qid=3),
        query("example.com.", "A", qid=4),
    ]
    async with tcp_connection(server) as (reader, writer):
        writer.write(b"".join(frame(q.to_wire()) for q in queries))  # one write
        await writer.drain()
        replies = [dns.message.from_wire(await read_frame(reader)) for _ in queries]
        assert [r.id for r in replies] == [1, 2, 3, 4]
        for q, r in zip(queries, replies, strict=True):
            assert q.is_response(r)
        assert [r.rcode() for r in replies] == [
            dns.rcode.NOERROR,
            dns.rcode.NOERROR,
            dns.rcode.NXDOMAIN,
            dns.rcode.REFUSED,
        ]
        assert len(replies[0].answer[0]) == 60
        # The connection stays open: a frame delivered a byte at a time is answered too.
        for byte in frame(query(WEB_NAME, "AAAA", qid=5).to_wire()):
            writer.write(bytes([byte]))
            await writer.drain()
        assert dns.message.from_wire(await read_frame(reader)).id == 5


@pytest.mark.asyncio
@pytest.mark.parametrize("length", [0, 1, 11])
async def test_tcp_frame_shorter_than_a_header_closes_the_connection(
    server: DnsServer, length: int
) -> None:
    async with tcp_connection(server) as (reader, writer):
        writer.write(frame(query(qid=9).to_wire()))
        assert dns.message.from_wire(await read_frame(reader)).id == 9
        writer.write(struct.pack("!H", length) + b"\x00" * length + frame(query().to_wire()))
        await writer.drain()
        assert await read_until_closed(reader) == b""  # and the query after it is not answered
    assert server.tcp_stats.rejected == {"tcp_length": 1}
    await eventually(lambda: not server.tcp_connections, "the connection to be forgotten")


@pytest.mark.asyncio
async def test_tcp_message_dropped_by_respond_keeps_the_connection(server: DnsServer) -> None:
    async with tcp_connection(server) as (reader, writer):
        response = bytearray(query(qid=1).to_wire())
        response[2] |= 0x80  # QR=1: dropped without a reply
        writer.write(frame(bytes(response)) + frame(query(qid=2).to_wire()))
        assert dns.message.from_wire(await read_frame(reader)).id == 2
    assert server.tcp_stats.rejected == {"response": 1}


@pytest.mark.asyncio
async def test_idle_tcp_connection_is_closed() -> None:
    config = DnsServerConfig("127.0.0.1", 0, tcp_idle_timeout_s=0.2)
    async with running(config) as srv, tcp_connection(srv) as (reader, writer):
        loop = asyncio.get_running_loop()
        writer.write(frame(query(qid=3).to_wire()))
        assert dns.message.from_wire(await read_frame(reader)).id == 3
        answered = loop.time()
        assert await read_until_closed(reader) == b""
        assert loop.time() - answered >= 0.15
        await eventually(lambda: not srv.tcp_connections, "the idle connection to be forgotten")


@pytest.mark.asyncio
async def test_a_new_tcp_connection_replaces_the_one_idle_longest_when_full() -> None:
    """At the limit a new connection is served, and the connection whose last query is the
    oldest makes room (refusing it instead let idle or slow clients shut everyone out)."""
    config = DnsServerConfig("127.0.0.1", 0, max_tcp_connections=2)
    async with running(config) as srv, contextlib.AsyncExitStack() as stack:
        held = []
        for qid in (1, 2):
            reader, writer = await stack.enter_async_context(tcp_connection(srv))
            writer.write(frame(query(qid=qid).to_wire()))
            assert dns.message.from_wire(await read_frame(reader)).id == qid
            held.append((reader, writer))
        assert len(srv.tcp_connections) == 2
        # A third is answered; the first (idle longest) is closed by the server.
        reply = await tcp_ask(srv, query(qid=3))
        assert reply.id == 3
        assert await read_until_closed(held[0][0]) == b""
        assert srv.tcp_stats.rejected == {"tcp_evicted": 1}
        # The second still works.
        reader, writer = held[1]
        writer.write(frame(query(qid=4).to_wire()))
        assert dns.message.from_wire(await read_frame(reader)).id == 4
        await eventually(lambda: len(srv.tcp_connections) == 1, "the third one to be gone")


@pytest.mark.asyncio
async def test_replacing_the_zone_changes_the_next_answer(server: DnsServer) -> None:
    def addresses(reply: dns.message.Message) -> set[str]:
        return {rd.address for rd in reply.answer[0]}

    assert addresses(await udp_ask(server, query())) == {"10.1.0.10"}
    server.zone = make_zone("10.9.0.1", "10.9.0.2", serial=2)
    assert addresses(await udp_ask(server, query())) == {"10.9.0.1", "10.9.0.2"}
    assert addresses(await tcp_ask(server, query())) == {"10.9.0.1", "10.9.0.2"}
    soa = await udp_ask(server, query("clusterset.local.", "SOA"))
    assert soa.answer[0][0].serial == 2
    # An open TCP connection sees the new zone on its next query as well.
    async with tcp_connection(server) as (reader, writer):
        writer.write(frame(query(qid=1).to_wire()))
        assert addresses(dns.message.from_wire(await read_frame(reader))) == {
            "10.9.0.1",
            "10.9.0.2",
        }
        server.zone = make_zone("10.9.0.3", serial=3)
        writer.write(frame(query(qid=2).to_wire()))
        assert addresses(dns.message.from_wire(await read_frame(reader))) == {"10.9.0.3"}
    # An unsynced zone: SERVFAIL for service names.
    server.zone = build_zone("clusterset.local", [], serial=4, synced=False)
    assert (await udp_ask(server, query())).rcode() == dns.rcode.SERVFAIL


@pytest.mark.asyncio
async def test_garbage_udp_datagrams_do_not_stop_the_server(server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    good = query(qid=0x7777).to_wire()
    response = bytearray(good)
    response[2] |= 0x80
    garbage: list[tuple[bytes, int | None]] = [
        (b"", None),
        (b"\x00", None),
        (b"\x12\x34" + b"\xff" * 9, None),
        (bytes(response), None),
        (b"\x00\x01" + b"\x00" * 10, dns.rcode.FORMERR),  # no question
        (
            b"\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
            dns.rcode.FORMERR,
        ),
        (good[:20], dns.rcode.FORMERR),
        (b"\x00\x03\x28\x00" + good[4:], dns.rcode.NOTIMP),  # UPDATE
        (bytes(range(256)) * 4, dns.rcode.FORMERR),  # a query with nonsense counts
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for data, _ in garbage:
            await loop.sock_sendto(sock, data, server.address)
        await loop.sock_sendto(sock, good, server.address)
        # Replies come back in order; the dropped ones produce nothing.
        expected = [rcode for _, rcode in garbage if rcode is not None] + [dns.rcode.NOERROR]
        got: list[dns.message.Message] = []
        while len(got) < len(expected):
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), WAIT_S)
            got.append(dns.message.from_wire(data))
        assert [m.rcode() for m in got] == expected
        assert got[-1].id == 0x7777
        assert {rd.address for rd in got[-1].answer[0]} == {"10.1.0.10"}
    assert server.udp_stats.rejected["short"] == 3
    assert server.udp_stats.rejected["response"] == 1
    assert (await udp_ask(server, query(qid=0x7778))).id == 0x7778


@pytest.mark.asyncio
async def test_internal_error_is_counted_and_does_not_stop_the_server(
    server: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = query("poison.clusterset.local.", "A", qid=0xDEAD).to_wire()

    def flaky(zone: Zone, q: bytes, udp: bool, stats: QueryStats) -> bytes | None:
        if q == poison:
            raise RuntimeError("simulated bug")
        return respond(zone, q, udp, stats)

    monkeypatch.setattr(server_module, "respond", flaky)
    monkeypatch.setattr(tcp_module, "respond", flaky)
    # The C path's reader takes its slow path when the socket is bound: bind again.
    await server.close()
    await server.start()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, poison, server.address)
        await loop.sock_sendto(sock, query(qid=1).to_wire(), server.address)
        data = await asyncio.wait_for(loop.sock_recv(sock, 65535), WAIT_S)
        assert dns.message.from_wire(data).id == 1
    assert server.udp_stats.rejected == {"internal": 1}
    async with tcp_connection(server) as (reader, writer):
        writer.write(frame(poison) + frame(query(qid=2).to_wire()))
        assert dns.message.from_wire(await read_frame(reader)).id == 2
    assert server.tcp_stats.rejected == {"internal": 1}


@pytest.mark.asyncio
async def test_tcp_answer_larger_than_a_frame_still_gets_a_reply() -> None:
    """A headless service with 600 endpoints: its SRV answer with glue is over 64 KiB."""
    zone = build_zone("clusterset.local", [headless("huge", 600)], serial=1)
    async with running(DnsServerConfig("127.0.0.1", 0), zone) as srv:
        q = query("huge.shop.svc.clusterset.local.", "SRV", qid=0x600)
        async with tcp_connection(srv) as (reader, writer):
            writer.write(frame(q.to_wire()))
            reply = dns.message.from_wire(await read_frame(reader))
            assert reply.id == 0x600
            assert reply.rcode() == dns.rcode.NOERROR
        # Either way the server keeps serving.
        assert (await tcp_ask(srv, query("clusterset.local.", "SOA", qid=7))).id == 7


@pytest.mark.asyncio
async def test_client_that_does_not_read_cannot_grow_server_buffers_without_bound() -> None:
    """Pipelined queries from a client that never reads its replies: the server must stop
    reading (asyncio flow control) rather than buffer every reply. Without it, 147 kB of
    queries for an 8 kB answer pin about 19 MB of memory per connection."""
    bound = 1 << 20
    loop = asyncio.get_running_loop()
    async with running(DnsServerConfig("127.0.0.1", 0)) as srv:
        q = frame(query(BIG_NAME, "SRV").to_wire())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, srv.address)
            with contextlib.suppress(TimeoutError):
                # Does not finish if the server stops reading: that is the point.
                await asyncio.wait_for(loop.sock_sendall(sock, q * 3000), 1.0)
            await eventually(lambda: bool(srv.tcp_connections), "the connection")
            [conn] = srv.tcp_connections
            assert conn.transport is not None
            most = 0
            for _ in range(50):  # watch the buffer for a while (0.5 s)
                most = max(most, conn.transport.get_write_buffer_size())
                if most > bound:
                    break
                await asyncio.sleep(0.01)
            assert most <= bound


@pytest.mark.asyncio
@pytest.mark.skipif(server_module._fastpath is None, reason="the C fast path is not built")
async def test_serve_waiting_answers_without_the_loop_turning() -> None:
    """A long step on the loop (a zone rebuild's batch) answers the queries that arrived
    meanwhile by calling ``serve_waiting``: the reply is sent before the loop turns."""
    async with running(DnsServerConfig("127.0.0.1", 0)) as srv:
        assert srv._sock is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            query = dns.message.make_query(WEB_NAME, "A")
            client.sendto(query.to_wire(), srv.address)
            # The loop does not turn from here on: only serve_waiting can answer.
            assert select.select([srv._sock], [], [], WAIT_S)[0], "query never arrived"
            assert srv.serve_waiting() == 1
            assert select.select([client], [], [], WAIT_S)[0], "no answer"
            reply = dns.message.from_wire(client.recv(4096))
        assert reply.id == query.id
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.10"]
        assert srv.serve_waiting() == 1  # nothing waiting: a no-op that does not block


@pytest.mark.asyncio
async def test_serve_waiting_leaves_python_path_queries_to_the_loop() -> None:
    """Without the fast path there is nothing to drain by hand: the datagram protocol
    answers when the loop turns, and ``serve_waiting`` says it served nothing."""
    async with running(DnsServerConfig("127.0.0.1", 0, fastpath=False)) as srv:
        assert srv.serve_waiting() == 0
        query = dns.message.make_query(WEB_NAME, "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=srv.address[1], timeout=WAIT_S)
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.10"]
