"""Weighted answers: split accuracy over 10,000 queries per policy, and the CPU a query of a
weighted service costs against a plain one (issue 14: within 5%).

Both services are built by the routing policy from the same three clusters (three ready
endpoints each) and answered by ``dnsserver.query.respond``, the pure-Python path every
query that the C fast path hands over takes (the C path reads the same rotation slices).
CPU per query is measured in interleaved runs (plain, weighted, plain, ...) and reported as
medians, so the shared, noisy machine affects both alike.

Usage: ``.venv/bin/python bench/weighted_bench.py [--runs 9] [--queries 20000]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message

from dnsserver.query import QueryStats, respond
from dnsserver.zone import Zone
from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.routing.policy import Locality, decide_service

PREFIX = {"east": "10.0.0.", "west": "10.1.0.", "south": "10.3.0."}
POLICIES = {
    "70/30, max-answers 1": {"weights": "east=70,west=30", "max-answers": "1"},
    "1/1/2, max-answers 3": {"weights": "east=1,west=1,south=2", "max-answers": "3"},
    "50/30/20, 8 answers": {"weights": "east=50,west=30,south=20"},
}


def zone_for(name: str, notes: dict[str, str]) -> Zone:
    key = ServiceKey("shop", name)
    annotations = tuple(
        sorted((f"meshd.io/{k}", v) for k, v in {"affinity": "none", **notes}.items())
    )
    exporters = []
    for cluster, prefix in PREFIX.items():
        svc = ExportedService(
            key,
            ServiceType.CLUSTER_SET_IP,
            (ServicePort("http", "TCP", 80),),
            tuple(Endpoint((f"{prefix}{i}",)) for i in range(1, 4)),
            annotations=annotations if cluster == "east" else (),
        )
        state = ClusterState(cluster, 1, 1, "us", "", frozenset({"shop"}), {key: svc})
        exporters.append((state, svc))
    zone = Zone("clusterset.local", serial=1, ttl=5)
    decision = decide_service(key, exporters, Locality("east", "us"), set(PREFIX))
    zone.set_service("shop", name, decision.records)
    return zone


def leaders(zone: Zone, name: str, queries: int) -> Counter[str]:
    wire = dns.message.make_query(f"{name}.shop.svc.clusterset.local", "A").to_wire()
    found: Counter[str] = Counter()
    stats = QueryStats()
    for _ in range(queries):
        reply = dns.message.from_wire(respond(zone, wire, True, stats) or b"")
        first = reply.answer[0][0].address
        found[next(c for c, p in PREFIX.items() if first.startswith(p))] += 1
    return found


def cpu_per_query(zone: Zone, name: str, queries: int) -> float:
    wire = dns.message.make_query(f"{name}.shop.svc.clusterset.local", "A").to_wire()
    stats = QueryStats()
    started = time.process_time()
    for _ in range(queries):
        respond(zone, wire, True, stats)
    return (time.process_time() - started) / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--queries", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"Machine: {platform.machine()}, {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    print("\nSplit accuracy, 10,000 queries per policy (share of answers each cluster leads):")
    for label, notes in POLICIES.items():
        counts = leaders(zone_for("web", notes), "web", 10_000)
        weights = dict(item.split("=") for item in notes["weights"].split(","))
        total = sum(int(w) for w in weights.values())
        shares = ", ".join(
            f"{c} {counts[c] / 100:.2f}% (want {int(w) * 100 / total:.2f}%)"
            for c, w in weights.items()
        )
        print(f"  {label}: {shares}")
    plain = zone_for("web", {})
    weighted = zone_for("web", POLICIES["50/30/20, 8 answers"])
    plain_us, weighted_us = [], []
    for _ in range(args.runs):
        plain_us.append(cpu_per_query(plain, "web", args.queries) * 1e6)
        weighted_us.append(cpu_per_query(weighted, "web", args.queries) * 1e6)
    p, w = statistics.median(plain_us), statistics.median(weighted_us)
    print(f"\nCPU per query, median of {args.runs} interleaved runs of {args.queries} queries:")
    print(f"  plain {p:.2f} us, weighted {w:.2f} us, ratio {w / p:.3f}")


if __name__ == "__main__":
    main()
