"""The C fast path answers exactly as ``dnsserver.query.respond`` does.

The fast path (``dnsserver._fastpath``) re-implements the common case of ``respond`` in C
and hands everything else to ``respond``. These tests feed both the same queries, each
against its own copy of one zone (rotation state lives in the zone), and require the same
bytes and the same counters; then they drive the socket's reader (``_fastpath.Reader``) on a
real socket with bursts larger than one recvmmsg batch, and call a reader directly to see
its sampling, its errors and a zone replaced under it.
"""

from __future__ import annotations

import asyncio
import random
import socket

import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver import server as server_module
from dnsserver.query import QueryStats, respond
from dnsserver.server import DnsServer, DnsServerConfig
from dnsserver.zone import HeadlessEndpoint, ServiceRecords, Zone, build_zone

_fastpath = server_module._fastpath


def test_the_fast_path_is_built() -> None:
    """Installation compiles it (setup.py); without it meshd is several times slower."""
    assert _fastpath is not None


def make_zone(synced: bool = True) -> Zone:
    endpoints = tuple(
        HeadlessEndpoint(
            "east" if i % 2 else "west",
            (f"10.2.{i // 200}.{i % 200 + 1}",),
            f"db-{i}" if i % 3 else None,
        )
        for i in range(70)
    )
    web = (*(f"10.1.0.{i}" for i in range(1, 13)), "fd00::1", "fd00::2")
    wide = tuple(f"fd00::1:{i:x}" for i in range(1, 41))
    services = [
        ServiceRecords("shop", "web", False, web, (("http", "TCP", 80), ("", "TCP", 8080))),
        ServiceRecords("shop", "db", True, (), (("pg", "TCP", 5432),), endpoints),
        ServiceRecords("shop", "one", False, ("10.3.0.1",), ()),
        # 32 of 40 AAAA a rotation: too long for 512 octets, so the slow path cuts it; the
        # rotation must advance once per query on either path.
        ServiceRecords("shop", "wide", False, wide, (), max_addresses=32),
    ]
    return build_zone("clusterset.local", services, serial=42, ttl=5, synced=synced)


WEB_POOL = (
    {f"10.1.0.{i}" for i in range(1, 13)}
    | {"fd00::1", "fd00::2"}
    | {
        "0 50 80 web.shop.svc.clusterset.local.",
        "0 50 8080 web.shop.svc.clusterset.local.",
        "0 100 80 web.shop.svc.clusterset.local.",
        "0 100 8080 web.shop.svc.clusterset.local.",
    }
)
NAMES = [
    "web.shop.svc.clusterset.local",
    "WEB.Shop.svc.clusterset.local",
    "_http._tcp.web.shop.svc.clusterset.local",
    "db.shop.svc.clusterset.local",
    "db-1.east.db.shop.svc.clusterset.local",
    "one.shop.svc.clusterset.local",
    "wide.shop.svc.clusterset.local",
    "missing.shop.svc.clusterset.local",
    "shop.svc.clusterset.local",
    "clusterset.local",
    "dns-version.clusterset.local",
    "example.com",
    "evilclusterset.local",
]
TYPES = ["A", "AAAA", "SRV", "TXT", "SOA", "NS", "MX", "AXFR", "ANY"]


def queries() -> list[bytes]:
    out = []
    for name in NAMES:
        for rdtype in TYPES:
            for edns, payload in ((-1, 0), (0, 512), (0, 1232), (0, 4096), (0, 100)):
                q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
                out.append(q.to_wire())
    return out


def both(
    zone_c: Zone, zone_py: Zone, q: bytes, stats_c: QueryStats, stats_py: QueryStats
) -> tuple[bytes | None, bytes | None]:
    assert _fastpath is not None
    return _fastpath.answer(zone_c, q, stats_c, respond), respond(zone_py, q, True, stats_py)


@pytest.mark.parametrize("synced", [True, False])
def test_same_bytes_and_counters_as_respond(synced: bool) -> None:
    zone_c, zone_py = make_zone(synced), make_zone(synced)
    stats_c, stats_py = QueryStats(), QueryStats()
    for round_ in range(3):  # several rounds: rotation must advance the same way
        for q in queries():
            fast, slow = both(zone_c, zone_py, q, stats_c, stats_py)
            assert fast == slow, (round_, dns.message.from_wire(q).question)
    for attr in ("answered", "rejected", "truncated"):
        assert getattr(stats_c, attr) == getattr(stats_py, attr), attr


@settings(
    max_examples=800, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    base=st.sampled_from(queries()),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 400),
)
def test_mutated_queries_agree(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    q = bytes(data[: max(cut, 0)] if cut < len(data) else data)
    zone_c, zone_py = make_zone(), make_zone()
    stats_c, stats_py = QueryStats(), QueryStats()
    fast, slow = both(zone_c, zone_py, q, stats_c, stats_py)
    assert fast == slow
    assert stats_c.answered == stats_py.answered
    assert stats_c.rejected == stats_py.rejected


@pytest.mark.asyncio
async def test_serve_answers_bursts_larger_than_a_batch() -> None:
    """300 queries sent at once (several recvmmsg batches): every one answered correctly."""
    zone = make_zone()
    server = DnsServer(DnsServerConfig("127.0.0.1", 0), zone)
    await server.start()
    assert server.uses_fastpath
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    pool = queries()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sent = {}
            for qid in range(300):
                q = bytearray(rng.choice(pool))
                q[0:2] = qid.to_bytes(2, "big")
                sent[qid] = bytes(q)
                await loop.sock_sendto(sock, bytes(q), server.address)
            got = {}
            while len(got) < len(sent):
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
                got[int.from_bytes(data[:2], "big")] = data
    finally:
        await server.close()
    reference = make_zone()
    for qid, q in sent.items():
        expected = respond(reference, q, True, QueryStats())
        assert expected is not None
        reply = dns.message.from_wire(got[qid])
        want = dns.message.from_wire(expected)
        assert reply.rcode() == want.rcode()
        if reply.question[0].name.labels[0].lower() != b"web":
            assert reply.answer == want.answer
        else:
            # web's addresses rotate: which 8 of the 12 depends on how often it was asked.
            assert [len(r) for r in reply.answer] == [len(r) for r in want.answer]
            assert {rd.to_text() for r in reply.answer for rd in r} <= WEB_POOL
    assert sum(server.udp_stats.answered.values()) == 300


class ReaderRig:
    """A bound UDP socket with a ``_fastpath.Reader`` on it (called directly, no loop), and
    a client socket. Loopback delivers a datagram within ``sendto``, so a query sent is
    waiting when the reader is called."""

    def __init__(self, zone: Zone, slow: object = respond, sample_every: int = 1) -> None:
        assert _fastpath is not None
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.setblocking(False)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.connect(self.server.getsockname())
        self.client.settimeout(5)
        self.stats = QueryStats()
        self.errors: list[BaseException | None] = []
        self.observed: list[int] = []
        self.reader = _fastpath.Reader(
            self.server.fileno(),
            zone,
            self.stats,
            slow,
            self.errors.append,
            self.observed.append,
            sample_every,
            8,
        )

    def ask(
        self, *qids: int, name: str = "one.shop.svc.clusterset.local."
    ) -> list[dns.message.Message]:
        for qid in qids:
            self.client.send(query_wire(name, qid))
        assert self.reader() is None
        return [dns.message.from_wire(self.client.recv(65535)) for _ in qids]

    def close(self) -> None:
        self.server.close()
        self.client.close()


def query_wire(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()


def test_reader_answers_what_waits_and_samples_its_time() -> None:
    rig = ReaderRig(make_zone(), sample_every=2)
    try:
        first = rig.ask(1, 2, 3)
        assert [m.id for m in first] == [1, 2, 3]
        assert {rd.address for rd in first[0].answer[0]} == {"10.3.0.1"}
        assert rig.observed == []  # the first call is not the sampled one
        rig.ask(4)
        assert len(rig.observed) == 1
        assert rig.observed[0] > 0
        assert rig.reader.wakeups == 2
        assert rig.errors == []
    finally:
        rig.close()


def test_reader_answers_from_a_replaced_zone() -> None:
    rig = ReaderRig(make_zone())
    other = build_zone(
        "clusterset.local", [ServiceRecords("shop", "one", False, ("10.9.9.9",), ())], serial=43
    )
    other.synced = True
    try:
        rig.reader.zone = other
        (reply,) = rig.ask(5)
        assert {rd.address for rd in reply.answer[0]} == {"10.9.9.9"}
        assert rig.reader.zone is other
        with pytest.raises(AttributeError):
            del rig.reader.zone
    finally:
        rig.close()


def test_reader_hands_a_bug_to_on_error_and_goes_on() -> None:
    def slow(zone: Zone, q: bytes, udp: bool, stats: QueryStats) -> bytes | None:
        raise RuntimeError("simulated bug")

    rig = ReaderRig(make_zone(), slow=slow)
    try:
        # A name not in the table goes to the slow path (respond), which fails; the query
        # after it is answered.
        rig.client.send(query_wire("poison.clusterset.local.", 9))
        (reply,) = rig.ask(6)
        assert reply.id == 6
        assert len(rig.errors) == 1
        assert isinstance(rig.errors[0], RuntimeError)
    finally:
        rig.close()


def test_reader_on_a_closed_socket_reports_the_error() -> None:
    rig = ReaderRig(make_zone())
    rig.server.close()
    try:
        assert rig.reader() is None
        assert len(rig.errors) == 1
        assert isinstance(rig.errors[0], OSError)
    finally:
        rig.client.close()


def test_reader_rejects_bad_settings() -> None:
    assert _fastpath is not None
    for sample_every, max_batches in ((0, 8), (64, 0)):
        with pytest.raises(ValueError, match="must be positive"):
            _fastpath.Reader(
                0, make_zone(), QueryStats(), respond, print, print, sample_every, max_batches
            )
    with pytest.raises(TypeError):
        _fastpath.Reader(0, make_zone(), QueryStats(), respond, print, print, 64, 8)(1)


def test_serve_still_answers_for_an_older_releases_python() -> None:
    """Releases before the Reader call ``_fastpath.serve`` from Python; an editable install
    hands them this extension, so a mixed ring's older agent must still answer."""
    assert _fastpath is not None
    rig = ReaderRig(make_zone())
    try:
        rig.client.send(query_wire("one.shop.svc.clusterset.local.", 11))
        errors: list[BaseException | None] = []
        read = _fastpath.serve(
            rig.server.fileno(), make_zone(), QueryStats(), respond, errors.append, 8
        )
        assert read == 1
        assert dns.message.from_wire(rig.client.recv(65535)).id == 11
        assert errors == []
    finally:
        rig.close()
