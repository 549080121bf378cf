"""Memory and time of an agent holding a large clusterset: 1,000,000 endpoints by default.

The states are built as the ring delivers them: protobuf bytes decoded and validated by
``mesh.codec``, merged into a ``Catalog``, planned by ``AnswerPlanner`` and encoded into a
``Zone`` — the same objects a running agent holds. Reports the resident set size (RSS,
from /proc/self/status) after each stage and the time each stage took.

Usage: ``python bench/memory_bench.py [--clusters 50] [--endpoints 1000000] [--out FILE]``
"""

from __future__ import annotations

import argparse
import datetime
import gc
import time
from pathlib import Path

from common import machine

from dnsserver.zone import Zone
from mesh.catalog import Catalog
from mesh.codec import state_from_pb
from mesh.model import ClusterState
from mesh.planner import AnswerPlanner
from mesh.policy import Locality
from mesh.wire.v1 import gossip_pb2 as pb

ENDPOINTS_PER_SERVICE = 3


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wire_state(cluster: int, services: int) -> bytes:
    """One cluster's state as the ring carries it (serialized protobuf)."""
    msg = pb.ClusterState(
        cluster_id=f"c{cluster}",
        generation=1,
        version=1,
        region=f"r{cluster % 5}",
        namespaces=[f"ns{n}" for n in range(20)],
    )
    for i in range(services):
        svc = msg.services.add(
            namespace=f"ns{i % 20}", name=f"s{cluster}-{i}", type=pb.CLUSTER_SET_IP
        )
        svc.ports.add(name="http", protocol="TCP", port=80)
        for j in range(ENDPOINTS_PER_SERVICE):
            n = i * ENDPOINTS_PER_SERVICE + j
            svc.endpoints.add(
                addresses=[f"10.{cluster}.{n // 250 % 250}.{n % 250 + 1}"], ready=True
            )
    return msg.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--endpoints", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    services = args.endpoints // ENDPOINTS_PER_SERVICE // args.clusters
    stages: list[tuple[str, float, float]] = []
    base = rss_mib()
    started = time.perf_counter()
    catalog = Catalog(
        ClusterState("c0", 1, 1, "r0", namespaces=frozenset(f"ns{n}" for n in range(20)))
    )
    for cluster in range(1, args.clusters + 1):
        state = state_from_pb(pb.ClusterState.FromString(wire_state(cluster, services)))
        catalog.merge(state)
    gc.collect()
    stages.append(
        ("decode + validate + merge into the catalog", time.perf_counter() - started, rss_mib())
    )
    started = time.perf_counter()
    planner = AnswerPlanner(Locality("c0", "r0"))
    planner.note_health({s.cluster_id for s in catalog.clusters()}, catalog.clusters())
    zone = Zone("clusterset.local", serial=1)
    for key, records in planner.plan(catalog.clusters(), catalog.local.namespaces):
        zone.set_service(key.namespace, key.name, records)
    zone.synced = True
    gc.collect()
    stages.append(
        ("policy + DNS answers for every service", time.perf_counter() - started, rss_mib())
    )
    endpoints = sum(len(svc.endpoints) for s in catalog.clusters() for svc in s.services.values())
    lines = [
        f"## {datetime.date.today()} — memory of an agent holding {endpoints:,} endpoints",
        "",
        f"Command: `.venv/bin/python bench/memory_bench.py --clusters {args.clusters} "
        f"--endpoints {args.endpoints}`. Machine: {machine()}. {args.clusters} remote clusters x "
        f"{services:,} ClusterSetIP services x {ENDPOINTS_PER_SERVICE} endpoints, decoded from "
        f"protobuf as the ring delivers them; {zone.service_count():,} services in the zone. "
        f"RSS before: {base:.0f} MiB.",
        "",
        "| stage | seconds | RSS after, MiB |",
        "|---|---:|---:|",
        *(f"| {name} | {seconds:.1f} | {rss:.0f} |" for name, seconds, rss in stages),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)


if __name__ == "__main__":
    main()
