"""UDP and TCP serving of a zone (the IO adapter of ``dnsserver``).

Theory of operation. ``DnsServer.zone`` is the ``Zone`` it answers from; the agent updates
it in place between queries (same thread, one synchronous call per update), or replaces it.
UDP answers inside ``datagram_received``: no task, no future, no logging per query. One
query in ``LATENCY_SAMPLE_EVERY`` is timed (answer built and handed to the kernel) into a
fixed-bucket histogram, a latency view that costs the other queries one counter test.

TCP (RFC 7766) reads 2-byte length-framed messages, answers pipelined queries in order on
the same connection, closes a connection idle for ``tcp_idle_timeout_s``, and refuses
connections past ``max_tcp_connections`` so that a slow or hostile client cannot hold every
socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from time import perf_counter_ns
from typing import cast

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone

log = logging.getLogger("meshd.dns")


@dataclass(frozen=True, slots=True)
class DnsServerConfig:
    host: str
    port: int
    tcp_idle_timeout_s: float = 10.0
    max_tcp_connections: int = 256
    # Several processes may share the port (SO_REUSEPORT): the kernel spreads queries.
    reuse_port: bool = False


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


class _Tcp(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if len(self.server.tcp_connections) >= self.server.config.max_tcp_connections:
            self.server.tcp_stats.reject("tcp_connection_limit")
            self.transport.abort()
            return
        self.server.tcp_connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.tcp_connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.server.config.tcp_idle_timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_idle()
        stats = self.server.tcp_stats
        while len(self.buffer) >= 2:
            length = (self.buffer[0] << 8) | self.buffer[1]
            if length < 12:
                stats.reject("tcp_length")
                assert self.transport is not None
                self.transport.close()
                return
            if len(self.buffer) < 2 + length:
                return
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            try:
                reply = respond(self.server.zone, message, False, stats)
            except Exception:
                stats.reject("internal")
                log.exception("internal error answering a TCP query")
                reply = None
            if reply is not None and self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)


class DnsServer:
    """Serves ``zone`` on one host:port over UDP and TCP."""

    def __init__(self, config: DnsServerConfig, zone: Zone) -> None:
        self.config = config
        self.zone = zone
        self.udp_stats = QueryStats()
        self.tcp_stats = QueryStats()
        self.tcp_connections: set[_Tcp] = set()
        self.latency = LatencyHistogram()
        self.seen = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); useful when the configured port was 0."""
        assert self._udp is not None
        host, port = self._udp.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen for DNS on UDP {self.config.host}:"
                          f"{self.config.port}: {exc.strerror}") from None  # fmt: skip
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=sock)
        self._udp = transport
        # With port 0, TCP must take the same port UDP was given.
        port = self.address[1]
        try:
            self._tcp = await loop.create_server(
                lambda: _Tcp(self),
                self.config.host,
                port,
                family=family,
                reuse_address=True,
                reuse_port=self.config.reuse_port or None,
            )
        except OSError:
            transport.close()
            raise

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self.tcp_connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._tcp.wait_closed()
