"""The agent: wires the source, the ring, the membership, the policy and the DNS server.

Data flows one way: the source publishes this cluster's exports into the catalog, the ring
merges the other clusters' states into it, and every change (or change of cluster health)
marks the services it touches dirty (``mesh.routing.planner``); a single rebuild task then runs the
routing policy for those services only and updates their answers in the zone (and in the
DNS worker processes, if any). Rebuilds are coalesced: a burst of changes costs one rebuild.

Health: a cluster is answered while this agent reaches one of its agents (``mesh.ring.peers``)
and the SWIM membership (``mesh.transport.swim``) does not hold every agent of it dead or left;
among a cluster's replicas, answers use one this agent reaches (``mesh.ring.catalog``).

Readiness: the zone answers SERVFAIL (never a cacheable NXDOMAIN) until the source has
delivered its first full view and either one exchange with a peer has completed, there
are no peers to wait for, or ``sync_timeout_s`` has passed. At start, gossip waits up to
``FIRST_VIEW_S`` for the source's first view: a first view that lands in the middle of a
catch-up made the catch-up seconds slower (bench/RESULTS.md). Shutdown is ordered: stop
taking queries and gossip first, then the source, so no answer is ever built from a
half-torn-down agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING

from mesh.daemon.announce import Announcer
from mesh.daemon.front import DnsFront
from mesh.daemon.health_gate import HealthGate
from mesh.daemon.heap import HeapSettler
from mesh.daemon.hostinfo import default_advertise, default_replica_id
from mesh.daemon.inputs import answering_of, make_source, make_writer
from mesh.daemon.publishing import LocalPublisher
from mesh.daemon.rebuilding import AgentStats, ZoneRebuilder
from mesh.daemon.security import ring_tls, state_seal, watchers
from mesh.daemon.settings import AgentSettings
from mesh.daemon.state_dir import next_generation
from mesh.model import ClusterState, LocalExports
from mesh.ring.catalog import Catalog, Change
from mesh.ring.expiry import ClusterExpiry
from mesh.ring.peers import PeerTable, PeerTimings
from mesh.ring.records import OriginLog, RecordStore
from mesh.routing.drains import drained_clusters
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality
from mesh.routing.rebuild import answerable
from mesh.sources.manifests import SourceProblem
from mesh.swim.config import Config as SwimConfig
from mesh.swim.membership import Membership
from mesh.swim.messages import Event, Member, cluster_liveness
from mesh.transport.gossip import Ring
from mesh.transport.listen import check_listen
from mesh.transport.swim import SwimPump
from mesh.wire.record_codec import Publisher
from mesh.wire.swim_codec import member_id

if TYPE_CHECKING:
    from mesh.kube.writer import KubeWriter

log = logging.getLogger("meshd.agent")
FIRST_VIEW_S = 2.0  # longest gossip waits at start for the source's first view
HEALTH_POLL_S = 0.1  # the health loop's poll, at most (mesh.daemon.health_gate: when it looks)


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
        self.local_records: LocalPublisher | None = None  # publishes local changes in slices
        self.expiry = ClusterExpiry(settings.cluster_expiry_s)
        self.locality = Locality(settings.cluster_id, settings.region, settings.zone)
        self.stats = AgentStats()
        self.source_synced = asyncio.Event()
        self.synced = False
        self.planner = AnswerPlanner(self.locality, settings.max_addresses, answering_of(settings))
        self.front = DnsFront(settings, serial=int(time.time()))
        self.zone = self.front.zone
        self.heap = HeapSettler()  # keeps collector passes short (mesh.daemon.heap)
        self._drained_memo: tuple[int, frozenset[str]] = (-1, frozenset())
        self._member_events = 0  # SWIM events so far: one of the health loop's inputs
        self._health_gate = HealthGate()
        self.rebuilder = ZoneRebuilder(
            self.planner, self.catalog, self.front, self.heap, self.stats, self._current_health
        )
        self.rebuild_observers = self.rebuilder.observers  # each rebuild's seconds
        self.rebuild_observers.append(lambda took: self.heap.rebuilt(took, self.synced))
        # Its drain and addresses, in its cluster record (mesh.daemon.announce).
        self.announcer = Announcer(self.catalog, settings, self.front.advertised, self._publish)
        self.source = make_source(
            settings,
            self._on_exports,
            self._on_problem,
            self.planner,
            self._on_change,
            on_progress=self.heap.made,
        )
        self.ring: Ring | None = None
        self.peers: PeerTable | None = None
        self._dirty = asyncio.Event()
        self.swim: SwimPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.kube_writer: KubeWriter | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.front.start()
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
        self.publisher = Publisher(
            self.records.local,
            None if seal is None else seal.signer,
            per_record=self.settings.record_signatures == "both",
        )
        self.announcer.announce()
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
        self.local_records = LocalPublisher(
            self.publisher, lambda: self.catalog.local, self.ring.nudge, self.heap.made
        )
        # A port in use ends the start before the source begins (one line, exit 1); gossip
        # starts with the first local view if it comes soon (see the module doc).
        check_listen(self.settings.grpc_listen, "gossip")
        self._tasks = [asyncio.create_task(self.source.run(), name="source")]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_VIEW_S):  # 3.11's wait_for can lose a cancel
                await self.source_synced.wait()
        port = await self.ring.start(self.settings.grpc_listen)
        if advertise is None:
            self.peers.self_address = default_advertise(self.settings.grpc_listen, port)
        self._tasks += [
            asyncio.create_task(self.ring.run(self.settings.gossip_interval_s), name="ring"),
            asyncio.create_task(self.local_records.run(), name="publish"),
            asyncio.create_task(self._rebuild_loop(), name="rebuild"),
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self._sync_gate(), name="sync"),
            *self._seal_tasks(),
            asyncio.create_task(self._run_membership(), name="swim"),
        ]
        # With the Kubernetes API source, write back what the MCS API expects.
        self.kube_writer = make_writer(
            self.settings, self.source, self.catalog.clusters, lambda: self.synced, self.planner
        )
        if self.kube_writer is not None:
            self.announcer.lease = self.kube_writer.keeper  # drains are kept on the Lease too
            self._tasks.append(asyncio.create_task(self.kube_writer.run(), name="kube-writer"))
        self.heap.freeze()  # what start-up made lives as long as the agent

    async def stop(self) -> None:
        await self.front.close()
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
        found = watchers(self.settings, self.ring.tls, self.ring.seal)
        return [asyncio.create_task(coro, name=name) for name, coro in found.items()]

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
        """The source's view: into the catalog now; records and zone by tasks, in steps."""
        change = self.catalog.set_local(exports)
        if change:
            log.info("local exports changed: %d services", len(exports.services))
            self._publish(change)
        self.source_synced.set()

    def _publish(self, change: Change) -> None:
        """A change of this replica's own state: sealed into records (in slices, by the
        ``publish`` task, which nudges the peers when done) and into the zone."""
        if self.local_records is not None:
            self.local_records.note(change)
        elif self.publisher is not None:  # during start: before the slicing task exists
            self.publisher.publish(self.catalog.local, change, asyncio.get_running_loop().time())
        self._on_change(change)

    def _on_change(self, change: Change) -> None:
        self.heap.made(len(change.services))  # new states, from the source or the ring
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
        """Clusters to answer with (``mesh.routing.rebuild.answerable``)."""
        assert self.peers is not None
        now = asyncio.get_running_loop().time()
        clusters = [s.cluster_id for s in self.catalog.clusters()]
        reachable = self.peers.healthy(clusters, now)
        if self.swim is None:
            return reachable
        up = cluster_liveness(self.swim.membership.members.values())
        return answerable(reachable, up, self.peers.in_contact(now), self.catalog.local_id)

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
        self._member_events += 1
        self._dirty.set()  # a death or a return can change which clusters we answer with

    def _choose_replicas(self) -> None:
        """Answer each cluster from a replica this agent reaches (see mesh.ring.catalog)."""
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
        # Declared dead, yet our own exchange just worked: healed.
        back = [a for a in reached if a in known and not known[a].live]
        if back:
            self.swim.reached(back)

    async def _health_loop(self) -> None:
        """Rebuild when a cluster becomes reachable or unreachable: a full look when one of
        its inputs moved or its time came (``mesh.daemon.health_gate``), else a cheap poll."""
        loop, gate, peers = asyncio.get_running_loop(), self._health_gate, self.peers
        assert peers is not None  # the loop runs with the ring
        poll = min(HEALTH_POLL_S, self.settings.gossip_interval_s)
        while True:
            now = loop.time()
            inputs = (self.catalog.revision, peers.revision, self._member_events, self.synced)
            if gate.must_look(inputs, now):
                self._look_at_health()
                gate.looked(inputs, now, peers.next_change(now))
            await asyncio.sleep(gate.wait(loop.time(), poll))

    def _look_at_health(self) -> None:
        self._choose_replicas()
        self._introduce_peers()
        self.announcer.adopt()
        if self.synced:
            healthy = self._current_health()
            drained = self._drained()
            if healthy != self.planner.healthy or drained != self.planner.drained:
                self._dirty.set()
            self._expire(healthy)

    def _drained(self) -> frozenset[str]:
        """The drained clusters, worked out again only when the catalog's states moved."""
        revision, drained = self._drained_memo
        if revision != self.catalog.revision:
            drained = drained_clusters(self.catalog.states())
            self._drained_memo = (self.catalog.revision, drained)
        return drained

    def _expire(self, healthy: set[str]) -> None:
        """Forget clusters out of the answers for ``--cluster-expiry`` (``mesh.ring.expiry``)."""
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

    async def rebuild_async(self) -> None:
        """Rebuild the answers of what changed since the last rebuild (``ZoneRebuilder``)."""
        await self.rebuilder.rebuild()
