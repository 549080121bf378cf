"""Benchmark of the DNS cores in-process: zone build time and per-query answer cost.

What it measures (no sockets; the socket-level comparison with Knot and Unbound under
dnsperf is the DNS issue's benchmark):

- build: routing policy + ``build_zone`` for N services of 3 endpoints in 3 clusters, i.e. the
  work an agent does when the catalog changes (today it rebuilds the whole zone);
- respond: ``dnsserver.query.respond`` on a mix of queries (A, SRV, 5% NXDOMAIN, half with
  EDNS), in queries per second of one core, without the kernel's send/receive cost;
- one change: what the agent does when one service of one cluster changes, split in two:
  the catalog taking the cluster's new state (``Catalog.merge``, which diffs the old and new
  state: one comparison per service of that cluster), and the answers' rebuild (the planner
  running the policy for the changed service and ``Zone.set_service``), which must not grow
  with the number of services.

Usage: ``python bench/zone_bench.py [--services 1000 10000] [--runs 5]``; prints a Markdown
table with medians, the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import time
from dataclasses import replace

import dns.message
from common import cpu_model  # bench/common.py (run from the repo root)

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone, build_zone
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.ring.catalog import Catalog
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality, decide

CLUSTERS = (("east", "us"), ("west", "us"), ("south", "eu"))


def states(services: int) -> list[ClusterState]:
    out = []
    for c, (cluster, region) in enumerate(CLUSTERS):
        exported = {}
        for i in range(services):
            key = ServiceKey(f"ns{i % 50}", f"svc{i}")
            eps = tuple(
                Endpoint((f"10.{c}.{(i * 3 + j) // 250 % 250}.{(i * 3 + j) % 250 + 1}",))
                for j in range(3)
            )
            exported[key] = ExportedService(
                key, ServiceType.CLUSTER_SET_IP, (ServicePort("http", "TCP", 80),), eps
            )
        namespaces = frozenset(f"ns{n}" for n in range(50))
        out.append(ClusterState(cluster, 1, 1, region, "", namespaces, exported))
    return out


def build(all_states: list[ClusterState]) -> float:
    started = time.perf_counter()
    result = decide(
        all_states, Locality("east", "us"), all_states[0].namespaces, {"east", "west", "south"}
    )
    build_zone("clusterset.local", result.records, serial=1)
    return time.perf_counter() - started


def queries(services: int, count: int, rng: random.Random) -> list[bytes]:
    out = []
    for n in range(count):
        i = rng.randrange(services)
        roll = rng.random()
        if roll < 0.05:
            name, rdtype = f"missing{i}.ns{i % 50}.svc.clusterset.local", "A"
        elif roll < 0.25:
            name, rdtype = f"_http._tcp.svc{i}.ns{i % 50}.svc.clusterset.local", "SRV"
        else:
            name, rdtype = f"svc{i}.ns{i % 50}.svc.clusterset.local", "A"
        q = dns.message.make_query(name, rdtype, use_edns=0 if n % 2 else False)
        out.append(q.to_wire())
    return out


def answer_rate(services: int, all_states: list[ClusterState], rng: random.Random) -> float:
    result = decide(
        all_states, Locality("east", "us"), all_states[0].namespaces, {"east", "west", "south"}
    )
    zone = build_zone("clusterset.local", result.records, serial=1)
    batch = queries(services, 20000, rng)
    stats = QueryStats()
    started = time.perf_counter()
    for q in batch:
        respond(zone, q, True, stats)
    return len(batch) / (time.perf_counter() - started)


def one_change(all_states: list[ClusterState], rounds: int = 200) -> tuple[float, float]:
    """Median seconds of (catalog merge with diff, answers rebuild) for one changed service."""
    local = all_states[0]
    catalog = Catalog(local)
    for state in all_states[1:]:
        catalog.merge(state)
    planner = AnswerPlanner(Locality("east", "us"))
    planner.note_health({"east", "west", "south"}, catalog.states())
    zone = Zone("clusterset.local", serial=1)
    for key, records in planner.plan(catalog.states(), local.namespaces):
        zone.set_service(key.namespace, key.name, records)
    west = all_states[1]
    key = next(iter(west.services))
    merges, rebuilds = [], []
    for n in range(rounds):
        svc = west.services[key]
        endpoint = Endpoint((f"10.200.{n // 250 % 250}.{n % 250 + 1}",))
        changed = replace(svc, endpoints=(*svc.endpoints[:2], endpoint))
        west = replace(west, version=west.version + 1, services={**west.services, key: changed})
        started = time.perf_counter()
        change = catalog.merge(west)
        merged = time.perf_counter()
        assert change is not None
        assert change.services == {key}
        planner.note(change)
        for k, records in planner.plan(catalog.states(), local.namespaces):
            zone.set_service(k.namespace, k.name, records)
        zone.set_serial(n + 2)
        done = time.perf_counter()
        merges.append(merged - started)
        rebuilds.append(done - merged)
    return statistics.median(merges), statistics.median(rebuilds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, "
        f"Python {platform.python_version()}; date: {datetime.date.today()}; seed {args.seed}"
    )
    print()
    print(
        "| services | full zone build, ms | respond(), queries/s (one core) | one change: "
        "catalog merge + diff, ms | one change: answers rebuild, µs |"
    )
    print("|---:|---:|---:|---:|---:|")
    for services in args.services:
        all_states = states(services)
        builds = [build(all_states) for _ in range(args.runs)]
        rates = [answer_rate(services, all_states, rng) for _ in range(args.runs)]
        changes = [one_change(all_states) for _ in range(args.runs)]
        merge = statistics.median(c[0] for c in changes)
        rebuild = statistics.median(c[1] for c in changes)
        print(
            f"| {services} | {statistics.median(builds) * 1000:.1f} | "
            f"{statistics.median(rates):,.0f} | {merge * 1000:.2f} | {rebuild * 1e6:.0f} |"
        )


if __name__ == "__main__":
    main()
