"""UDP and TCP serving of a zone (the IO adapter of ``dnsserver``).

Theory of operation. ``DnsServer.zone`` is the ``Zone`` it answers from; the agent updates
it in place between queries (same thread, one synchronous call per update), or replaces it.
UDP answers inside ``datagram_received``: no task, no future, no logging per query. One
query in ``LATENCY_SAMPLE_EVERY`` is timed (answer built and handed to the kernel) into a
fixed-bucket histogram, a latency view that costs the other queries one counter test.

Where the C extension ``dnsserver._fastpath`` is built (the normal case), UDP skips the
event loop's datagram protocol: the socket's readable callback is a ``_fastpath.Reader``
(C, called by the loop with no Python frame between), which reads up to 64 queries per
recvmmsg(2), answers them as ``respond`` would (and calls ``respond`` for anything unusual),
and sends the answers with one sendmmsg(2). TCP is in ``dnsserver.tcp``.

Queries come first: long work on the same loop (a zone rebuild applies its updates in
batches of about 2 ms) calls ``serve_waiting`` between its steps, which answers what waits
on the UDP socket at once instead of when the loop next turns (a rebuild slice holds the loop
up to 20 ms, ``mesh.daemon.rebuilding``). The zone is whole at every such call (each service
changes in one step), so a query sees a service before or after its change, never half.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from dataclasses import dataclass
from time import perf_counter_ns
from types import ModuleType
from typing import Any, cast

from dnsserver.query import QueryStats, respond
from dnsserver.tcp import TcpConnection
from dnsserver.tcp_table import TcpTable
from dnsserver.zone import Zone

_fastpath: ModuleType | None
try:
    from dnsserver import _fastpath
except ImportError:  # not compiled here: the pure-Python UDP path answers
    _fastpath = None

log = logging.getLogger("meshd.dns")


@dataclass(frozen=True, slots=True)
class DnsServerConfig:
    host: str
    port: int
    # DNS over TCP (``tcp_table``): a query within 10 s of opening or of the last one, a
    # frame within 3 s of its first byte, 64 connections per client address, 256 in all
    # (when full, a new connection replaces the one idle longest).
    tcp_idle_timeout_s: float = 10.0
    tcp_frame_timeout_s: float = 3.0
    max_tcp_connections: int = 256
    max_tcp_connections_per_client: int = 64
    # Several processes may share the port (SO_REUSEPORT): the kernel spreads queries.
    reuse_port: bool = False
    # Answer UDP through the C fast path when it is built (False: the pure-Python path).
    fastpath: bool = True
    # The scheduler time slice of the thread that starts the server, its loop's (0: the
    # kernel's default). See ``_fastpath_sched.c``: a --dns-workers process asks for a short
    # one, so that a query preempts the agent on a shared core instead of waiting its slice.
    slice_ns: int = 0


LATENCY_SAMPLE_EVERY = 64
# Upper bounds of the latency buckets, in nanoseconds (the last bucket is +Inf).
LATENCY_BUCKETS_NS = (5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000)


class LatencyHistogram:
    """Counts of sampled response times per bucket, and their sum (seconds)."""

    __slots__ = ("counts", "sum_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_NS) + 1)
        self.sum_s = 0.0

    def observe_ns(self, elapsed_ns: int) -> None:
        index = 0
        for bound in LATENCY_BUCKETS_NS:
            if elapsed_ns <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.sum_s += elapsed_ns / 1e9


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        server = self.server
        server.seen += 1
        timed = not server.seen % LATENCY_SAMPLE_EVERY
        if timed:
            started = perf_counter_ns()
        try:
            reply = respond(server.zone, data, True, server.udp_stats)
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)
        except Exception:  # a bug of ours must not stop the server: count it, drop the query
            server.udp_stats.reject("internal")
            log.exception("internal error answering a UDP query")
            return
        if timed:
            server.latency.observe_ns(perf_counter_ns() - started)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        self.server.udp_stats.reject("icmp")


class DnsServer:
    """Serves ``zone`` on one host:port over UDP and TCP."""

    def __init__(self, config: DnsServerConfig, zone: Zone) -> None:
        self.config = config
        self._zone = zone
        self.udp_stats = QueryStats()
        self.tcp_stats = QueryStats()
        self.tcp_table: TcpTable[TcpConnection] = TcpTable(
            config.max_tcp_connections,
            config.max_tcp_connections_per_client,
            config.tcp_idle_timeout_s,
            config.tcp_frame_timeout_s,
        )
        self.latency = LatencyHistogram()
        self.seen = 0
        self._sock: socket.socket | None = None
        self._fast_fd: int | None = None
        self._reader: Any = None  # the _fastpath.Reader on the UDP socket, if any
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.slice_set = False  # whether the loop's thread got ``config.slice_ns``

    @property
    def zone(self) -> Zone:
        """The zone answered from; assigning another one answers from it at once."""
        return self._zone

    @zone.setter
    def zone(self, zone: Zone) -> None:
        self._zone = zone
        if self._reader is not None:
            self._reader.zone = zone

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); useful when the configured port was 0."""
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def tcp_connections(self) -> set[TcpConnection]:
        """The open TCP connections (a copy)."""
        return set(self.tcp_table)

    @property
    def uses_fastpath(self) -> bool:
        return self._fast_fd is not None

    async def start(self) -> None:
        """Bind UDP and TCP on one port. With port 0, the kernel picks the UDP port and TCP
        takes the same number; if another program holds that number for TCP, try again."""
        self._ask_for_slice()
        attempts = 20 if self.config.port == 0 else 1
        for attempt in range(attempts):
            self._bind_udp()
            try:
                await self._bind_tcp()
                return
            except OSError as exc:
                self._close_udp()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise OSError(
                        exc.errno,
                        f"cannot listen for DNS on TCP {self.config.host}:{self.config.port}: "
                        f"{exc.strerror}",
                    ) from None

    def _ask_for_slice(self) -> None:
        if not self.config.slice_ns or _fastpath is None or not hasattr(_fastpath, "set_slice"):
            return
        failed = _fastpath.set_slice(self.config.slice_ns)
        if failed:  # a kernel before 6.12: the default slice
            log.info("DNS keeps the kernel's default time slice: %s", os.strerror(failed))
        self.slice_set = not failed

    def _bind_udp(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            if self.config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _grow_buffers(sock)
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot listen for DNS on UDP {self.config.host}:"
                f"{self.config.port}: {exc.strerror}",
            ) from None
        self._sock = sock
        if _fastpath is not None and self.config.fastpath:
            sock.setblocking(False)
            self._fast_fd = sock.fileno()
            self._reader = _fastpath.Reader(
                self._fast_fd,
                self._zone,
                self.udp_stats,
                respond,
                self._internal_error,
                self.latency.observe_ns,
                LATENCY_SAMPLE_EVERY,
                8,  # recvmmsg rounds per wakeup: then other callbacks get their turn
            )
            loop.add_reader(self._fast_fd, self._reader)

    async def _bind_tcp(self) -> None:
        loop = asyncio.get_running_loop()
        if self._fast_fd is None:
            assert self._sock is not None
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=self._sock)
            self._udp = transport
        self._tcp = await loop.create_server(
            lambda: TcpConnection(self),
            self.config.host,
            self.address[1],
            family=self._family,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
        )

    @property
    def _family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.config.host else socket.AF_INET

    def serve_waiting(self) -> int:
        """Answer the UDP queries waiting now, from a caller's step between two zone updates
        (non-blocking: with nothing waiting, one recvmmsg(2) that finds none). Only on the
        fast path; the pure-Python path's datagrams wait for the loop. Returns the count of
        wakeups served (0 or 1)."""
        if self._reader is None:
            return 0
        self._reader()
        return 1

    def _internal_error(self, exc: BaseException | None) -> None:
        """A bug of ours while answering: count it and log it; the server goes on."""
        self.udp_stats.reject("internal")
        log.error("internal error answering a UDP query", exc_info=exc or True)

    def _close_udp(self) -> None:
        if self._fast_fd is not None:
            asyncio.get_running_loop().remove_reader(self._fast_fd)
            self._fast_fd = None
            self._reader = None
        if self._udp is not None:
            self._udp.close()  # closes the socket too
            self._udp = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None

    async def close(self) -> None:
        self._close_udp()
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self.tcp_connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._tcp.wait_closed()


SOCKET_BUFFER_BYTES = 4 << 20
# Linux socket options the socket module does not export (asm-generic/socket.h).
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


def _grow_buffers(sock: socket.socket) -> None:
    """Room for bursts: a few MiB of queued datagrams instead of the ~200 KiB default.

    SO_RCVBUFFORCE passes the system cap when we may (root, CAP_NET_ADMIN); otherwise the
    kernel clamps SO_RCVBUF to net.core.rmem_max, which is still the best we can do.
    """
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER_BYTES)
