"""The asyncio pump of the SWIM core: timers, datagrams in and out, events to the agent.

``SwimPump`` owns one ``Membership`` (``mesh.swim.membership``) and does only IO around it,
as aioquic's protocol does around its connection: feed ``receive``, send what
``messages_to_send`` returns, sleep until ``get_timer()`` (or until a datagram arrives),
call ``handle_timer``, and hand every event to ``on_event``. Sending is fire and forget:
each datagram is one ``Swim`` RPC with a short deadline, and a failed one is simply a lost
datagram, which SWIM is built to tolerate. At shutdown, ``leave`` broadcasts our ``Left``
and pumps until the core says it has been told (bounded), so peers drop us at once instead
of suspecting us.

With TLS a ``SwimAuth`` (``mesh.security.swim_claims``) stands between the wire and the core: what
comes in is admitted claim by claim, what goes out gets this agent's proofs, and a
push-pull carries the signing certificates behind its members' proofs. Every dropped
datagram or claim is counted through ``reject`` (the ring's ``swim:<reason>`` counters).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from mesh.security.swim_claims import CERTIFICATES_RESEND_S, SwimAuth
from mesh.swim.membership import Membership
from mesh.swim.messages import Event, PushPull
from mesh.transport.gossip import Ring
from mesh.wire.codec import CodecError
from mesh.wire.swim_codec import from_pb, to_pb, trim
from mesh.wire.v1 import gossip_pb2 as pb

log = logging.getLogger("meshd.swim")

Sender = Callable[[str, pb.SwimDatagram], Awaitable[bool]]


class Reject(Protocol):
    """Counts ``count`` items dropped for ``reason`` (``swim:<reason>``)."""

    def __call__(self, reason: str, count: int = 1) -> None: ...


LEAVE_BUDGET_S = 2.0


class SwimPump:
    def __init__(
        self,
        membership: Membership,
        send: Sender,
        on_event: Callable[[Event], None],
        auth: SwimAuth | None = None,
        reject: Reject = lambda reason, count=1: None,
    ) -> None:
        self.membership = membership
        self.send = send
        self.on_event = on_event
        self.auth = auth
        self.reject = reject
        self._certificates_sent: dict[str, float] = {}
        self.send_failures = 0
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def over_ring(
        cls, membership: Membership, ring: Ring, on_event: Callable[[Event], None]
    ) -> SwimPump:
        """SWIM datagrams as the ring's ``Swim`` RPCs; with TLS (the ring has a seal) every
        claim signed by the cluster that makes it; drops counted as ``swim:<reason>``."""

        def reject(reason: str, count: int = 1) -> None:
            ring.stats.reject(f"swim:{reason}", count)

        me = membership.me.id
        auth = None if ring.seal is None else SwimAuth(ring.seal, me, reject)
        return cls(membership, ring.send_swim, on_event, auth, reject)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def start(self, seeds: list[str]) -> None:
        self.membership.start(self._now(), seeds)
        self._flush()

    def join(self, seeds: list[str]) -> None:
        self.membership.join(seeds, self._now())
        self._flush()
        self._wake.set()

    def reached(self, addresses: list[str]) -> None:
        """The ring just exchanged with ``addresses``: dead members there rejoin now."""
        self.membership.reached(addresses, self._now())
        self._flush()

    def receive(self, datagram: pb.SwimDatagram, source: str) -> None:
        extra = trim(datagram)
        if extra:
            self.reject("too_many_members", extra)
        try:
            message = from_pb(datagram)
        except CodecError as exc:
            self.reject("malformed")
            log.debug("dropped a SWIM datagram from %s: %s", source, exc)
            return
        if self.auth is not None:
            certificates = datagram.push_pull.certificates if isinstance(message, PushPull) else ()
            message = self.auth.admit(message, certificates, time.time())
        refused = dict(self.membership.refused)
        self.membership.receive(message, source, self._now())
        for reason, count in self.membership.refused.items():
            if count > refused.get(reason, 0):
                self.reject(reason)  # once a datagram and reason: its sender is the suspect
        self._flush()
        self._wake.set()  # the next timer may be earlier now

    async def run(self) -> None:
        while True:
            due = self.membership.get_timer()
            delay = math.inf if due is None else max(0.0, due - self._now())
            self._wake.clear()
            if delay > 0:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
                # that comes as the event is set, and under load (datagrams all the time)
                # this loop then never ended, nor the agent's stop waiting for it.
                try:
                    async with asyncio.timeout(None if delay == math.inf else delay):
                        await self._wake.wait()
                    continue  # a datagram arrived: recompute the timer
                except TimeoutError:
                    pass
            self.membership.handle_timer(self._now())
            self._flush()

    def _flush(self) -> None:
        if self.auth is not None and self.auth.keys_changed():
            self.membership.renew(self._now())
        for address, message in self.membership.messages_to_send(self._now()):
            if self.auth is not None:
                message = self.auth.sign(message)
            datagram = to_pb(message)
            if self.auth is not None and isinstance(message, PushPull):
                everyone = self._certificates_due(address)
                certificates = self.auth.certificates(message, time.time(), everyone)
                datagram.push_pull.certificates.extend(certificates)
            task = asyncio.get_running_loop().create_task(self._send(address, datagram))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        while (event := self.membership.next_event()) is not None:
            self.on_event(event)

    def _certificates_due(self, address: str) -> bool:
        now = self._now()
        last = self._certificates_sent.get(address)
        if last is not None and now - last < CERTIFICATES_RESEND_S:
            return False
        if len(self._certificates_sent) >= 4096:
            self._certificates_sent.clear()
        self._certificates_sent[address] = now
        return True

    async def _send(self, address: str, datagram: pb.SwimDatagram) -> None:
        if not await self.send(address, datagram):
            self.send_failures += 1

    async def leave(self) -> None:
        """Tell the ring we are going (bounded by ``LEAVE_BUDGET_S``)."""
        self.membership.leave(self._now())
        self._flush()
        deadline = self._now() + LEAVE_BUDGET_S
        while not self.membership.leave_done and self._now() < deadline:
            due = self.membership.get_timer()
            await asyncio.sleep(min(0.05, max(0.0, (due or self._now()) - self._now())))
            self.membership.handle_timer(self._now())
            self._flush()
        await asyncio.gather(*self._sending, return_exceptions=True)
