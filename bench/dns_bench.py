"""meshd against Knot DNS and Unbound, same names, same queries, driven by dnsperf.

What runs (everything on 127.0.0.1, with configurations generated into bench/work/):

- meshd, as shipped: ``meshd run`` reading a manifests directory of N ClusterSetIP services
  with 3 ready endpoints and a named port (metrics on, health filtering on, rotation on);
- Knot DNS (knotd) authoritative for a zone file with the same records;
- Unbound with the same records as local-data (``local-zone: static``);
- optionally meshd with ``--dns-workers W`` (SO_REUSEPORT).

Each server is pinned to core 0 (``taskset``) and dnsperf to core 1. The query file (dnsperf
``-B``, raw messages) mixes 75% A, 20% SRV on ``_http._tcp`` and 5% names that do not exist,
half of them with EDNS0 (as forwarders send them). For every run and every server, in an
order rotated between runs:

1. saturation: dnsperf with 200 outstanding queries, no rate limit; queries per second;
2. CPU per query at a fixed rate (``--rate``): server CPU time (utime + stime of all its
   threads and processes, from /proc) divided by the queries answered;
3. latency at 10,000 queries/s: p50 and p99 from dnsperf ``-v``'s per-query times.

The report is a Markdown table of medians over the runs, with the machine, the date and the
command; ``--out`` appends it to a file. Usage::

    python bench/dns_bench.py --runs 5 --out bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
from common import cpu_model, free_port  # bench/common.py (run from the repo root)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
ZONE = "clusterset.local"
NAMESPACE = "bench"
TICKS = os.sysconf("SC_CLK_TCK")


# --- data ---------------------------------------------------------------------------------


def address(i: int, j: int) -> str:
    n = i * 3 + j
    return f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}"


def records(services: int) -> Iterator[tuple[str, str, str]]:
    """(owner, type, rdata) of every record the three servers serve."""
    for i in range(services):
        name = f"svc{i}.{NAMESPACE}.svc.{ZONE}."
        for j in range(3):
            yield name, "A", address(i, j)
        yield f"_http._tcp.{name}", "SRV", f"0 100 80 {name}"


def write_manifests(directory: Path, services: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"]
    for i in range(services):
        eps = "".join(f'  - addresses: ["{address(i, j)}"]\n' for j in range(3))
        meta = f"metadata:\n  name: svc{i}\n  namespace: {NAMESPACE}\n"
        docs.append(
            f"apiVersion: v1\nkind: Service\n{meta}spec:\n  ports:\n  - name: http\n"
            f"    protocol: TCP\n    port: 80\n"
        )
        docs.append(f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}")
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: svc{i}-1\n  namespace: {NAMESPACE}\n  labels:\n"
            f"    kubernetes.io/service-name: svc{i}\naddressType: IPv4\nendpoints:\n{eps}"
        )
    (directory / "services.yaml").write_text("---\n".join(docs))


def write_queries(path: Path, services: int, count: int, seed: int, kind: str = "mixed") -> None:
    """dnsperf -B input: each query as a 2-byte length and the raw message. ``kind``:
    ``mixed`` (every other query with EDNS0), ``plain`` or ``edns`` (all of them)."""
    rng = random.Random(seed)
    out = bytearray()
    for n in range(count):
        i = rng.randrange(services)
        roll = rng.random()
        if roll < 0.05:
            qname, qtype = f"missing{i}.{NAMESPACE}.svc.{ZONE}", "A"
        elif roll < 0.25:
            qname, qtype = f"_http._tcp.svc{i}.{NAMESPACE}.svc.{ZONE}", "SRV"
        else:
            qname, qtype = f"svc{i}.{NAMESPACE}.svc.{ZONE}", "A"
        edns = {"mixed": n % 2 == 1, "plain": False, "edns": True}[kind]
        q = dns.message.make_query(qname, qtype, use_edns=0 if edns else False, payload=1232)
        q.flags &= ~dns.flags.RD
        wire = q.to_wire()
        out += len(wire).to_bytes(2, "big") + wire
    path.write_bytes(bytes(out))


# --- servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, core: int) -> None:
        assert self.log is not None
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["taskset", "-c", str(core), *self.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        probe = dns.message.make_query(f"svc0.{NAMESPACE}.svc.{ZONE}", "A")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                reply = dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=0.5)
                if reply.answer:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within 60 s")

    def pids(self) -> list[int]:
        """The server's process and all its descendants (meshd's DNS workers)."""
        assert self.proc is not None
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                todo.extend(int(c) for c in children)
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def knot(work: Path, services: int) -> Server:
    port = free_port()
    d = work / "knot"
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        "$TTL 5",
        f"{ZONE}. 5 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 5",
        f"{ZONE}. 5 IN NS ns.dns.{ZONE}.",
    ]
    lines += [f"{owner} 5 IN {rtype} {rdata}" for owner, rtype, rdata in records(services)]
    (d / f"{ZONE}.zone").write_text("\n".join(lines) + "\n")
    (d / "knot.conf").write_text(
        f"server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n  udp-workers: 1\n"
        f"  tcp-workers: 1\n  background-workers: 1\n"
        f"database:\n  storage: {d}\nlog:\n  - target: stderr\n    any: warning\n"
        f"zone:\n  - domain: {ZONE}\n    file: {d}/{ZONE}.zone\n    semantic-checks: off\n"
    )
    return Server("knot", port, ["knotd", "-c", str(d / "knot.conf")], log=d / "log")


def unbound(work: Path, services: int) -> Server:
    port = free_port()
    d = work / "unbound"
    d.mkdir(parents=True, exist_ok=True)
    data = [f'  local-data: "{o} 5 IN {t} {r}"' for o, t, r in records(services)]
    soa = f"{ZONE}. 5 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 5"
    (d / "unbound.conf").write_text(
        "server:\n"
        f"  interface: 127.0.0.1@{port}\n  port: {port}\n  num-threads: 1\n"
        '  do-daemonize: no\n  chroot: ""\n  username: ""\n  use-syslog: no\n'
        f'  logfile: ""\n  pidfile: "{d}/unbound.pid"\n  directory: "{d}"\n'
        "  verbosity: 0\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n"
        "  so-reuseport: no\n  num-queries-per-thread: 4096\n"
        f'  local-zone: "{ZONE}." static\n  local-data: "{soa}"\n'
        + "\n".join(data)
        + "\nremote-control:\n  control-enable: no\n"
    )
    return Server("unbound", port, ["unbound", "-d", "-c", str(d / "unbound.conf")], log=d / "log")


def meshd(work: Path, workers: int) -> Server:
    port = free_port()
    name = "meshd" if not workers else f"meshd-{workers}w"
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    argv = [
        str(Path(sys.executable).parent / "meshd"),
        "run",
        "--insecure",
        "--cluster-id",
        "bench",
        "--manifests",
        str(work / "manifests"),
        "--dns-listen",
        f"127.0.0.1:{port}",
        "--grpc-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-level",
        "warning",
        "--dns-workers",
        str(workers),
    ]
    return Server(name, port, argv, log=d / "log")


# --- measurements -------------------------------------------------------------------------


@dataclass
class Figures:
    qps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)


def dnsperf(
    server: Server, queries: Path, seconds: float, rate: int | None, verbose: bool = False
) -> str:
    argv = [
        "taskset",
        "-c",
        "1",
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-d",
        str(queries),
        "-B",
        "-l",
        str(seconds),
        "-q",
        "200",
        "-c",
        "4",
        "-t",
        "2",
    ]
    if rate:
        argv += ["-Q", str(rate)]
    if verbose:
        argv += ["-v"]
    # Into a file, not a pipe: with -v dnsperf writes a line per answer, and a pipe that
    # its reader (this process, perhaps on dnsperf's own core) drains late would block
    # dnsperf's receiving thread, which then counts the wait as the server's latency.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as out:
        result = subprocess.run(
            argv, stdout=out, stderr=subprocess.PIPE, text=True, timeout=seconds + 60
        )
        if result.returncode != 0:
            raise RuntimeError(f"dnsperf failed: {result.stderr[-2000:]}")
        out.seek(0)
        return out.read()


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in dnsperf output:\n{text[-2000:]}")
    return float(match.group(1))


def saturate(server: Server, queries: Path, seconds: float) -> tuple[float, float]:
    out = dnsperf(server, queries, seconds, None)
    return _number(r"Queries per second:\s+([\d.]+)", out), _number(
        r"Queries lost:\s+\d+ \(([\d.]+)%\)", out
    )


def cpu_per_query(server: Server, queries: Path, seconds: float, rate: int) -> float:
    before = server.cpu_seconds()
    out = dnsperf(server, queries, seconds, rate)
    used = server.cpu_seconds() - before
    completed = _number(r"Queries completed:\s+(\d+)", out)
    return used / completed * 1e6


def latency(server: Server, queries: Path, seconds: float) -> tuple[float, float]:
    out = dnsperf(server, queries, seconds, 10000, verbose=True)
    # Verbose lines end with the query's latency in seconds, e.g. "> NOERROR ... 0.000128".
    times = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.MULTILINE))
    if len(times) < 100:
        raise RuntimeError(f"too few latencies parsed ({len(times)}):\n{out[:2000]}")
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each dnsperf run")
    parser.add_argument("--rate", type=int, default=80000, help="queries/s for the CPU figure")
    parser.add_argument(
        "--workers", type=int, default=2, help="also run meshd with N workers (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append the report to this file")
    args = parser.parse_args()
    for tool in ("dnsperf", "knotd", "unbound", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install dnsperf knot unbound util-linux")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    write_manifests(WORK / "manifests", args.services)
    queries = WORK / "queries.bin"
    write_queries(queries, args.services, 100000, args.seed)
    servers = [knot(WORK, args.services), unbound(WORK, args.services), meshd(WORK, 0)]
    if args.workers:
        servers.append(meshd(WORK, args.workers))
    figures = {s.name: Figures() for s in servers}
    try:
        for run in range(args.runs):
            order = servers[run % len(servers) :] + servers[: run % len(servers)]
            for server in order:
                # Workers share the port across cores: pin them to both, as a host would.
                server.start(core=0) if server.name.count("w") == 0 else _start_unpinned(server)
                try:
                    f = figures[server.name]
                    qps, lost = saturate(server, queries, args.seconds)
                    f.qps.append(qps)
                    f.lost.append(lost)
                    f.cpu_us.append(cpu_per_query(server, queries, args.seconds, args.rate))
                    p50, p99 = latency(server, queries, min(args.seconds, 5))
                    f.p50_us.append(p50)
                    f.p99_us.append(p99)
                finally:
                    server.stop()
                print(
                    f"run {run + 1} {server.name}: {qps:,.0f} q/s, "
                    f"{f.cpu_us[-1]:.2f} µs CPU/q, p50 {f.p50_us[-1]:.0f} µs, "
                    f"p99 {f.p99_us[-1]:.0f} µs",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    report = render(args, figures)
    print(report)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)


def _start_unpinned(server: Server) -> None:
    server.start(core=0)
    assert server.proc is not None
    for pid in server.pids():
        subprocess.run(["taskset", "-a", "-p", "-c", "0,1", str(pid)], capture_output=True)


def render(args: argparse.Namespace, figures: dict[str, Figures]) -> str:
    med = statistics.median
    knot_f = figures["knot"]
    lines = [
        f"## {datetime.date.today()} — DNS: meshd vs Knot DNS vs Unbound (dnsperf)",
        "",
        f"Command: `.venv/bin/python bench/dns_bench.py --runs {args.runs} --services "
        f"{args.services} --seconds {args.seconds:g} --rate {args.rate} --workers {args.workers}`"
        f" (seed {args.seed}). Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{cpu_model()}, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; knotd, unbound and dnsperf from Debian.",
        "",
        f"{args.services} services x 3 A records + an SRV each; queries 75% A, 20% SRV, 5% "
        "NXDOMAIN, half with EDNS0. Servers pinned to core 0, dnsperf to core 1 (the worker "
        "mode is allowed both cores, so it competes with dnsperf). Medians of "
        f"{args.runs} interleaved runs.",
        "",
        "| server | q/s at saturation | vs Knot | lost % | CPU µs/query at "
        f"{args.rate:,} q/s | vs Knot | p50 µs at 10k q/s | p99 µs | p99 vs Knot |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {med(f.qps):,.0f} | {med(f.qps) / med(knot_f.qps):.2f} | "
            f"{med(f.lost):.2f} | {med(f.cpu_us):.2f} | {med(f.cpu_us) / med(knot_f.cpu_us):.2f}"
            f" | {med(f.p50_us):.0f} | {med(f.p99_us):.0f} | "
            f"{med(f.p99_us) / med(knot_f.p99_us):.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
