"""DNS over TCP (RFC 7766): length-framed, pipelined, bounded.

Each connection reads 2-byte length-prefixed messages and answers them in order. Rules:

- a frame shorter than a DNS header closes the connection (counted as ``tcp_length``);
- who may connect and for how long is ``tcp_table.TcpTable``'s call: a connection must
  complete a query within ``tcp_idle_timeout_s`` of opening or of its previous query, and a
  frame within ``tcp_frame_timeout_s`` of its first byte (``tcp_frame_timeout``); a client
  address holds at most ``max_tcp_connections_per_client`` (``tcp_client_limit``); when
  ``max_tcp_connections`` are open, a new one replaces the one idle longest
  (``tcp_evicted``). One timer per connection, re-armed only when its deadline comes
  earlier: a completed query moves the deadline later, and the timer, when it fires early,
  looks again;
- backpressure: when the kernel stops taking our answers (the client does not read), the
  transport calls ``pause_writing``; the connection then stops reading until
  ``resume_writing``, and queries already buffered wait, so a client that never reads
  cannot make the server hold more than the transport's high-water mark of answers. It is
  then idle: it completes no query, and is closed at its idle deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from dnsserver.query import QueryStats, respond
from dnsserver.tcp_table import TcpTable
from dnsserver.zone import Zone

log = logging.getLogger("meshd.dns")


class TcpHost(Protocol):
    """What a TCP connection needs from the server that accepted it: the zone to answer
    from (read per query, since the server may replace it), the counters and the table of
    open connections. Typed here so that this module need not import the server."""

    @property
    def zone(self) -> Zone: ...

    @property
    def tcp_stats(self) -> QueryStats: ...

    @property
    def tcp_table(self) -> TcpTable[TcpConnection]: ...


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpHost) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        now = asyncio.get_running_loop().time()
        admitted, evicted = self.server.tcp_table.admit(self, client, now)
        if not admitted:
            self.server.tcp_stats.reject("tcp_client_limit")
            self.transport.abort()
            return
        if evicted is not None:
            self.server.tcp_stats.reject("tcp_evicted")
            evicted.drop()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.tcp_table.forget(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def drop(self) -> None:
        """Close at once, without flushing what the client has not read."""
        self.server.tcp_table.forget(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def _arm(self) -> None:
        due = self.server.tcp_table.deadline(self)
        if due is None or (self.timer is not None and self.timer_at <= due):
            return  # gone, or the timer fires no later and looks again then
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = due
        self.timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        table = self.server.tcp_table
        reason = table.expired(self, asyncio.get_running_loop().time())
        if reason is None:
            self._arm()
            return
        if reason == "frame":
            self.server.tcp_stats.reject("tcp_frame_timeout")
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() == 0:
            table.forget(self)
            transport.close()
        else:
            self.drop()  # answers it does not read: nothing to flush them to

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
        if self.transport is None or self.transport.is_closing():
            return
        self.buffer += data
        self._answer_buffered()

    def _answer_buffered(self) -> None:
        stats = self.server.tcp_stats
        table = self.server.tcp_table
        now = asyncio.get_running_loop().time()
        while len(self.buffer) >= 2 and not self.paused:
            length = (self.buffer[0] << 8) | self.buffer[1]
            if length < 12:
                stats.reject("tcp_length")
                if self.transport is not None:
                    self.transport.close()
                return
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            try:
                reply = respond(self.server.zone, message, False, stats)
            except Exception:  # a bug of ours must not stop the server: count it
                stats.reject("internal")
                log.exception("internal error answering a TCP query")
                reply = None
            table.query_done(self, now)
            if reply is not None and self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)
        table.unfinished(self, now, self._frame_open())
        self._arm()

    def _frame_open(self) -> bool:
        """The buffer starts with a frame that has not fully arrived."""
        n = len(self.buffer)
        return n > 0 and (n < 2 or n < 2 + ((self.buffer[0] << 8) | self.buffer[1]))
