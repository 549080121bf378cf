"""The agent's DNS front: the zone of pre-built answers and whoever serves it, the
agent's own event loop (``dnsserver.server``) or ``--dns-workers`` processes sharing the
port (``dnsserver.workers``). Zone updates go to both; a worker that (re)starts is resynced
from the records kept here, so it never answers from a partial zone.

Queries first: each ``apply`` (a rebuild's batch, about 2 ms of encoding) ends by answering
the UDP queries waiting on the agent's own socket (``DnsServer.serve_waiting``), so a
re-plan of every service (a peer's first records, a namespace change) delays a query by
one batch, not by a whole rebuild slice. And every task the agent's loop runs (gossip
exchanges, gRPC calls, the source, the publisher) answers them before each of its steps
(``dnsserver.queries_first``), so a burst of ten exchanges woken by one change delays a
query by one step, not by all of them.

The zone's name server ``ns.dns.<zone>`` answers with the host of ``--dns-advertise``
(``advertised``; a host name there is resolved once, at start).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from dnsserver import queries_first
from dnsserver.query import QueryStats
from dnsserver.records import ServiceRecords
from dnsserver.server import DnsServer, DnsServerConfig, LatencyHistogram
from dnsserver.workers import DnsWorkers, WorkerSpec, ZoneUpdate
from dnsserver.zone import Zone
from mesh.address import split_host_port
from mesh.daemon.hostinfo import address_of, default_dns_advertise
from mesh.daemon.settings import AgentSettings
from mesh.model import ServiceKey
from mesh.routing.planner import Update

log = logging.getLogger("meshd.dns")

# The EEVDF time slice a --dns-workers process asks for (``DnsServerConfig.slice_ns``).
WORKER_SLICE_NS = 100_000


class DnsFront:
    def __init__(self, settings: AgentSettings, serial: int) -> None:
        self.advertised = settings.dns_advertise or default_dns_advertise(
            settings.dns_listen, settings.advertise, settings.grpc_listen
        )
        host = split_host_port(self.advertised)[0]
        ns_address = address_of(host)
        if ns_address is None:
            log.warning("%s has no address: ns.dns.%s has none either", host, settings.dns_zone)
        self.zone = Zone(
            settings.dns_zone, serial=serial, ttl=settings.dns_ttl, ns_address=ns_address
        )
        dns_config = DnsServerConfig(
            *split_host_port(settings.dns_listen), reuse_port=settings.dns_workers > 0
        )
        self.dns = DnsServer(dns_config, self.zone)
        self.workers: DnsWorkers | None = None
        if settings.dns_workers:
            # A worker process answers DNS and nothing else: a short slice costs nothing
            # there, and lets a query preempt the agent on a shared core.
            worker_config = dataclasses.replace(dns_config, slice_ns=WORKER_SLICE_NS)
            spec = WorkerSpec(worker_config, settings.dns_zone, settings.dns_ttl, ns_address)
            self.workers = DnsWorkers(spec, settings.dns_workers, self._zone_snapshot)
        self._records: dict[ServiceKey, ServiceRecords] = {}

    async def start(self) -> None:
        if self.workers is not None:
            await self.workers.start()
            return
        await self.dns.start()
        # The pure-Python path's queries wait for the loop's turn, as do a loop's whose task
        # factory someone else set (an embedding program's).
        if self.dns.uses_fastpath and not queries_first.install(
            asyncio.get_running_loop(), self.dns.serve_waiting
        ):
            log.info("the event loop has a task factory: DNS waits for the loop's turns")

    async def close(self) -> None:
        queries_first.uninstall(asyncio.get_running_loop(), self.dns.serve_waiting)
        await self.dns.close()
        if self.workers is not None:
            await self.workers.close()

    def apply(self, updates: list[Update], serial: int) -> None:
        """Services changed (records None: gone) under a new serial, in one step each."""
        keep = self.workers is not None  # what a restarted DNS worker is resynced from
        for key, records in updates:
            self.zone.set_service(key.namespace, key.name, records)
            if records is None:
                self._records.pop(key, None)
            elif keep:
                self._records[key] = records
        self.zone.set_serial(serial)
        self.zone.synced = True
        if self.workers is not None:
            triples = [(k.namespace, k.name, r) for k, r in updates]
            self.workers.apply(triples, serial, True)
        else:
            self.dns.serve_waiting()  # the zone is whole here: answer who waited meanwhile

    def _zone_snapshot(self) -> tuple[list[ZoneUpdate], int, bool]:
        """The whole zone as updates, for a DNS worker that (re)starts."""
        updates: list[ZoneUpdate] = [(k.namespace, k.name, r) for k, r in self._records.items()]
        return updates, self.zone.serial, self.zone.synced

    def totals(self) -> tuple[QueryStats, QueryStats, LatencyHistogram, int]:
        """DNS counters: (UDP, TCP, sampled latency, open TCP connections)."""
        if self.workers is not None:
            return self.workers.totals()
        dns = self.dns
        return dns.udp_stats, dns.tcp_stats, dns.latency, len(dns.tcp_connections)
