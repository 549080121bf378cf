"""Prometheus metrics of one agent (the only module that imports prometheus_client).

The hot paths keep plain integer counters (``QueryStats``, ``RingStats``); this collector
reads them at scrape time, so a DNS query never pays for a Prometheus label lookup. Each
agent has its own registry, so several agents can share a process (the demo, tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dnsserver.query import split_answer_key
from dnsserver.server import LATENCY_BUCKETS_NS, LATENCY_SAMPLE_EVERY
from dnsserver.wire import RCODE_NAMES, TYPE_NAMES
from mesh.daemon.agent import Agent
from mesh.daemon.security import certificate_expiry
from mesh.ring.records import RecordStore
from mesh.routing.drains import cluster_drains
from mesh.security.cert_expiry import CERTS
from mesh.transport.tls import TlsStats


def _tls(stats: TlsStats) -> Iterator[Metric]:
    refused = CounterMetricFamily(
        "meshd_tls_refused", "peers refused by mutual TLS, by reason", labels=["reason"]
    )
    for reason in ("handshake", "clusterset", "no_identity"):
        refused.add_metric([reason], stats.refused.get(reason, 0))
    yield refused
    reloads = CounterMetricFamily(
        "meshd_tls_reloads", "changed certificate files, by outcome", labels=["outcome"]
    )
    reloads.add_metric(["ok"], stats.reloads)
    reloads.add_metric(["refused"], stats.reload_failures)
    yield reloads


def _certificates(expiry: dict[str, float]) -> Iterator[Metric]:
    if not expiry:
        return
    gauge = GaugeMetricFamily(
        "meshd_certificate_expiry_timestamp_seconds",
        "not-after time (Unix seconds) of each certificate this agent uses: tls, signing, and "
        "ca (the earliest of the --tls-ca bundle)",
        labels=["cert"],
    )
    for cert in CERTS:
        if cert in expiry:
            gauge.add_metric([cert], expiry[cert])
    yield gauge


def _qtype(code: int) -> str:
    return TYPE_NAMES.get(code, f"TYPE{code}")


class _AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        yield from self._dns()
        yield from self._ring()
        yield from self._swim()
        yield from self._catalog()
        yield from self._kube()

    def _dns(self) -> Iterator[Metric]:
        udp, tcp, latency, connections = self.agent.front.totals()
        queries = CounterMetricFamily(
            "meshd_dns_queries", "DNS queries answered", labels=["qtype", "rcode", "transport"]
        )
        rejected = CounterMetricFamily(
            "meshd_dns_rejected", "DNS messages rejected, by reason", labels=["reason", "transport"]
        )
        truncated = CounterMetricFamily(
            "meshd_dns_truncated", "UDP answers sent with TC=1", labels=["transport"]
        )
        dropped = CounterMetricFamily(
            "meshd_dns_send_dropped",
            "UDP answers dropped because the kernel would not take them (socket buffer full)",
            labels=["transport"],
        )
        dropped.add_metric(["udp"], udp.send_dropped)
        for transport, stats in (("udp", udp), ("tcp", tcp)):
            for key, count in list(stats.answered.items()):
                qtype, rcode = split_answer_key(key)
                rname = RCODE_NAMES.get(rcode, str(rcode))
                queries.add_metric([_qtype(qtype), rname, transport], count)
            for reason, count in list(stats.rejected.items()):
                rejected.add_metric([reason, transport], count)
            truncated.add_metric([transport], stats.truncated)
        yield queries
        yield rejected
        yield truncated
        yield dropped
        yield GaugeMetricFamily(
            "meshd_dns_tcp_connections", "open DNS TCP connections", value=connections
        )
        buckets, cumulative = [], 0
        for bound_ns, count in zip((*LATENCY_BUCKETS_NS, None), latency.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound_ns is None else str(bound_ns / 1e9), cumulative))
        yield HistogramMetricFamily(
            "meshd_dns_response_seconds",
            f"time to answer a UDP query inside the server, 1 query in {LATENCY_SAMPLE_EVERY} "
            "sampled",
            buckets=buckets,
            sum_value=latency.sum_s,
        )
        yield GaugeMetricFamily(
            "meshd_zone_services",
            "services with answers in the zone",
            value=len(self.agent.planner.zone_keys),
        )
        yield CounterMetricFamily(
            "meshd_zone_rebuilds", "zone snapshots built", value=self.agent.stats.zone_rebuilds
        )
        skipped = CounterMetricFamily(
            "meshd_zone_skipped_records",
            "names, records and answers left out of the zone, by reason",
            labels=["reason"],
        )
        for reason, count in self.agent.zone.skipped_by_reason().items():
            skipped.add_metric([reason], count)
        yield skipped
        yield GaugeMetricFamily(
            "meshd_ready", "1 once the first sync is done", value=1 if self.agent.ready else 0
        )

    def _ring(self) -> Iterator[Metric]:
        ring = self.agent.ring
        peers = self.agent.peers
        if ring is None or peers is None:
            return
        now = asyncio.get_running_loop().time()
        messages = CounterMetricFamily(
            "meshd_gossip_messages", "gossip messages", labels=["direction", "outcome"]
        )
        for (direction, outcome), count in list(ring.stats.messages.items()):
            messages.add_metric([direction, outcome], count)
        yield messages
        if ring.tls is not None:
            yield from _tls(ring.tls.stats)
        yield from _certificates(certificate_expiry(ring.tls, ring.seal))
        sizes = CounterMetricFamily("meshd_gossip_bytes", "gossip bytes", labels=["direction"])
        for direction, count in list(ring.stats.bytes.items()):
            sizes.add_metric([direction], count)
        yield sizes
        dropped = CounterMetricFamily(
            "meshd_gossip_rejected", "invalid items from peers, dropped", labels=["kind"]
        )
        for kind, count in list(ring.stats.rejected.items()):
            dropped.add_metric([kind], count)
        yield dropped
        yield from self._records(ring.store)
        members = GaugeMetricFamily("meshd_members", "known peers by state", labels=["state"])
        reachable = sum(1 for a in peers.peers if peers.reachable(a, now))
        members.add_metric(["reachable"], reachable)
        members.add_metric(["unreachable"], len(peers.peers) - reachable)
        yield members
        lag = ring.stats.last_merge
        yield GaugeMetricFamily(
            "meshd_sync_lag_seconds",
            "seconds since a peer last brought a newer cluster state (-1: never)",
            value=-1 if lag is None else now - lag,
        )

    def _swim(self) -> Iterator[Metric]:
        """The membership protocol's traffic and this agent's own health (Lifeguard)."""
        if self.agent.swim is None:
            return
        membership = self.agent.swim.membership
        stats = membership.stats
        messages = CounterMetricFamily(
            "meshd_swim_messages", "SWIM messages by type", labels=["direction", "type"]
        )
        for direction, counts in (("sent", stats.sent), ("received", stats.received)):
            for kind, count in list(counts.items()):
                messages.add_metric([direction, kind], count)
        yield messages
        yield CounterMetricFamily(
            "meshd_swim_failed_probes",
            "probes that ended with no ack, direct or relayed",
            value=stats.failed_probes,
        )
        yield CounterMetricFamily(
            "meshd_swim_late_timers",
            "membership timers handled late (this agent's event loop stalled)",
            value=stats.late_timers,
        )
        yield GaugeMetricFamily(
            "meshd_swim_awareness",
            "local health score (0 healthy, 7 most): probes and timeouts are scaled by score + 1,"
            " gossip too from 4",
            value=membership.awareness.score,
        )

    def _records(self, store: RecordStore) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "meshd_gossip_records_taken", "records taken from peers", value=store.stats.taken
        )
        yield CounterMetricFamily(
            "meshd_gossip_copies_swapped",
            "copies of an origin built aside and swapped in whole (first sync, reset, restart)",
            value=store.stats.swapped,
        )
        yield CounterMetricFamily(
            "meshd_gossip_tombstones_expired", "tombstones purged", value=store.stats.expired
        )
        yield CounterMetricFamily(
            "meshd_clusters_forgotten",
            "clusters forgotten after --cluster-expiry out of the answers",
            value=self.agent.expiry.forgotten,
        )
        held = GaugeMetricFamily("meshd_gossip_records", "records held", labels=["kind"])
        logs = list(store.logs.values())
        live = sum(log.live for log in logs)
        held.add_metric(["live"], live)
        held.add_metric(["tombstone"], sum(len(log.records) for log in logs) - live)
        yield held
        yield GaugeMetricFamily(
            "meshd_gossip_copies_building",
            "copies of an origin being built aside (resets, new generations)",
            value=len(store.pending),
        )

    def _catalog(self) -> Iterator[Metric]:
        states = self.agent.catalog.clusters()
        healthy = self.agent.healthy_clusters()
        clusters = GaugeMetricFamily("meshd_clusters", "clusters by health", labels=["health"])
        clusters.add_metric(["healthy"], sum(1 for s in states if s.cluster_id in healthy))
        clusters.add_metric(["unhealthy"], sum(1 for s in states if s.cluster_id not in healthy))
        yield clusters
        per_cluster = GaugeMetricFamily(
            "meshd_cluster_healthy",
            "1 while this agent reaches the cluster and the ring holds it alive, 0 while it is "
            "unreachable or dead and so out of the answers; one series per cluster held",
            labels=["cluster"],
        )
        for s in states:
            per_cluster.add_metric([s.cluster_id], 1 if s.cluster_id in healthy else 0)
        yield per_cluster
        keys = {k for s in states for k in s.services}
        yield GaugeMetricFamily(
            "meshd_catalog_services", "services exported in the clusterset", value=len(keys)
        )
        endpoints = sum(len(svc.endpoints) for s in states for svc in s.services.values())
        yield GaugeMetricFamily(
            "meshd_catalog_endpoints", "endpoints held, all clusters", value=endpoints
        )
        yield GaugeMetricFamily(
            "meshd_failed_open_services",
            "services failing open: answered from unreachable or drained clusters because no "
            "reachable, undrained one has a ready endpoint",
            value=len(self.agent.stats.failed_open),
        )
        yield from self._routing()
        yield CounterMetricFamily(
            "meshd_source_problems",
            "bad manifests and objects reported by the source",
            value=self.agent.stats.source_problems,
        )

    def _routing(self) -> Iterator[Metric]:
        planner = self.agent.planner
        services = GaugeMetricFamily(
            "meshd_routing_services",
            "services answered by this agent, by how: from their first tier, from a failover "
            "tier, or failing open",
            labels=["state"],
        )
        later, failed = len(planner.later_tier), len(planner.failed_open)
        services.add_metric(["first_tier"], len(planner.zone_keys) - later - failed)
        services.add_metric(["later_tier"], later)
        services.add_metric(["failed_open"], failed)
        yield services
        yield CounterMetricFamily(
            "meshd_routing_tier_changes",
            "services that moved between first tier, failover tier and failing open",
            value=planner.tier_changes,
        )
        drains = cluster_drains(self.agent.catalog.states())
        yield GaugeMetricFamily(
            "meshd_drained_clusters",
            "clusters that announce they take no traffic (meshd drain), as this agent holds them",
            value=sum(1 for d in drains.values() if d.drained),
        )
        per_cluster = GaugeMetricFamily(
            "meshd_cluster_drained",
            "1 while the cluster announces it takes no traffic (meshd drain), else 0",
            labels=["cluster"],
        )
        for cluster, drain in sorted(drains.items()):
            per_cluster.add_metric([cluster], 1 if drain.drained else 0)
        yield per_cluster
        yield GaugeMetricFamily(
            "meshd_drained_failed_open_services",
            "services failing open onto a drained cluster: no healthy, undrained cluster has a "
            "ready endpoint",
            value=len(planner.drained_used),
        )
        problems = CounterMetricFamily(
            "meshd_policy_problems",
            "meshd.io/ annotations not used (bad value, unknown key, conflict), and "
            "answers that cannot be what was asked (target_port_differs, ...), by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.agent.stats.policy_problems.items()):
            problems.add_metric([reason], count)
        yield problems
        yield GaugeMetricFamily(
            "meshd_target_port_differs_services",
            "services answered with endpoint addresses whose endpoints do not listen on the "
            "Service port (clients must dial the SRV port), or whose clusters disagree on it",
            value=len(planner.port_notes),
        )

    def _kube(self) -> Iterator[Metric]:
        writer = self.agent.kube_writer
        if writer is None:
            return
        writes = CounterMetricFamily(
            "meshd_kube_writes",
            "writes to the Kubernetes API (ServiceExport status, ServiceImports, the leader "
            "Lease), by outcome: ok, conflict, forbidden, invalid, not_found, error, unreachable",
            labels=["verb", "resource", "outcome"],
        )
        for (verb, resource, outcome), count in list(writer.stats.writes.items()):
            writes.add_metric([verb, resource, outcome], count)
        yield writes
        leader = GaugeMetricFamily(
            "meshd_kube_leader",
            "1 while this replica holds its cluster's Lease and writes back to the API",
            labels=["cluster"],
        )
        leader.add_metric([self.agent.catalog.local_id], 1 if writer.is_leader() else 0)
        yield leader


class AgentMetrics:
    def __init__(self, agent: Agent) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.zone_rebuild_seconds = Histogram(
            "meshd_zone_rebuild_seconds",
            "time to run the policy and build a zone snapshot",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        agent.rebuild_observers.append(self.zone_rebuild_seconds.observe)
        self.registry.register(_AgentCollector(agent))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
