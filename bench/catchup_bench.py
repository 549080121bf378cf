"""Catch-up and memory of a new agent joining a ring that holds 1,000,000 endpoints (simulated).

Simulated means: no sockets and no second agent process, but every byte the newcomer
handles is what a real peer would send it. A producer process builds ``--clusters`` origins
(``--endpoints`` in all, ``--per-service`` per ClusterSetIP service, 3 by default: the worst
case, where per-service overhead dominates), each with the
agent's own ``Publisher`` (records sealed with Ed25519 keys certified by a throwaway
clusterset CA, as ``meshd certs`` makes them; ``--insecure`` for unsigned), and answers the
newcomer's digests exactly as ``Ring.PushPull`` would: ``RecordStore.select`` with the
agent's default chunk bound, message after message, with the newcomer's digest moving as it
takes each chunk. The replies are written to a file, and a fresh process (the newcomer:
nothing else in it) reads them in order and does what the agent does with each: parse,
open (signatures, validation), apply to its record store, put into the catalog; then it
plans and encodes every DNS answer. Reports the time of each stage, the process's CPU time
in it (on a shared host the wall time also counts other work) and the resident set size
(RSS, /proc/self/status) after it. By default the newcomer keeps CPython's collector
settings; ``--agent-heap`` applies the agent's own policy (``mesh.daemon.heap``: tuned
thresholds and freezes, as ``meshd run`` does), which spares most of the collector's walks
over the growing heap.

Wall-clock time on loopback would add the transfer of the bytes reported (about a second
per 100 MiB on loopback gRPC) and the round trips (one per message).

Usage: ``.venv/bin/python bench/catchup_bench.py [--endpoints 1000000] [--clusters 50]
[--insecure] [--agent-heap] [--out bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import datetime
import gc
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine  # noqa: E402

from dnsserver.zone import Zone  # noqa: E402
from mesh.daemon import heap  # noqa: E402
from mesh.model import (  # noqa: E402
    ClusterState,
    Endpoint,
    ExportedService,
    LocalExports,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.ring.catalog import Catalog, Digest  # noqa: E402
from mesh.ring.records import DEFAULT_CHUNK_BYTES, OriginLog, RecordStore  # noqa: E402
from mesh.routing.planner import AnswerPlanner  # noqa: E402
from mesh.routing.policy import Locality  # noqa: E402
from mesh.security import pki  # noqa: E402
from mesh.security.signing import Signer, SignerKey, Trust  # noqa: E402
from mesh.wire.record_codec import ChunkOpener, Publisher, chunk_to_pb  # noqa: E402
from mesh.wire.v1 import gossip_pb2 as pb  # noqa: E402

ENDPOINTS_PER_SERVICE = 3
NAMESPACES = 20
T0 = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def exports_of(cluster: int, services: int, per: int = ENDPOINTS_PER_SERVICE) -> LocalExports:
    out = {}
    for i in range(services):
        key = ServiceKey(f"ns{i % NAMESPACES}", f"s{cluster}-{i}")
        endpoints = []
        for j in range(per):
            n = i * per + j
            endpoints.append(Endpoint((f"10.{cluster}.{n // 250 % 250}.{n % 250 + 1}",)))
        out[key] = ExportedService(
            key, ServiceType.CLUSTER_SET_IP, (ServicePort("http", "TCP", 80),), tuple(endpoints)
        )
    return LocalExports(frozenset(f"ns{n}" for n in range(NAMESPACES)), out)


def produce(args: argparse.Namespace, out: Path, ca_dir: Path) -> None:
    """The ring's side: every origin's records, sent to a newcomer as PushPull replies."""
    services = args.endpoints // args.per_service // args.clusters
    ca, ca_key = pki.create_ca("bench", T0)
    (ca_dir / "ca.crt").write_bytes(pki.pem_cert(ca))
    relay = RecordStore(OriginLog("relay", "", 1))
    started = time.perf_counter()
    for c in range(1, args.clusters + 1):
        name = f"c{c}"
        signer = None
        if not args.insecure:
            cert, key = pki.issue_signer(ca, ca_key, name, T0, days=2)
            signer = Signer(SignerKey.from_pem(pki.pem_cert(cert), pki.pem_key(key)))
        catalog = Catalog(ClusterState(name, 1, 0, f"r{c % 5}", replica="a"))
        log = OriginLog(name, "a", 1)
        publisher = Publisher(log, signer, per_record=args.record_signatures == "both")
        change = catalog.set_local(exports_of(c, services, args.per_service))
        publisher.publish(catalog.local, change, 0.0)
        relay.logs[log.origin] = log
    made = time.perf_counter() - started
    theirs: dict[tuple[str, str], Digest] = {}
    messages = 0
    with out.open("wb") as fh:
        while True:
            chunks, _more = relay.select(list(theirs.values()), DEFAULT_CHUNK_BYTES)
            chunks = [c for c in chunks if c.cluster_id != "relay"]
            if not chunks:
                break
            reply = pb.PushPullResponse(chunks=[chunk_to_pb(c, "bench") for c in chunks])
            data = reply.SerializeToString()
            fh.write(struct.pack(">I", len(data)) + data)
            messages += 1
            for c in chunks:  # the newcomer's next digest, as it would report it
                log = relay.logs[(c.cluster_id, c.replica)]
                done = bool(c.head)
                version = log.progress if done else _last_version(c.records[-1])
                key = (c.cluster_id, c.replica)
                target = theirs[key].target if c.from_version else c.target
                theirs[key] = Digest(
                    c.cluster_id,
                    c.generation,
                    version,
                    c.replica,
                    partial=not done,
                    checked=version if done else 0,
                    target=0 if done else target,
                )
            if messages > 100_000:
                raise SystemExit("the producer does not converge")
    print(
        f"producer: {args.clusters} origins, {services:,} services each, records made and "
        f"sealed in {made:.1f} s; {messages} messages",
        file=sys.stderr,
    )


def _last_version(sealed: bytes) -> int:
    return int(pb.Record.FromString(pb.Sealed.FromString(sealed).body).version)


def consume(args: argparse.Namespace, path: Path, ca_dir: Path) -> list[str]:
    """The newcomer: take every reply as the agent does, then plan and encode answers."""
    base = rss_mib()
    settler = None
    if args.agent_heap:  # the agent's collector policy (mesh.daemon.runner, agent)
        heap.tune()
        settler = heap.HeapSettler()
        settler.freeze()  # what start-up made (the agent's first freeze)
    trust = None if args.insecure else Trust.from_pem((ca_dir / "ca.crt").read_bytes())
    opener = ChunkOpener(trust)
    namespaces = frozenset(f"ns{n}" for n in range(NAMESPACES))
    catalog = Catalog(ClusterState("c0", 1, 0, "r0", namespaces=namespaces, replica="a"))
    store = RecordStore(OriginLog("c0", "a", 1))
    planner = AnswerPlanner(Locality("c0", "r0"))
    wall = time.time()
    messages = size = dropped = 0
    started = time.perf_counter()
    cpu = time.process_time()
    with path.open("rb") as fh:
        while header := fh.read(4):
            data = fh.read(struct.unpack(">I", header)[0])
            size += len(data)
            messages += 1
            for msg in pb.PushPullResponse.FromString(data).chunks:
                chunk = opener.open(msg, wall)
                applied = store.apply(chunk, 0.0)
                dropped += bool(applied.dropped)
                if applied.state is not None:
                    change = catalog.put(applied.state, None, True)
                    if settler is not None:
                        settler.made(len(change.services))
                    planner.note(change)
    gc.collect()
    took = time.perf_counter() - started
    took_cpu = time.process_time() - cpu
    taken_rss = rss_mib()
    started = time.perf_counter()
    cpu = time.process_time()
    clusters = catalog.clusters()
    planner.note_health({s.cluster_id for s in clusters}, clusters)
    zone = Zone("clusterset.local", serial=1)
    for key, records in planner.plan(clusters, catalog.local.namespaces):
        zone.set_service(key.namespace, key.name, records)
        if settler is not None:
            settler.made(1)  # as the agent's rebuild reports what it planned
    zone.synced = True
    gc.collect()
    planned = time.perf_counter() - started
    planned_cpu = time.process_time() - cpu
    endpoints = sum(len(svc.endpoints) for s in clusters for svc in s.services.values())
    assert dropped == 0, f"{dropped} chunks dropped"
    assert endpoints == args.endpoints // args.per_service // args.clusters * (
        args.per_service * args.clusters
    )
    records = sum(len(log.records) for log in store.logs.values())
    signed = (
        "unsigned (--insecure)"
        if args.insecure
        else f"signed (Ed25519, --record-signatures {args.record_signatures}), every one verified"
    )
    return [
        f"## {datetime.date.today()} — catch-up and memory of a new agent, "
        f"{endpoints:,} endpoints (simulated)",
        "",
        f"Command: `.venv/bin/python bench/catchup_bench.py --clusters {args.clusters} "
        f"--endpoints {args.endpoints} --per-service {args.per_service} "
        f"--record-signatures {args.record_signatures}"
        f"{' --insecure' if args.insecure else ''}{' --agent-heap' if args.agent_heap else ''}`. "
        f"Machine: {machine()}. {args.clusters} remote clusters, {records:,} records "
        f"{signed}, {zone.service_count():,} services in the zone; {messages:,} messages of "
        f"at most {DEFAULT_CHUNK_BYTES // 1024} KiB of records, {size / 2**20:.0f} MiB in all. "
        f"RSS before: {base:.0f} MiB."
        f"{' Collector: as the agent (--agent-heap).' if args.agent_heap else ''}",
        "",
        "| stage (the newcomer) | seconds | CPU seconds | RSS after, MiB |",
        "|---|---:|---:|---:|",
        f"| parse + verify + validate + apply every message | {took:.1f} | {took_cpu:.2f} "
        f"| {taken_rss:.0f} |",
        f"| policy + DNS answers for every service | {planned:.1f} | {planned_cpu:.2f} "
        f"| {rss_mib():.0f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--endpoints", type=int, default=1_000_000)
    parser.add_argument("--insecure", action="store_true", help="unsigned records")
    parser.add_argument("--per-service", type=int, default=ENDPOINTS_PER_SERVICE)
    parser.add_argument(
        "--record-signatures",
        choices=["both", "batch"],
        default="both",
        help="how the origins sign (meshd run --record-signatures)",
    )
    parser.add_argument(
        "--agent-heap",
        action="store_true",
        help="the newcomer collects garbage as the agent does (mesh.daemon.heap: tuned "
        "thresholds, a freeze per 1,000 services taken)",
    )
    parser.add_argument("--out", type=Path, help="append the report to this file")
    parser.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        produce(args, args.data / "replies.bin", args.data)
        return
    if args.role == "consume":
        print("\n".join(consume(args, args.data / "replies.bin", args.data)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        common = (
            [
                sys.executable,
                __file__,
                "--clusters",
                str(args.clusters),
                "--endpoints",
                str(args.endpoints),
                "--per-service",
                str(args.per_service),
                "--record-signatures",
                args.record_signatures,
                "--data",
                tmp,
            ]
            + (["--insecure"] if args.insecure else [])
            + (["--agent-heap"] if args.agent_heap else [])
        )
        subprocess.run([*common, "--role", "produce"], check=True)
        done = subprocess.run(
            [*common, "--role", "consume"], check=True, capture_output=True, text=True
        )
    report = done.stdout
    print(report)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + report)


if __name__ == "__main__":
    main()
