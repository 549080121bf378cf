"""Event-loop lag of a ``meshd run`` process, seen from outside: a DNS query every few ms.

The agent answers UDP DNS from its event loop (``dnsserver.server``: no task per query),
so the time from a query to its answer is the loop's lag plus a few tens of microseconds.
``Prober`` sends one query every ``interval_s`` from one non-blocking socket (it never
waits for an answer before sending the next), matches answers by ID and keeps each
query's latency. A query still unanswered when the window closes counts with the time it
has waited: a stall shows as its length, never as a missing sample.

``window`` summarises one window: how many queries, median, p99, p99.9 and max latency.
Bench scripts run a control window (the agent idle) and a window during the work in the
same run, on the same machine, and report both.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.message
import dns.rrset


@dataclass(frozen=True)
class Window:
    """Latencies (seconds) of the queries sent in one window."""

    latencies: list[float]
    answers: int  # how many were answered within the window

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def longest(self) -> float:
        return max(self.latencies, default=float("nan"))

    def row(self) -> str:
        """``queries | median | p99 | p99.9 | max`` in milliseconds, for a Markdown table."""
        ms = [self.median, self.quantile(0.99), self.quantile(0.999), self.longest]
        return f"{len(self.latencies)} | " + " | ".join(f"{v * 1e3:.1f}" for v in ms)


class Prober:
    """Queries ``name`` at ``127.0.0.1:port`` every ``interval_s``; see the module doc."""

    def __init__(self, port: int, name: str, interval_s: float = 0.005) -> None:
        self.address = ("127.0.0.1", port)
        self.name = name
        self.interval_s = interval_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self._next_id = 0

    def in_thread(self, seconds: float) -> ProbeThread:
        """Probe in a thread until its ``stop`` (or ``seconds``); ``ProbeThread.window``."""
        return ProbeThread(self, seconds)

    def close(self) -> None:
        self.selector.close()
        self.sock.close()

    def run(
        self,
        seconds: float,
        until: Callable[[dns.message.Message], bool] | None = None,
        tail_s: float = 0.0,
        stop: threading.Event | None = None,
    ) -> tuple[Window, float | None]:
        """Probe for at most ``seconds``, or until ``stop`` is set (from another thread).
        With ``until``: stop ``tail_s`` after the first answer for which ``until(answer)``
        holds, and return when that answer came (seconds from the start of the window),
        else None."""
        sent: dict[int, float] = {}
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        next_send = started
        seen: float | None = None
        while (now := time.perf_counter()) < deadline:
            if stop is not None and stop.is_set():
                break
            if now >= next_send:
                self._send(sent, now)
                next_send += self.interval_s
                continue
            for _ in self.selector.select(max(0.0, min(next_send, deadline) - now)):
                seen = self._drain(sent, latencies, until, started, seen)
            if seen is not None and until is not None:
                deadline = min(deadline, started + seen + tail_s)
        answered = len(latencies)
        end = time.perf_counter()
        latencies.extend(end - t for t in sent.values())  # still waiting: the stall so far
        return Window(latencies, answered), seen

    def _send(self, sent: dict[int, float], now: float) -> None:
        qid = self._next_id
        self._next_id = (qid + 1) & 0xFFFF
        query = dns.message.make_query(self.name, "A", id=qid)
        # Not sent: counted as waiting all the same (the agent answers late or never).
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            self.sock.sendto(query.to_wire(), self.address)
        sent[qid] = now

    def _drain(
        self,
        sent: dict[int, float],
        latencies: list[float],
        until: Callable[[dns.message.Message], bool] | None,
        started: float,
        seen: float | None,
    ) -> float | None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return seen
            now = time.perf_counter()
            if len(data) < 2:
                continue
            qid = int.from_bytes(data[:2], "big")
            when = sent.pop(qid, None)
            if when is None:
                continue  # an answer from an earlier window
            latencies.append(now - when)
            if seen is None and until is not None and until(dns.message.from_wire(data)):
                seen = now - started


class ProbeThread:
    """A ``Prober`` running in a thread, for probing several agents at once."""

    def __init__(self, prober: Prober, seconds: float) -> None:
        self.prober = prober
        self._stop = threading.Event()
        self._result: Window | None = None
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self._thread.start()

    def _run(self, seconds: float) -> None:
        self._result, _ = self.prober.run(seconds, stop=self._stop)

    def window(self) -> Window:
        """Stop probing; the window's latencies."""
        self._stop.set()
        self._thread.join()
        self.prober.close()
        assert self._result is not None
        return self._result


def udp_bound(port: int) -> bool:
    """Whether a socket is bound to 127.0.0.1:``port`` (UDP), from ``/proc/net/udp``: an
    agent binds DNS first and answers once its loop turns, so a probe can start here."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        return any(line.split()[1] == wanted for line in list(table)[1:])


def addresses(answer: dns.message.Message) -> set[str]:
    """The A addresses of an answer."""
    found: set[str] = set()
    for rrset in answer.answer:
        if isinstance(rrset, dns.rrset.RRset):
            found.update(r.to_text() for r in rrset)
    return found
