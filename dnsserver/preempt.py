"""Queries preempt a task step: while a step runs, a query's arrival interrupts it.

Theory of operation. ``dnsserver.queries_first`` answers waiting queries between the task
steps of the agent's loop, so a query that arrives during a step waits for the rest of it:
a gossip exchange, a manifest reload or a rebuild batch runs 0.3-0.7 ms at p99 on a small
host, and that wait was the tail of meshd's DNS under load (bench/RESULTS.md). Python runs
a signal's handler between two bytecodes of the main thread, so a signal sent when a query
arrives lets the loop answer it within microseconds, whatever Python code is running.

The UDP sockets have O_ASYNC set and no owner. ``Preemption.arm`` (before each step) makes
the loop's thread their owner (F_SETOWN_EX, F_OWNER_TID): the kernel then sends SIGIO to
that thread for each datagram queued. ``disarm`` (after the step)
sets the owner back to nobody, so an idle loop, which polls the sockets anyway, is never
signalled: two fcntl(2) calls per step, about 0.9 us, are the whole cost (toggling O_ASYNC
instead costs twice that: the kernel allocates and frees its fasync entry each time).
The handler answers through ``serve`` (``DnsServer.serve_waiting``), with the syscalls it
interrupted restarted (SA_RESTART, ``signal.siginterrupt``).

Why this is safe: answering reads the zone and nothing else of the agent's. The zone changes
only inside ``holding()`` (``DnsFront.apply``), where the handler declines (the apply ends by
answering what waited); the C reader refuses to re-enter itself (its buffers are static) and
reads once more for the call it refused; a handler never runs inside another (CPython would
nest them). A handler that runs late, after ``disarm``, does nothing. An error of ours in
the handler is kept and logged at ``disarm``, never raised into the code it interrupted.
At most ``SERVE_BUDGET_NS`` of answering from signals per step: a flood of queries slows a
step by a bounded amount, then waits for its end, as without preemption.

Only where it can work: the loop runs in the main thread (Python runs handlers there only),
on Linux, and nobody else handles SIGIO (an embedding program's handler is left alone);
otherwise ``available`` is False and queries wait for the step's end, as before. The
handler, once set, stays set: a SIGIO still pending after the last socket left is ignored
by it instead of killing the process (SIGIO's default action).

Adapter: it touches signal handling and socket flags, nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import struct
import threading
from collections.abc import Callable
from time import perf_counter_ns
from types import FrameType, TracebackType

__all__ = ["Preemption", "available", "holding"]

_F_SETOWN_EX = getattr(fcntl, "F_SETOWN_EX", 15)  # Linux; not exported by every Python
_F_OWNER_TID = 0
_NOBODY = struct.pack("ii", _F_OWNER_TID, 0)  # an owner of 0: the kernel sends no signal
_O_ASYNC = getattr(os, "O_ASYNC", 0)
_SIGIO = getattr(signal, "SIGIO", None)

log = logging.getLogger("meshd.dns")

# The time one step may spend answering from signals: then it runs to its end unsignalled,
# so a flood of queries slows the agent's work by a bounded amount (this, plus one answer of
# at most 512 datagrams) instead of starving it. At 10,000 queries/s a 2 ms step spends
# about 0.2 ms answering the 20 that arrive meanwhile.
SERVE_BUDGET_NS = 1_000_000

_armed: Preemption | None = None  # the preemption whose step runs now
_held = 0  # zone updates under way (``holding``)
_answering = False  # a handler under way: CPython runs handlers inside handlers


def _on_sigio(signum: int, frame: FrameType | None) -> None:
    global _answering
    armed = _armed
    if armed is None or _answering:
        return
    if _held:
        armed.declined += 1
        return
    _answering = True
    try:
        armed.answer()
    finally:
        _answering = False


def available() -> bool:
    """Whether SIGIO can preempt here: Linux, the main thread, SIGIO free or ours. Sets the
    handler (once) when it can."""
    if _SIGIO is None or not _O_ASYNC or threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(_SIGIO)
    if current is _on_sigio:
        return True
    if current not in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    signal.signal(_SIGIO, _on_sigio)
    signal.siginterrupt(_SIGIO, False)
    return True


class Preemption:
    """The UDP sockets of one loop that signal while a step runs, and what answers them.

    ``served``, ``declined`` (a zone update under way) and ``spent`` (steps that used up
    their ``SERVE_BUDGET_NS``) count what the signals did."""

    __slots__ = ("_failure", "_left", "_owner", "declined", "fds", "serve", "served", "spent")

    def __init__(self, serve: Callable[[], object]) -> None:
        self.serve = serve
        self.fds: list[int] = []
        self._owner = _NOBODY
        self._left = 0
        self._failure: BaseException | None = None
        self.served = self.declined = self.spent = 0

    def add(self, fd: int) -> None:
        """Signal this thread when ``fd`` (a UDP socket) receives during a step."""
        fcntl.fcntl(fd, _F_SETOWN_EX, _NOBODY)  # no signal until armed
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_ASYNC)
        self.fds.append(fd)
        self._owner = struct.pack("ii", _F_OWNER_TID, threading.get_native_id())

    def remove(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.remove(fd)
            with contextlib.suppress(OSError):  # closed already: nothing left to signal
                fcntl.fcntl(fd, _F_SETOWN_EX, _NOBODY)
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_ASYNC)

    def arm(self) -> None:
        """A step begins: its queries signal."""
        global _armed
        self._left = SERVE_BUDGET_NS
        self._own(self._owner)
        _armed = self

    def disarm(self) -> None:
        """The step ended: no more signals; a failure of the handler's is logged here."""
        global _armed
        _armed = None
        self._own(_NOBODY)
        failure, self._failure = self._failure, None
        if failure is not None:
            log.error("answering DNS from SIGIO", exc_info=failure)

    def answer(self) -> None:
        """One signal: answer what waits, within the step's budget."""
        self.served += 1
        started = perf_counter_ns()
        try:
            self.serve()
        except Exception as exc:  # a bug of ours: never into the code the signal interrupted
            self._failure = exc
        self._left -= perf_counter_ns() - started
        if self._left <= 0:
            self.spent += 1
            self._own(_NOBODY)  # the rest of this step is not interrupted

    def _own(self, owner: bytes) -> None:
        broken: tuple[int, OSError] | None = None
        for fd in self.fds:
            try:
                fcntl.fcntl(fd, _F_SETOWN_EX, owner)
            except OSError as exc:  # closed behind our back: stop arming it
                broken = (fd, exc)
        if broken is not None:
            self.fds.remove(broken[0])
            log.warning("UDP socket %d no longer signals: %s", *broken)


class _Holding:
    """``with holding():`` around a zone update: no answer from a signal meanwhile."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _held
        _held += 1

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _held
        _held -= 1


_HOLDING = _Holding()


def holding() -> _Holding:
    """A zone update under way: a signal's handler does not answer until it ends."""
    return _HOLDING
