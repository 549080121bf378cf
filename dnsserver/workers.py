"""N worker processes answering DNS on one port (SO_REUSEPORT), fed by the agent.

Theory of operation. One Python process answers on one core. On bigger hosts the agent can
start N workers (``--dns-workers N``); each binds the DNS address with SO_REUSEPORT, so the
kernel spreads clients across them, and holds its own ``Zone``. The agent stays the only
owner of the data: it sends every zone update (the same ``(namespace, name, records)``
triples and serial it applies itself) down a pipe to each worker, and a newly started or
restarted worker first receives the whole zone. Workers send their counters back once a
second; the agent sums them for ``/metrics``.

Failure handling: a worker that dies is restarted (at most once a second) and resynced; a
broken pipe to a worker is treated the same way. Workers die with the agent: each watches
its pipe and exits when the agent's end closes.

Messages (pickled over ``multiprocessing`` pipes):

- agent to worker: ``("apply", [(namespace, name, ServiceRecords | None)], serial, synced)``;
- worker to agent: ``("stats", {"udp": QueryStats, "tcp": QueryStats, "latency": ...})``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from dnsserver.loop import new_event_loop
from dnsserver.query import QueryStats
from dnsserver.records import ServiceRecords
from dnsserver.server import DnsServer, DnsServerConfig, LatencyHistogram
from dnsserver.zone import Zone

log = logging.getLogger("meshd.dns.workers")

ZoneUpdate = tuple[str, str, ServiceRecords | None]
STATS_INTERVAL_S = 1.0
STARTUP_TIMEOUT_S = 20.0
RESTART_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    config: DnsServerConfig
    origin: str
    ttl: int
    ns_address: str | None = None  # the name server's address (``Zone``)


def _worker_main(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when workers stop
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(spec, conn))
    finally:
        loop.close()


async def _serve(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    # The agent reports what is left out of the zone; its workers stay quiet.
    zone = Zone(spec.origin, serial=0, ttl=spec.ttl, ns_address=spec.ns_address, on_skipped=None)
    server = DnsServer(spec.config, zone)
    try:
        await server.start()
    except OSError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", None))
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def on_message() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            closed.set()
            return
        if message[0] == "apply":
            _, updates, serial, synced = message
            for namespace, name, records in updates:
                zone.set_service(namespace, name, records)
            zone.set_serial(serial)
            zone.synced = synced

    loop.add_reader(conn.fileno(), on_message)
    try:
        while not closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATS_INTERVAL_S):  # 3.11's wait_for can lose a cancel
                    await closed.wait()
            stats = {
                "udp": server.udp_stats,
                "tcp": server.tcp_stats,
                "latency": server.latency,
                "connections": len(server.tcp_connections),
            }
            try:
                conn.send(("stats", stats))
            except OSError:
                break
    finally:
        loop.remove_reader(conn.fileno())
        await server.close()


@dataclass(slots=True)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    stats: dict[str, Any] = field(default_factory=dict)
    closed: bool = False


class DnsWorkers:
    """Starts, feeds, watches and stops the worker processes (runs in the agent's loop)."""

    def __init__(self, spec: WorkerSpec, count: int, snapshot: Any) -> None:
        """``snapshot()`` returns (every current ZoneUpdate, serial, synced) for a resync."""
        self.spec = spec
        self.count = count
        self.snapshot = snapshot
        self.workers: list[_Worker] = []
        self.restarts = 0
        self._retired: list[dict[str, Any]] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._context = multiprocessing.get_context("spawn")
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every worker; raises OSError when one cannot serve (e.g. the port)."""
        for _ in range(self.count):
            self.workers.append(await self._spawn())
        self._watch = asyncio.create_task(self._supervise(), name="dns-workers")

    async def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(self.spec, child), name="meshd-dns", daemon=True
        )
        process.start()
        self._processes.append(process)  # so close() reaps it even if we are cancelled
        child.close()
        worker = _Worker(process, parent)
        try:
            ready = await asyncio.wait_for(asyncio.to_thread(parent.recv), STARTUP_TIMEOUT_S)
        except (TimeoutError, EOFError, OSError):
            ready = ("error", f"DNS worker {process.pid} did not start")
        if ready[0] != "ready":
            parent.close()
            process.kill()
            process.join(5.0)
            self._processes.remove(process)
            raise OSError(ready[1])
        updates, serial, synced = self.snapshot()
        self._send(worker, ("apply", updates, serial, synced))
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_stats, worker)
        return worker

    def _on_stats(self, worker: _Worker) -> None:
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._close(worker)  # it died; the supervisor replaces it
            return
        if kind == "stats":
            worker.stats = payload

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        try:
            worker.conn.send(message)
        except OSError:
            worker.process.kill()  # the supervisor restarts and resyncs it

    def apply(self, updates: list[ZoneUpdate], serial: int, synced: bool) -> None:
        for worker in self.workers:
            self._send(worker, ("apply", updates, serial, synced))

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(RESTART_INTERVAL_S)
            for worker in [w for w in self.workers if not w.process.is_alive()]:
                log.warning(
                    "DNS worker %d exited (%s); restarting it",
                    worker.process.pid,
                    worker.process.exitcode,
                )
                self._close(worker)
                self.workers.remove(worker)
                self._processes.remove(worker.process)
                if worker.stats:  # keep its counts: counters must not go backwards
                    self._retired.append(worker.stats)
            while len(self.workers) < self.count:
                try:
                    self.workers.append(await self._spawn())
                except OSError as exc:
                    log.error("cannot restart a DNS worker: %s", exc)
                    break
                self.restarts += 1

    def _close(self, worker: _Worker) -> None:
        if worker.closed:
            return
        worker.closed = True
        asyncio.get_running_loop().remove_reader(worker.conn.fileno())
        worker.conn.close()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for worker in self.workers:
            self._close(worker)  # the worker sees EOF and stops serving
        for process in self._processes:  # including one cancelled while starting
            await asyncio.to_thread(process.join, 5.0)
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.join, 5.0)

    def totals(self) -> tuple[QueryStats, QueryStats, LatencyHistogram, int]:
        """Counters summed over workers (as of their last report)."""
        udp, tcp, latency = QueryStats(), QueryStats(), LatencyHistogram()
        connections = sum(w.stats.get("connections", 0) for w in self.workers)
        for stats in [w.stats for w in self.workers if w.stats] + self._retired:
            udp.add(stats["udp"])
            tcp.add(stats["tcp"])
            for i, n in enumerate(stats["latency"].counts):
                latency.counts[i] += n
            latency.sum_s += stats["latency"].sum_s
        return udp, tcp, latency, connections
