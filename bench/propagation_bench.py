"""How fast one service change reaches every agent: real ``meshd run`` processes on loopback.

N agents (clusters c0..c{N-1}, each exporting its own service ``svc-<i>`` and sharing the
headless ``db``) are joined in a ring. For each trial, agent 0's manifests get a new
endpoint address for ``db``; the clock starts at the file write and stops when every
agent's DNS answer for ``db.shop.svc.clusterset.local`` contains the new address (polled
over UDP every 10 ms). The time includes agent 0 noticing the edit (its manifests
directory is polled every 0.25 s), so it is the end-to-end figure an operator sees.

Usage: ``python bench/propagation_bench.py --agents 10 --trials 20 [--out bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
from common import free_port  # bench/common.py (run from the repo root)

ROOT = Path(__file__).resolve().parents[1]
NAME = "db.shop.svc.clusterset.local"


def manifests(directory: Path, index: int, db_address: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta = "metadata:\n  name: db\n  namespace: shop\n"
    (directory / "db.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n"
        f"apiVersion: v1\nkind: Service\n{meta}spec:\n  clusterIP: None\n---\n"
        f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-1\n"
        "  namespace: shop\n  labels:\n    kubernetes.io/service-name: db\n"
        f'addressType: IPv4\nendpoints:\n  - addresses: ["{db_address}"]\n'
    )


def addresses(port: int) -> set[str]:
    # EDNS0 with 1232 octets, and TCP when even that is truncated (past ~70 agents): a
    # truncated answer would never hold every agent's address.
    q = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    with contextlib.suppress(Exception):
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
        if reply.flags & dns.flags.TC:
            reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=0.5)
        return {rd.to_text() for rrset in reply.answer for rd in rrset}
    return set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--agent-flag",
        action="append",
        default=[],
        help="a meshd run flag, e.g. --agent-flag=--max-exchange-rate=5",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshd-prop-"))
    meshd = str(Path(sys.executable).parent / "meshd")
    dns_ports = [free_port() for _ in range(args.agents)]
    grpc = [f"127.0.0.1:{free_port()}" for _ in range(args.agents)]
    procs = []
    try:
        for i in range(args.agents):
            manifests(work / f"c{i}", i, f"10.{i}.0.1")
            argv = [
                meshd,
                "run",
                "--insecure",
                "--cluster-id",
                f"c{i}",
                "--manifests",
                str(work / f"c{i}"),
                "--dns-listen",
                f"127.0.0.1:{dns_ports[i]}",
                "--grpc-listen",
                grpc[i],
                "--advertise",
                grpc[i],
                "--admin-listen",
                "127.0.0.1:0",
                "--log-level",
                "warning",
                "--join",
                ",".join(g for g in grpc if g != grpc[i]),
                *args.agent_flag,
            ]
            procs.append(
                subprocess.Popen(
                    argv,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        everyone = {f"10.{i}.0.1" for i in range(args.agents)}
        deadline = time.monotonic() + 300
        while not all(addresses(p) == everyone for p in dns_ports):
            if time.monotonic() > deadline:
                sys.exit("the agents did not converge within 300 s")
            time.sleep(0.1)
        times = []
        for trial in range(args.trials):
            new = f"10.200.{trial // 250}.{trial % 250 + 1}"
            started = time.monotonic()
            manifests(work / "c0", 0, new)
            pending = set(dns_ports)
            while pending:
                pending = {p for p in pending if new not in addresses(p)}
                if time.monotonic() - started > 30:
                    sys.exit(f"trial {trial}: not everywhere after 30 s")
                time.sleep(0.01)
            times.append(time.monotonic() - started)
            time.sleep(0.3)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    times.sort()
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    report = (
        f"## {datetime.date.today()} — one service change to every agent (real processes)\n\n"
        f"Command: `.venv/bin/python bench/propagation_bench.py --agents {args.agents} "
        f"--trials {args.trials}{''.join(' --agent-flag=' + f for f in args.agent_flag)}` "
        f"at {commit}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. {args.agents} `meshd run` "
        "processes on loopback, default settings unless the command says otherwise (gossip "
        "every 0.5 s, manifests polled every 0.25 s); time from the manifest write at one "
        "agent to the new address in every agent's DNS answer.\n\n"
        "| agents | trials | p50 s | p99 s | max s |\n|---:|---:|---:|---:|---:|\n"
        f"| {args.agents} | {len(times)} | {statistics.median(times):.3f} | "
        f"{times[min(len(times) - 1, int(len(times) * 0.99))]:.3f} | {times[-1]:.3f} |\n"
    )
    print(report)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)


if __name__ == "__main__":
    main()
