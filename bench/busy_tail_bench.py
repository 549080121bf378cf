"""DNS tail at 10,000 q/s, meshd against Knot, idle and busy, plain and EDNS queries apart.

Issue 17's steady-tail goal: p99 at 10,000 q/s at most Knot's as the median of interleaved
runs, over 1.5x Knot's in at most one of them, for plain and for EDNS queries, idle and
while the agent works. This bench makes that work itself:

- **busy meshd**: 10 peer agents (``meshd run --insecure``, 5 services each, on core 1 with
  dnsperf) join the measured agent, so it gossips with 10 peers (push-pulls every
  ``--gossip-interval``, SWIM probes) throughout; and a thread rewrites ``churn.yaml`` in its
  manifests directory every ``--churn-ms`` (100 ms): one service's endpoint address moves,
  so one of its own services changes that often (the agent sees the edits at its
  manifests poll), is published, gossiped and rebuilt;
- **busy Knot**: the same service ``churn`` gets a DNS UPDATE (RFC 2136, replace its A
  record) every ``--churn-ms``, applied by Knot as a dynamic zone change;
- **idle**: the same servers without peers and churn.

Each server is pinned to core 0 (``taskset``) as in ``dns_bench.py``; dnsperf runs on
core 1 at 10,000 q/s for ``--seconds`` per load, with a query file of only plain queries
and one of only EDNS0 queries (75% A, 20% SRV, 5% NXDOMAIN, as dns_bench's mix; which of
the two runs first alternates from run to run). Runs are interleaved (the order of servers
rotates from run to run); ``--workers`` adds meshd variants with ``--dns-workers N``.
Reported per mode, variant and query kind: the median p50 and p99 of Knot and meshd, the
p99 ratio to Knot's in the same run, per run, with the count of runs over 1.5x, and the
median ratio of CPU per query (busy: the agent's gossip and rebuilds are counted in, so
that ratio is an upper bound).

Usage: ``.venv/bin/python bench/busy_tail_bench.py [--runs 10] [--seconds 5]
[--modes idle busy] [--workers 0 1] [--out bench/RESULTS.md]``. Needs ``knotd``, ``dnsperf``,
``taskset`` (``make bench-deps``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.query
import dns.update
import dns_bench
from common import free_port, machine

ROOT = Path(__file__).resolve().parents[1]
PEERS = 10
KINDS = ("plain", "edns")


def churn_yaml(n: int) -> str:
    meta = f"metadata:\n  name: churn\n  namespace: {dns_bench.NAMESPACE}\n"
    return (
        f"apiVersion: v1\nkind: Service\n{meta}spec:\n  ports:\n  - name: http\n"
        f"    protocol: TCP\n    port: 80\n---\n"
        f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}---\n"
        f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
        f"  name: churn-1\n  namespace: {dns_bench.NAMESPACE}\n  labels:\n"
        f"    kubernetes.io/service-name: churn\naddressType: IPv4\nendpoints:\n"
        f'  - addresses: ["10.251.{n // 250 % 250}.{n % 250 + 1}"]\n'
    )


def knot_updatable(work: Path, services: int) -> dns_bench.Server:
    """dns_bench's Knot, with dynamic updates from loopback allowed and the churn name."""
    server = dns_bench.knot(work, services)
    d = work / "knot"
    zone_file = d / f"{dns_bench.ZONE}.zone"
    zone_file.write_text(
        zone_file.read_text() + f"churn.{dns_bench.NAMESPACE}.svc.{dns_bench.ZONE}. 5 IN A "
        "10.251.0.1\n"
    )
    conf = (d / "knot.conf").read_text()
    conf = conf.replace(
        "zone:\n", "acl:\n  - id: update\n    address: 127.0.0.1\n    action: update\nzone:\n"
    )
    conf = conf.replace("semantic-checks: off\n", "semantic-checks: off\n    acl: update\n")
    conf += "    zonefile-sync: -1\n    journal-content: none\n"
    (d / "knot.conf").write_text(conf)
    return server


def meshd_agent(name: str, manifests: Path, grpc: int, join: list[str]) -> list[str]:
    argv = [
        str(Path(sys.executable).parent / "meshd"),
        "run",
        "--insecure",
        "--cluster-id",
        name,
        "--manifests",
        str(manifests),
        "--grpc-listen",
        f"127.0.0.1:{grpc}",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-level",
        "warning",
    ]
    for seed in join:
        argv += ["--join", seed]
    return argv


@contextlib.contextmanager
def peers(work: Path, count: int, measured_grpc: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` small agents on core 1, each joining the measured agent and the first peer."""
    procs: list[subprocess.Popen[bytes]] = []
    first = free_port()
    try:
        for n in range(count):
            manifests = work / f"peer{n}"
            dns_bench.shutil.rmtree(manifests, ignore_errors=True)
            dns_bench.write_manifests(manifests, 5)
            grpc = first if n == 0 else free_port()
            join = [f"127.0.0.1:{measured_grpc}"] + ([] if n == 0 else [f"127.0.0.1:{first}"])
            argv = meshd_agent(f"peer{n}", manifests, grpc, join)
            argv += ["--dns-listen", f"127.0.0.1:{free_port()}"]
            log = open(work / f"peer{n}.log", "wb")  # noqa: SIM115 (closed with the process)
            procs.append(
                subprocess.Popen(
                    ["taskset", "-c", "1", *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def churning(server: dns_bench.Server, manifests: Path, every_s: float) -> Iterator[list[int]]:
    """Change the service ``churn`` every ``every_s``: meshd's file, or Knot's A record by
    DNS UPDATE. Yields a one-item list counting the changes made (failed updates raise)."""
    done = threading.Event()
    made = [0]
    failures: list[BaseException] = []

    def change(n: int) -> None:
        if server.name == "knot":
            update = dns.update.UpdateMessage(dns_bench.ZONE)
            owner = f"churn.{dns_bench.NAMESPACE}.svc"
            update.replace(owner, 5, "A", f"10.251.{n // 250 % 250}.{n % 250 + 1}")
            reply = dns.query.udp(update, "127.0.0.1", port=server.port, timeout=2)
            if reply.rcode() != 0:
                raise RuntimeError(f"Knot refused the update: rcode {reply.rcode()}")
        else:
            (manifests / "churn.yaml").write_text(churn_yaml(n))

    def run() -> None:
        n = 1
        while not done.wait(every_s):
            try:
                change(n)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)
                return
            made[0] += 1
            n += 1

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield made
    finally:
        done.set()
        thread.join()
    if failures:
        raise failures[0]


def load(server: dns_bench.Server, queries: Path, seconds: float) -> dict[str, float]:
    before = server.cpu_seconds()
    out = dns_bench.dnsperf(server, queries, seconds, 10000, verbose=True)
    used = server.cpu_seconds() - before
    times = sorted(
        float(m) for m in dns_bench.re.findall(r"^> \S+ .* ([\d.]+)$", out, dns_bench.re.M)
    )
    if len(times) < 1000:
        raise RuntimeError(f"too few latencies parsed ({len(times)})")

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(len(times) * q))] * 1e6

    return {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "cpu": used / len(times)}


def run_mode(args: argparse.Namespace, mode: str, work: Path) -> dict[str, dict[str, list]]:
    """Every run of one mode: {server: {kind: [figures per run]}}."""
    manifests = work / "manifests"
    queries = {kind: work / f"queries-{kind}.bin" for kind in KINDS}
    measured_grpc = free_port()
    servers = [knot_updatable(work, args.services)]
    for workers in args.workers:
        mesh = dns_bench.meshd(work, workers)
        mesh.argv = meshd_agent("bench", manifests, measured_grpc, [])
        mesh.argv += ["--dns-listen", f"127.0.0.1:{mesh.port}", "--dns-workers", str(workers)]
        servers.append(mesh)
    rows: dict[str, dict[str, list]] = {s.name: {k: [] for k in KINDS} for s in servers}
    busy = mode == "busy"
    with peers(work, PEERS if busy else 0, measured_grpc):
        for run in range(args.runs):
            shift = run % len(servers)
            order = servers[shift:] + servers[:shift]
            for server in order:
                (manifests / "churn.yaml").write_text(churn_yaml(0))
                server.start(core=0)
                try:
                    time.sleep(args.settle)
                    with (
                        churning(server, manifests, args.churn_ms / 1000)
                        if busy
                        else contextlib.nullcontext([0])
                    ) as made:
                        # Plain first in even runs, EDNS first in odd ones: the first load
                        # after a start must not always be the same kind.
                        for kind in KINDS if run % 2 == 0 else KINDS[::-1]:
                            figures = load(server, queries[kind], args.seconds)
                            rows[server.name][kind].append(figures)
                    print(
                        f"{mode} run {run + 1} {server.name}: changes {made[0]}, "
                        + ", ".join(
                            f"{k} p99 {rows[server.name][k][-1]['p99']:.0f} us" for k in KINDS
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
                finally:
                    server.stop()
    return rows


def _med(figures: list[dict[str, float]], key: str) -> float:
    return statistics.median(f[key] for f in figures)


def report(args: argparse.Namespace, results: dict[str, dict[str, dict[str, list]]]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    argv = " ".join(sys.argv[1:])
    lines = [
        f"## {datetime.date.today()} — DNS tail at 10,000 q/s against Knot, idle and busy "
        "(issue 17)",
        "",
        f"Command: `.venv/bin/python bench/busy_tail_bench.py {argv}` at {commit}. "
        f"Machine: {machine()}. {args.services} ClusterSetIP services of 3 endpoints; servers "
        f"on core 0, dnsperf (and in busy mode {PEERS} peer agents) on core 1; "
        f"{args.runs} interleaved runs of {args.seconds:g} s per load; busy: {PEERS} peers "
        f"gossiping, one service changed every {args.churn_ms:g} ms (Knot: DNS UPDATE).",
        "",
        "| mode | server | queries | Knot p50 / p99 µs | meshd p50 / p99 µs | meshd p99 / "
        "Knot's: median (runs over 1.5x) | per run | CPU per query, meshd / Knot |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    variants = [(mode, name) for mode, rows in results.items() for name in rows if name != "knot"]
    for (mode, name), kind in itertools.product(variants, KINDS):
        knot, mesh = results[mode]["knot"][kind], results[mode][name][kind]
        ratios = [m["p99"] / k["p99"] for m, k in zip(mesh, knot, strict=True)]
        cpu = [m["cpu"] / k["cpu"] for m, k in zip(mesh, knot, strict=True)]
        lines.append(
            f"| {mode} | {name} | {kind} | {_med(knot, 'p50'):.0f} / {_med(knot, 'p99'):.0f} | "
            f"{_med(mesh, 'p50'):.0f} / {_med(mesh, 'p99'):.0f} | "
            f"{statistics.median(ratios):.2f} ({sum(r > 1.5 for r in ratios)} of "
            f"{len(ratios)}) | {', '.join(f'{r:.2f}' for r in ratios)} | "
            f"{statistics.median(cpu):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--churn-ms", type=float, default=100.0)
    parser.add_argument("--modes", nargs="+", choices=("idle", "busy"), default=["idle", "busy"])
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0],
        help="meshd variants by --dns-workers (0: DNS on the agent's own loop)",
    )
    parser.add_argument("--out", type=Path, help="append the report to this file")
    args = parser.parse_args()
    for tool in ("knotd", "dnsperf", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run `make bench-deps` first")
    work = dns_bench.WORK / "busy"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dns_bench.write_manifests(work / "manifests", args.services)
    for kind in KINDS:
        dns_bench.write_queries(work / f"queries-{kind}.bin", args.services, 100000, 1, kind)
    results = {mode: run_mode(args, mode, work) for mode in args.modes}
    text = report(args, results)
    print(text)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
