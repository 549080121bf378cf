"""DNS over TCP (RFC 7766): length-framed, pipelined, bounded.

Each connection reads 2-byte length-prefixed messages and answers them in order. Rules:

- a frame shorter than a DNS header closes the connection (counted as ``tcp_length``);
- a connection idle for ``tcp_idle_timeout_s`` is closed; connections past
  ``max_tcp_connections`` are closed at once (``tcp_connection_limit``);
- backpressure: when the kernel stops taking our answers (the client does not read), the
  transport calls ``pause_writing``; the connection then stops reading until
  ``resume_writing``, and queries already buffered wait, so a client that never reads
  cannot make the server hold more than the transport's high-water mark of answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone

log = logging.getLogger("meshd.dns")


class TcpLimits(Protocol):
    """The settings a TCP connection reads (``server.DnsServerConfig`` has them)."""

    @property
    def tcp_idle_timeout_s(self) -> float: ...

    @property
    def max_tcp_connections(self) -> int: ...


class TcpHost(Protocol):
    """What a TCP connection needs from the server that accepted it: the zone to answer
    from (read per query, since the server may replace it), the counters, the set of open
    connections and the limits. Typed here so that this module need not import the server."""

    @property
    def zone(self) -> Zone: ...

    @property
    def tcp_stats(self) -> QueryStats: ...

    @property
    def tcp_connections(self) -> set[TcpConnection]: ...

    @property
    def config(self) -> TcpLimits: ...


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpHost) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's.
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

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._answer_buffered()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_idle()
        self._answer_buffered()

    def _answer_buffered(self) -> None:
        stats = self.server.tcp_stats
        while len(self.buffer) >= 2 and not self.paused:
            length = (self.buffer[0] << 8) | self.buffer[1]
            if length < 12:
                stats.reject("tcp_length")
                if self.transport is not None:
                    self.transport.close()
                return
            if len(self.buffer) < 2 + length:
                return
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            try:
                reply = respond(self.server.zone, message, False, stats)
            except Exception:  # a bug of ours must not stop the server: count it
                stats.reject("internal")
                log.exception("internal error answering a TCP query")
                reply = None
            if reply is not None and self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)
