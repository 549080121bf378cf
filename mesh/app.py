"""The agent: wires the source, the ring, the membership, the policy and the DNS server.

Data flows one way: the source publishes this cluster's exports into the catalog, the ring
merges the other clusters' states into it, and every change (or change of cluster health)
marks the services it touches dirty (``mesh.planner``); a single rebuild task then runs the
routing policy for those services only and updates their answers in the zone (and in the
DNS worker processes, if any). Rebuilds are coalesced: a burst of changes costs one rebuild.

Health: a cluster is answered while this agent reaches one of its agents (``mesh.peers``)
and the SWIM membership (``mesh.membership``) does not hold every agent of it dead or left;
among a cluster's replicas, answers use one this agent reaches (``mesh.catalog``).

Readiness: the zone answers SERVFAIL (never a cacheable NXDOMAIN) until the source has
delivered its first full view and either one exchange with a peer has completed, there
are no peers to wait for, or ``sync_timeout_s`` has passed.

Shutdown is ordered: stop taking queries and gossip first, then the source, so no answer
is ever built from a half-torn-down agent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dnsserver.query import QueryStats
from dnsserver.records import ServiceRecords
from dnsserver.server import DnsServer, DnsServerConfig, LatencyHistogram
from dnsserver.workers import DnsWorkers, WorkerSpec, ZoneUpdate
from dnsserver.zone import Zone
from mesh.catalog import Catalog, Change
from mesh.expiry import DEFAULT_CLUSTER_EXPIRY_S, ClusterExpiry
from mesh.hostinfo import default_advertise, default_replica_id
from mesh.membership import SwimPump
from mesh.metrics import AgentMetrics
from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.peers import PeerTable, PeerTimings, split_host_port
from mesh.planner import AnswerPlanner, Update
from mesh.policy import Locality
from mesh.record_codec import Publisher
from mesh.records import DEFAULT_TOMBSTONE_TTL_S, OriginLog, RecordStore
from mesh.ring import Ring
from mesh.ring_security import reload_seal, ring_tls, state_seal
from mesh.sources.manifests import ManifestSource, SourceProblem
from mesh.state_dir import next_generation
from mesh.swim import Membership
from mesh.swim_codec import member_id
from mesh.swim_config import Config as SwimConfig
from mesh.swim_messages import Event, Member, cluster_liveness

if TYPE_CHECKING:
    from mesh.sources.kubernetes import KubernetesSource
    from mesh.sources.kubewriter import KubeWriter

log = logging.getLogger("meshd.agent")
REBUILD_SLICE_S = 0.02  # longest the zone rebuild runs before letting the event loop turn
REBUILD_CHECK = 50  # services re-encoded between two looks at the clock
LOG_NAMES = 10  # names a log line lists before "and N more"


def _some(names: list[str]) -> str:
    """``names`` for a log line: the first ``LOG_NAMES`` and how many more."""
    shown = ", ".join(names[:LOG_NAMES])
    more = len(names) - LOG_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


@dataclass(frozen=True)
class AgentSettings:
    cluster_id: str
    manifests: Path | None  # None: the Kubernetes API (kubeconfig, else in-cluster)
    region: str = ""
    zone: str = ""
    dns_listen: str = "0.0.0.0:53"
    dns_zone: str = "clusterset.local"
    dns_ttl: int = 5
    grpc_listen: str = "0.0.0.0:7946"
    advertise: str | None = None
    join: tuple[str, ...] = ()
    admin_listen: str | None = "0.0.0.0:9090"
    state_dir: Path | None = None
    gossip_interval_s: float = 0.5
    peer_timeout_s: float = 2.0
    tombstone_ttl_s: float = DEFAULT_TOMBSTONE_TTL_S
    max_exchange_rate: float = 40.0  # PeerTimings.max_exchanges_per_s
    cluster_expiry_s: float = DEFAULT_CLUSTER_EXPIRY_S
    sync_timeout_s: float = 5.0
    max_addresses: int = 8
    kubeconfig: Path | None = None  # with manifests None; None here too: in-cluster
    # Mutual TLS between agents (all three, or none for plaintext; see mesh.tls).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    signing_cert: Path | None = None
    signing_key: Path | None = None
    dns_workers: int = 0
    replica_id: str = ""
    lease_namespace: str = ""  # the write-back Lease's; "": the pod's, else meshd-system


@dataclass(slots=True)
class AgentStats:
    zone_rebuilds: int = 0
    failed_open: tuple[ServiceKey, ...] = ()
    source_problems: int = 0


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        generation = next_generation(settings.state_dir, time.time_ns())
        self.catalog = Catalog(
            ClusterState(
                settings.cluster_id,
                generation,
                0,
                settings.region,
                settings.zone,
                replica=settings.replica_id or default_replica_id(),
            )
        )
        local = self.catalog.local
        self.records = RecordStore(
            OriginLog(local.cluster_id, local.replica, local.generation),
            tombstone_ttl=settings.tombstone_ttl_s,
        )
        self.publisher: Publisher | None = None
        self.expiry = ClusterExpiry(settings.cluster_expiry_s)
        self.locality = Locality(settings.cluster_id, settings.region, settings.zone)
        self.stats = AgentStats()
        self.metrics = AgentMetrics(self)
        self.source_synced = asyncio.Event()
        self.synced = False
        self.planner = AnswerPlanner(self.locality, settings.max_addresses)
        self.zone = Zone(settings.dns_zone, serial=int(time.time()), ttl=settings.dns_ttl)
        dns_config = DnsServerConfig(
            *split_host_port(settings.dns_listen), reuse_port=settings.dns_workers > 0
        )
        self.dns = DnsServer(dns_config, self.zone)
        self.workers: DnsWorkers | None = None
        if settings.dns_workers:
            spec = WorkerSpec(dns_config, settings.dns_zone, settings.dns_ttl)
            self.workers = DnsWorkers(spec, settings.dns_workers, self._zone_snapshot)
        self._records: dict[ServiceKey, ServiceRecords] = {}
        self.source = make_source(settings, self._on_exports, self._on_problem)
        self.ring: Ring | None = None
        self.peers: PeerTable | None = None
        self._dirty = asyncio.Event()
        self.swim: SwimPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.kube_writer: KubeWriter | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.workers is not None:
            await self.workers.start()
        else:
            await self.dns.start()
        advertise = self.settings.advertise
        self.peers = PeerTable(
            self.settings.cluster_id,
            # Without --advertise, the address is known once the gossip port is bound.
            advertise or self.settings.grpc_listen,
            list(self.settings.join),
            PeerTimings(
                self.settings.gossip_interval_s,
                self.settings.peer_timeout_s,
                max_exchanges_per_s=self.settings.max_exchange_rate,
            ),
        )
        seal = state_seal(self.settings)
        self.publisher = Publisher(self.records.local, None if seal is None else seal.signer)
        local = self.catalog.local
        everything = Change(local.cluster_id, frozenset(local.services), cluster=True)
        self.publisher.publish(local, everything, asyncio.get_running_loop().time())
        self.ring = Ring(
            self.catalog,
            self.peers,
            self._on_change,
            self.records,
            self.publisher,
            tls=ring_tls(self.settings),
            seal=seal,
        )
        port = await self.ring.start(self.settings.grpc_listen)
        if advertise is None:
            self.peers.self_address = default_advertise(self.settings.grpc_listen, port)
        self._tasks = [
            asyncio.create_task(self.source.run(), name="source"),
            asyncio.create_task(self.ring.run(self.settings.gossip_interval_s), name="ring"),
            asyncio.create_task(self._rebuild_loop(), name="rebuild"),
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self._sync_gate(), name="sync"),
            *self._seal_tasks(),
            asyncio.create_task(self._run_membership(), name="swim"),
        ]
        self._tasks.extend(self._kube_writer_tasks())

    def _kube_writer_tasks(self) -> list[asyncio.Task[None]]:
        """With the Kubernetes API source, write back what the MCS API expects: status
        conditions and ServiceImports, from the replica holding the Lease (kubewriter)."""
        if isinstance(self.source, ManifestSource):
            return []
        from mesh.sources.kubewriter import KubeWriter, WriterSettings

        settings = WriterSettings(lease_namespace=self.settings.lease_namespace)
        self.kube_writer = KubeWriter(
            self.settings.cluster_id,
            self.source,
            self.catalog.clusters,
            settings,
            ring_synced=lambda: self.synced,
        )
        return [asyncio.create_task(self.kube_writer.run(), name="kube-writer")]

    async def stop(self) -> None:
        await self.dns.close()
        if self.workers is not None:
            await self.workers.close()
        if self.swim is not None:
            await self.swim.leave()  # peers drop us now, instead of suspecting us first
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ring is not None:
            await self.ring.close()

    def failed_tasks(self) -> list[BaseException]:
        """Exceptions that ended a background task (the daemon exits on any)."""
        return [
            t.exception()  # type: ignore[misc]
            for t in self._tasks
            if t.done() and not t.cancelled() and t.exception() is not None
        ]

    @property
    def ready(self) -> bool:
        """The first sync is done and the zone answers from it (``/readyz``)."""
        return self.synced and self.zone.synced

    @property
    def advertised(self) -> str:
        """The gossip address this agent gives its peers."""
        assert self.peers is not None
        return self.peers.self_address

    def _seal_tasks(self) -> list[asyncio.Task[None]]:
        if self.ring is None or self.ring.seal is None:
            return []
        reload = reload_seal(self.settings, self.ring.seal)
        return [asyncio.create_task(reload, name="seal-reload")]

    def join(self, address: str) -> None:
        """Add a seed peer at run time (as ``--join`` does at start)."""
        assert self.peers is not None
        self.peers.add_seed(address)
        if self.swim is not None:
            self.swim.join([address])

    def healthy_clusters(self) -> set[str]:
        return set(self.planner.healthy)

    # --- inputs ------------------------------------------------------------------------

    def _on_exports(self, exports: LocalExports) -> None:
        change = self.catalog.set_local(exports)
        if change:
            log.info("local exports changed: %d services", len(exports.services))
            if self.publisher is not None:
                now = asyncio.get_running_loop().time()
                self.publisher.publish(self.catalog.local, change, now)
            self._on_change(change)
            if self.ring is not None:
                self.ring.nudge()
        self.source_synced.set()

    def _on_change(self, change: Change) -> None:
        self.planner.note(change)
        self._dirty.set()

    def _on_problem(self, problem: SourceProblem) -> None:
        self.stats.source_problems += 1
        log.warning("source: %s", problem)

    async def _sync_gate(self) -> None:
        await self.source_synced.wait()
        if self.settings.join and self.ring is not None:
            try:
                await asyncio.wait_for(
                    self.ring.exchanged_once.wait(), self.settings.sync_timeout_s
                )
            except TimeoutError:
                log.warning(
                    "no peer answered within %.1fs; answering with what this agent has",
                    self.settings.sync_timeout_s,
                )
        self.synced = True
        self._dirty.set()

    def _current_health(self) -> set[str]:
        """Clusters to answer with: reachable by this agent's own exchanges, and not down in
        the SWIM view (every member dead or left; see ``cluster_liveness``) unless this agent
        exchanged with one of them within the last two rounds: a member wrongly declared
        dead (slow indirect probes, a one-way cut elsewhere) keeps its cluster in the
        answers of the agents that still reach it, while a killed one stops answering well
        before SWIM's verdict arrives, so that verdict still counts."""
        assert self.peers is not None
        now = asyncio.get_running_loop().time()
        clusters = [s.cluster_id for s in self.catalog.clusters()]
        healthy = self.peers.healthy(clusters, now)
        if self.swim is not None:
            up = cluster_liveness(self.swim.membership.members.values())
            contact = self.peers.in_contact(now)
            local = self.catalog.local_id
            healthy = {c for c in healthy if c == local or up.get(c, True) or c in contact}
        return healthy

    async def _run_membership(self) -> None:
        """SWIM over the ring's gRPC transport: who is in the ring, who died or left."""
        assert self.ring is not None
        local = self.catalog.local
        me = Member(member_id(local.cluster_id, local.replica), local.cluster_id, self.advertised)
        membership = Membership(SwimConfig.fast(), me, random.Random())
        self.swim = SwimPump.over_ring(membership, self.ring, self._on_member_event)
        self.ring.swim = self.swim
        self.swim.start(list(self.settings.join))
        await self.swim.run()

    def _on_member_event(self, event: Event) -> None:
        member = event.member
        if (
            self.peers is not None
            and member.live
            and member.id != member_id(self.catalog.local_id, self.catalog.local.replica)
        ):
            replica = member.id.partition("/")[2]
            now = asyncio.get_running_loop().time()
            self.peers.learned(member.cluster_id, member.address, now, replica)
        self._dirty.set()  # a death or a return can change which clusters we answer with

    def _choose_replicas(self) -> None:
        """Answer each cluster from a replica this agent reaches (see mesh.catalog)."""
        peers = self.peers
        assert peers is not None
        now = asyncio.get_running_loop().time()
        for change in self.catalog.choose(
            lambda s: peers.replica_reachable(s.cluster_id, s.replica, now)
        ):
            self._on_change(change)

    def _introduce_peers(self) -> None:
        """Tell SWIM about agents the ring reaches but the membership does not know yet
        (each can find the other first; this way either path completes the view)."""
        if self.swim is None or self.peers is None:
            return
        known = {m.address: m for m in self.swim.membership.members.values()}
        now = asyncio.get_running_loop().time()
        reached = [a for a in self.peers.peers if self.peers.reachable(a, now)]
        fresh = [a for a in reached if a not in known]
        if fresh:
            self.swim.join(fresh)
        for address in reached:  # declared dead, yet our own exchange just worked: healed
            if address in known and not known[address].live:
                self.swim.reached(address)

    async def _health_loop(self) -> None:
        """Rebuild when a cluster becomes reachable or unreachable."""
        while True:
            self._choose_replicas()
            self._introduce_peers()
            if self.synced:
                healthy = self._current_health()
                if healthy != self.planner.healthy:
                    self._dirty.set()
                self._expire(healthy)
            await asyncio.sleep(min(0.1, self.settings.gossip_interval_s))

    def _expire(self, healthy: set[str]) -> None:
        """Forget clusters out of the answers for ``--cluster-expiry`` (``mesh.expiry``)."""
        now = asyncio.get_running_loop().time()
        clusters = [s.cluster_id for s in self.catalog.clusters()]
        for cluster in self.expiry.observe(clusters, healthy, now):
            log.warning(
                "forgetting cluster %s: out of answers for %.0f s", cluster, self.expiry.after_s
            )
            self.records.forget(cluster)
            change = self.catalog.forget(cluster)
            if change:
                self._on_change(change)

    # --- the zone ------------------------------------------------------------------------

    async def _rebuild_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.synced:
                await self.rebuild_async()

    def rebuild(self) -> None:
        """Rebuild the answers of the services that changed since the last rebuild."""
        planned = self._plan_rebuild()
        if planned is not None:
            self.apply(planned[0], planned[1])
            self._after_rebuild(*planned)

    async def rebuild_async(self) -> None:
        """``rebuild``, letting the event loop turn every ``REBUILD_SLICE_S``: a large
        catch-up re-encodes hundreds of thousands of answers, and DNS queries, SWIM probes
        and the ring must not wait seconds for it. Each service changes in one step, so a
        query sees a service before or after its change, never half of it."""
        planned = self._plan_rebuild()
        if planned is None:
            return
        updates, serial = planned[0], planned[1]
        sliced = time.perf_counter()
        for start in range(0, len(updates), REBUILD_CHECK):
            end = start + REBUILD_CHECK
            self.apply(updates[start:end], serial)
            if end < len(updates) and time.perf_counter() - sliced >= REBUILD_SLICE_S:
                await asyncio.sleep(0)
                sliced = time.perf_counter()
        if not updates:
            self.apply([], serial)
        self._after_rebuild(*planned)

    def _plan_rebuild(self) -> tuple[list[Update], int, set[ServiceKey], float] | None:
        started = time.perf_counter()
        states = self.catalog.clusters()
        healthy = self._current_health()
        gone = self.planner.healthy - healthy
        if self.planner.note_health(healthy, states) and gone:
            log.warning("clusters unreachable: %s", _some(sorted(gone)))
        if not self.planner.pending and self.zone.synced:
            return None
        before = set(self.planner.failed_open)
        updates = self.planner.plan(states, self.catalog.local.namespaces)
        # RFC 1982 serial: it must change with the data and should only move forward.
        serial = max(self.zone.serial + 1, int(time.time())) & 0xFFFFFFFF
        return updates, serial, before, started

    def _after_rebuild(
        self, updates: list[Update], serial: int, before: set[ServiceKey], started: float
    ) -> None:
        newly = self.planner.failed_open - before
        if newly:
            log.warning(
                "failing open for %s: no reachable cluster has a ready endpoint",
                _some(sorted(map(str, newly))),
            )
        self.stats.failed_open = tuple(sorted(self.planner.failed_open))
        self.stats.zone_rebuilds += 1
        self.metrics.zone_rebuild_seconds.observe(time.perf_counter() - started)

    def apply(self, updates: list[Update], serial: int) -> None:
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

    def _zone_snapshot(self) -> tuple[list[ZoneUpdate], int, bool]:
        """The whole zone as updates, for a DNS worker that (re)starts."""
        updates: list[ZoneUpdate] = [(k.namespace, k.name, r) for k, r in self._records.items()]
        return updates, self.zone.serial, self.zone.synced

    def dns_totals(self) -> tuple[QueryStats, QueryStats, LatencyHistogram, int]:
        """DNS counters: (UDP, TCP, sampled latency, open TCP connections)."""
        if self.workers is not None:
            return self.workers.totals()
        dns = self.dns
        return dns.udp_stats, dns.tcp_stats, dns.latency, len(dns.tcp_connections)


def make_source(
    settings: AgentSettings,
    on_change: Callable[[LocalExports], None],
    on_problem: Callable[[SourceProblem], None],
) -> ManifestSource | KubernetesSource:
    """The source of this cluster's exports: the manifests directory, else the API server."""
    if settings.manifests is not None:
        return ManifestSource(settings.manifests, on_change, on_problem)
    from mesh.sources.kubernetes import KubeAccess, KubernetesSource

    return KubernetesSource(KubeAccess(kubeconfig=settings.kubeconfig), on_change, on_problem)
