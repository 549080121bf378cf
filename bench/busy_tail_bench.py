"""DNS tail at 10,000 q/s, meshd against Knot, idle and busy, plain and EDNS queries apart.

Issue 17's steady-tail goal: p99 at 10,000 q/s at most Knot's as the median of interleaved
runs, over 1.5x Knot's in at most one of them, for plain and for EDNS queries, idle and
while the agent works. This bench makes that work itself:

- **busy meshd**: 10 peer agents (``meshd run --insecure``, 5 services each, on core 1 with
  dnsperf, at nice 19: ``--peer-nice``) join the measured agent, so it gossips with 10
  peers (push-pulls every ``--gossip-interval``, SWIM probes) throughout; and a thread
  rewrites ``churn.yaml`` in its manifests directory every ``--churn-ms`` (100 ms): one
  service's endpoint address moves, so one of its own services changes that often (the
  agent sees the edits at its manifests poll), is published, gossiped and rebuilt;
- **busy Knot**: the same service ``churn`` gets a DNS UPDATE (RFC 2136, replace its A
  record) every ``--churn-ms`` (both on a fixed schedule), applied by Knot as a dynamic
  zone change;
- **idle**: the same servers without peers and churn;
- **join**: busy, measured from ``--settle`` seconds after the restarted agent first answers,
  while the 10 peers find it again: each peer's first records re-plan every answer (a
  restart's catch-up). In **busy** mode the load starts ``--settle`` seconds after the
  agent holds all 11 clusters, healthy (its ``/debug/state``), so the figure is the steady
  load the issue names, not the catch-up.

``--ref DIR`` adds a meshd variant run from a reference checkout (``PYTHONPATH=DIR``, its C
extension built in place), interleaved with the others; ``--also DIR`` (repeatable) adds
more, named ``meshd-alt1``, ``meshd-alt2``... ``--loopwatch S`` measures instead
of loading DNS: the busy (or join) agent under ``bench/loopwatch.py`` for ``S`` seconds of
churn, every loop callback timed, printed as a breakdown per callback and per change.
``--cpu-per-change S`` also measures instead: the CPU of the busy agent's process and of its
manifests scan worker per change over ``S`` seconds of churn (``--cpu-runs`` rounds,
interleaved with ``--ref``). Each DNS load also reports the run-queue wait per query of the
server's DNS thread (``/proc/<pid>/task/<tid>/schedstat``): time it was ready to answer but
something else held the core.

Each server is pinned to core 0 (``taskset``) as in ``dns_bench.py``; dnsperf runs on
core 1 (with the peers and this bench's own process) at 10,000 q/s for ``--seconds`` per
load, with a query file of only plain queries and one of only EDNS0 queries (75% A, 20%
SRV, 5% NXDOMAIN, as dns_bench's mix; which of the two runs first alternates from run to
run). Runs are interleaved (the order of servers
rotates from run to run); ``--workers`` adds meshd variants with ``--dns-workers N``.
Reported per mode, variant and query kind: the median p50 and p99 of Knot and meshd, the
p99 ratio to Knot's in the same run, per run, with the count of runs over 1.5x, and the
median ratio of CPU per query (busy: the agent's gossip and rebuilds are counted in, so
that ratio is an upper bound). ``--stamped`` times the queries by the kernel instead of
by dnsperf (``bench/stamped_load.py``: from the query's transmit stamp to the answer's
receive stamp, so the client's own waits for its core, shared with the peers, drop out).
``--peer-idle`` runs the peers in the idle scheduling class instead of at ``--peer-nice``.

Usage: ``.venv/bin/python bench/busy_tail_bench.py [--runs 10] [--seconds 5]
[--modes idle busy join] [--workers 0 1] [--ref DIR] [--also DIR] [--loopwatch S]
[--cpu-per-change S [--cpu-runs 3]] [--stamped] [--peer-idle] [--out bench/RESULTS.md]``.
Needs ``knotd``, ``dnsperf``, ``taskset`` (``make bench-deps``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.query
import dns.update
import dns_bench
import stamped_load
from common import free_port, machine

ROOT = Path(__file__).resolve().parents[1]
PEERS = 10
KINDS = ("plain", "edns")
# The peers stand for other clusters' hosts; here they share core 1 with dnsperf. At nice 0
# their reaction to each change (10 agents merging and rebuilding at once) can delay dnsperf
# reading its answers, which would count as meshd's latency: Knot's changes reach no peer.
PEER_NICE = 19


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


def meshd_agent(
    name: str, manifests: Path, grpc: int, join: list[str], admin: int = 0
) -> list[str]:
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
        f"127.0.0.1:{admin}",
        "--log-level",
        "warning",
    ]
    for seed in join:
        argv += ["--join", seed]
    return argv


class EnvServer(dns_bench.Server):
    """A server started with extra environment (a reference checkout's ``PYTHONPATH``) and,
    for meshd, the admin port its ring is watched on."""

    env: dict[str, str]
    admin: int = 0

    def start(self, core: int) -> None:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            for attempt in range(3):
                try:
                    super().start(core)
                    return
                except RuntimeError as exc:
                    # Ports are picked once per mode; on a shared host another program may
                    # take one meanwhile: pick new ones and start again.
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
                    self._new_ports()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _new_ports(self) -> None:
        old_dns, old_admin = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.admin}"
        self.port = free_port()
        if self.admin:
            self.admin = free_port()
        fresh = {old_dns: f"127.0.0.1:{self.port}", old_admin: f"127.0.0.1:{self.admin}"}
        self.argv = [fresh.get(arg, arg) for arg in self.argv]


def wait_ring(server: dns_bench.Server, clusters: int, timeout_s: float = 60.0) -> float:
    """Wait until ``server`` (meshd) holds ``clusters`` clusters, all healthy, by its
    ``/debug/state``: its peers have found it again after its start and their first records
    (each re-plans every answer) are in. Returns the seconds waited; Knot: 0."""
    admin = getattr(server, "admin", 0)
    if not admin:
        return 0.0
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(OSError, ValueError):
            url = f"http://127.0.0.1:{admin}/debug/state"
            with urllib.request.urlopen(url, timeout=2) as reply:
                state = json.load(reply)
            if sum(c["healthy"] for c in state["clusters"]) >= clusters:
                return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not see {clusters} healthy clusters in {timeout_s} s")


@contextlib.contextmanager
def peers(
    work: Path, count: int, measured_grpc: int, nice: int = PEER_NICE, idle: bool = False
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` small agents on core 1 at ``nice``, each joining the measured agent and the
    first peer."""
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
                    [
                        *(["chrt", "-i", "0"] if idle else ["nice", "-n", str(nice)]),
                        *["taskset", "-c", "1", *argv],
                    ],
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
        # On a fixed schedule, not every_s after the last change ended: Knot answers an
        # update only once it is applied (tens of ms), which would give it fewer changes.
        n = 1
        due = time.monotonic() + every_s
        while not done.wait(max(0.0, due - time.monotonic())):
            due += every_s
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


def run_queue_wait_s(server: dns_bench.Server) -> float:
    """Seconds the server's DNS thread has waited on a run queue (ready, not running): the
    second field of ``/proc/<pid>/task/<tid>/schedstat``. meshd (``--dns-workers 0``)
    answers on its main thread; Knot answers on several, so its figure sums all of its
    threads. What a query waits for when something else holds the core."""
    assert server.proc is not None
    pid = server.proc.pid
    tids = [str(pid)] if server.name != "knot" else os.listdir(f"/proc/{pid}/task")
    total = 0
    for tid in tids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9


def load(
    server: dns_bench.Server, queries: Path, seconds: float, stamped: bool = False
) -> dict[str, float]:
    """One load at 10,000 q/s: latency percentiles (µs) from dnsperf's per-answer lines or
    the kernel's stamps, and the server's CPU and run-queue wait per answered query."""
    before, waited = server.cpu_seconds(), run_queue_wait_s(server)
    if stamped:
        figures = stamped_load.stamped_load(server.port, queries, seconds, 10000)
    else:
        figures = dnsperf_figures(dns_bench.dnsperf(server, queries, seconds, 10000, verbose=True))
    used = server.cpu_seconds() - before
    waited = run_queue_wait_s(server) - waited
    figures["cpu"] = used / figures["answered"]
    figures["wait"] = waited / figures["answered"]
    return figures


def dnsperf_figures(out: str) -> dict[str, float]:
    """p50, p99 and p99.9 in µs, and the answers counted, from dnsperf's ``-v`` output."""
    times = sorted(
        float(m) for m in dns_bench.re.findall(r"^> \S+ .* ([\d.]+)$", out, dns_bench.re.M)
    )
    if len(times) < 1000:
        raise RuntimeError(f"too few latencies parsed ({len(times)})")

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(len(times) * q))] * 1e6

    return {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "answered": len(times)}


def run_mode(args: argparse.Namespace, mode: str, work: Path) -> dict[str, dict[str, list]]:
    """Every run of one mode: {server: {kind: [figures per run]}}."""
    manifests = work / "manifests"
    queries = {kind: work / f"queries-{kind}.bin" for kind in KINDS}
    measured_grpc = free_port()
    servers: list[dns_bench.Server] = [knot_updatable(work, args.services)]
    checkouts = [("", str(ROOT))] + ([("-ref", args.ref)] if args.ref else [])
    checkouts += [(f"-alt{n}", path) for n, path in enumerate(args.also, start=1)]
    for (suffix, pythonpath), workers in itertools.product(checkouts, args.workers):
        base = dns_bench.meshd(work, workers)
        mesh = EnvServer(base.name + suffix, base.port, [], log=work / f"{base.name}{suffix}.log")
        mesh.env, mesh.admin = {"PYTHONPATH": pythonpath}, free_port()
        mesh.argv = meshd_agent("bench", manifests, measured_grpc, [], mesh.admin)
        mesh.argv += ["--dns-listen", f"127.0.0.1:{mesh.port}", "--dns-workers", str(workers)]
        servers.append(mesh)
    rows: dict[str, dict[str, list]] = {s.name: {k: [] for k in KINDS} for s in servers}
    busy = mode != "idle"
    with peers(work, PEERS if busy else 0, measured_grpc, args.peer_nice, args.peer_idle):
        for run in range(args.runs):
            shift = run % len(servers)
            order = servers[shift:] + servers[:shift]
            for server in order:
                (manifests / "churn.yaml").write_text(churn_yaml(0))
                server.start(core=0)
                try:
                    # busy: the peers find the restarted agent again first (their first
                    # records re-plan every answer: a restart's catch-up, not the steady
                    # load measured here); join: measure during that catch-up.
                    waited = wait_ring(server, PEERS + 1) if mode == "busy" else 0.0
                    time.sleep(args.settle)
                    with (
                        churning(server, manifests, args.churn_ms / 1000)
                        if busy
                        else contextlib.nullcontext([0])
                    ) as made:
                        # Plain first in even runs, EDNS first in odd ones: the first load
                        # after a start must not always be the same kind.
                        for kind in KINDS if run % 2 == 0 else KINDS[::-1]:
                            figures = load(server, queries[kind], args.seconds, args.stamped)
                            rows[server.name][kind].append(figures)
                    print(
                        f"{mode} run {run + 1} {server.name}: ring whole after {waited:.1f} s, "
                        f"changes {made[0]}, "
                        + ", ".join(
                            f"{k} p99 {rows[server.name][k][-1]['p99']:.0f} us, run-queue wait "
                            f"{rows[server.name][k][-1]['wait'] * 1e6:.2f} us/query"
                            for k in KINDS
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
                finally:
                    server.stop()
    return rows


def loop_profile(
    args: argparse.Namespace, work: Path, pythonpath: str | None, mode: str
) -> dict[str, Any]:
    """The busy setup without DNS load: the measured agent under ``bench/loopwatch.py`` (every
    loop callback timed) while 10 peers gossip and its service changes every ``--churn-ms``,
    for ``--loopwatch`` seconds, ``--settle`` seconds after its ring is whole; returns
    loopwatch's report, plus ``changes``."""
    manifests = work / "manifests"
    measured_grpc = free_port()
    out = work / "loopwatch.json"
    out.unlink(missing_ok=True)
    base = dns_bench.meshd(work, 0)
    mesh = EnvServer(base.name, base.port, [], log=work / "loopwatch.log")
    mesh.admin = free_port()
    mesh.env = {"LOOPWATCH_OUT": str(out), "PYTHONPATH": pythonpath or str(ROOT)}
    mesh.argv = [sys.executable, str(ROOT / "bench" / "loopwatch.py")]
    mesh.argv += meshd_agent("bench", manifests, measured_grpc, [], mesh.admin)[1:]
    mesh.argv += ["--dns-listen", f"127.0.0.1:{mesh.port}"]
    with peers(work, PEERS, measured_grpc):
        (manifests / "churn.yaml").write_text(churn_yaml(0))
        mesh.start(core=0)
        try:
            if mode == "busy":
                wait_ring(mesh, PEERS + 1)
            time.sleep(args.settle)
            cpu = mesh.cpu_seconds()
            with churning(mesh, manifests, args.churn_ms / 1000) as made:
                time.sleep(args.loopwatch)
            cpu = mesh.cpu_seconds() - cpu
        finally:
            mesh.stop()
    report: dict[str, Any] = json.loads(out.read_text())
    report["changes"] = made[0]
    report["cpu_s"] = cpu  # the agent's process and its scan worker, all threads
    return report


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / dns_bench.TICKS


def change_cost(args: argparse.Namespace, work: Path, pythonpath: str | None) -> dict[str, float]:
    """The busy setup without DNS load: CPU seconds of the measured agent's own process and
    of its manifests scan worker (its child) over ``--cpu-per-change`` seconds of churn,
    ``--settle`` seconds after its ring is whole, and the changes made."""
    manifests = work / "manifests"
    measured_grpc = free_port()
    base = dns_bench.meshd(work, 0)
    mesh = EnvServer(base.name, base.port, [], log=work / "cpu-per-change.log")
    mesh.admin = free_port()
    mesh.env = {"PYTHONPATH": pythonpath or str(ROOT)}
    mesh.argv = meshd_agent("bench", manifests, measured_grpc, [], mesh.admin)
    mesh.argv += ["--dns-listen", f"127.0.0.1:{mesh.port}"]
    with peers(work, PEERS, measured_grpc):
        (manifests / "churn.yaml").write_text(churn_yaml(0))
        mesh.start(core=0)
        try:
            wait_ring(mesh, PEERS + 1)
            time.sleep(args.settle)
            assert mesh.proc is not None
            workers = [p for p in mesh.pids() if p != mesh.proc.pid]
            if len(workers) != 1:
                raise RuntimeError(f"expected one scan worker, found {workers}")
            pids = {"agent": mesh.proc.pid, "worker": workers[0]}
            before = {k: process_cpu_s(p) for k, p in pids.items()}
            with churning(mesh, manifests, args.churn_ms / 1000) as made:
                time.sleep(args.cpu_per_change)
            used = {k: process_cpu_s(p) - before[k] for k, p in pids.items()}
        finally:
            mesh.stop()
    return {**used, "changes": made[0]}


def change_cost_report(args: argparse.Namespace, work: Path) -> str:
    """``change_cost`` for this checkout and ``--ref``, interleaved, ``--cpu-runs`` rounds."""
    variants = ([("ref", args.ref)] if args.ref else []) + [("branch", None)]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for run in range(args.cpu_runs):
        for name, path in variants if run % 2 == 0 else variants[::-1]:
            cost = change_cost(args, work, path)
            rows[name].append(cost)
            print(
                f"cpu-per-change run {run + 1} {name}: {cost['changes']:.0f} changes, agent "
                f"{cost['agent'] / cost['changes'] * 1e3:.2f} ms, worker "
                f"{cost['worker'] / cost['changes'] * 1e3:.2f} ms per change (load average "
                f"{os.getloadavg()[0]:.2f})",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        "| checkout | agent process, ms per change | scan worker, ms per change |",
        "|---|---:|---:|",
    ]
    for name, costs in rows.items():
        cells = []
        for part in ("agent", "worker"):
            each = [c[part] / max(c["changes"], 1) * 1e3 for c in costs]
            listed = ", ".join(f"{x:.2f}" for x in each)
            cells.append(f"{listed} (median {statistics.median(each):.2f})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def loop_summary(name: str, report: dict[str, Any], window_s: float) -> str:
    """Callbacks of the last ``window_s`` (while the service changed): loop busy share, the
    largest, how many over 1/2/5/10 ms, and CPU per second and per change by label."""
    end = max(c[0] for c in report["callbacks"])
    calls = [c for c in report["callbacks"] if c[0] >= end - window_s]
    span = window_s
    per_label: dict[str, list[float]] = {}
    for _, ms, lb, _ in calls:
        per_label.setdefault(lb, []).append(ms)
    changes = max(report["changes"], 1)
    durations = sorted(c[1] for c in calls)
    stretches = sorted(c[3] for c in calls)  # the longest a query could wait in each
    lines = [
        f"{name}: {len(calls)} callbacks over {span:.1f} s, {report['changes']} changes; CPU "
        f"(agent and scan worker) {report['cpu_s'] / changes * 1000:.1f} ms per change; loop "
        f"busy {sum(durations) / 1000 / span:.1%} of CPU-time; largest callbacks "
        + ", ".join(f"{d:.1f}" for d in durations[-5:])
        + " ms, over 1/2/5/10 ms: "
        + "/".join(str(sum(d > x for d in durations)) for x in (1, 2, 5, 10))
        + "; largest stretches without DNS "
        + ", ".join(f"{d:.1f}" for d in stretches[-5:])
        + " ms, over 1/2/5/10 ms: "
        + "/".join(str(sum(d > x for d in stretches)) for x in (1, 2, 5, 10)),
        "| callback | count/s | CPU ms/s | CPU ms per change | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ranked = sorted(per_label.items(), key=lambda kv: -sum(kv[1]))
    for label, ms in ranked[:12]:
        ms.sort()
        lines.append(
            f"| `{label}` | {len(ms) / span:.0f} | {sum(ms) / span:.1f} | "
            f"{sum(ms) / changes:.2f} | {ms[int(len(ms) * 0.99)]:.2f} | {ms[-1]:.2f} |"
        )
    top = sorted(report["samples_over_threshold"].items(), key=lambda kv: -kv[1])[:10]
    lines += ["", "Samples (1 ms) inside callbacks longer than 1 ms:", ""]
    lines += [f"- {n} x `{where}`" for where, n in top]
    return "\n".join(lines) + "\n"


def _med(figures: list[dict[str, float]], key: str) -> float:
    return statistics.median(f[key] for f in figures)


def report(args: argparse.Namespace, results: dict[str, dict[str, dict[str, list]]]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    argv = " ".join(sys.argv[1:])
    client = (
        "the kernel-stamped client (`bench/stamped_load.py`: latency from the query's "
        "transmit stamp to the answer's receive stamp)"
        if args.stamped
        else "dnsperf"
    )
    lines = [
        f"## {datetime.date.today()} — DNS tail at 10,000 q/s against Knot, idle and busy "
        "(issue 17)",
        "",
        f"Command: `.venv/bin/python bench/busy_tail_bench.py {argv}` at {commit}. "
        f"Machine: {machine()}. {args.services} ClusterSetIP services of 3 endpoints; servers "
        f"on core 0, {client} (and in busy mode {PEERS} peer agents, and this bench's own "
        "process) on core 1; "
        f"{args.runs} interleaved runs of {args.seconds:g} s per load; busy: {PEERS} peers "
        f"gossiping, one service changed every {args.churn_ms:g} ms (Knot: DNS UPDATE).",
        "",
        "| mode | server | queries | Knot p50 / p99 µs | meshd p50 / p99 µs | meshd p99 / "
        "Knot's: median (runs over 1.5x) | per run | CPU per query, meshd / Knot | "
        "run-queue wait per query µs, meshd's DNS thread / Knot's threads |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
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
            f"{statistics.median(cpu):.2f} | {_med(mesh, 'wait') * 1e6:.2f} / "
            f"{_med(knot, 'wait') * 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--churn-ms", type=float, default=100.0)
    parser.add_argument(
        "--peer-nice",
        type=int,
        default=PEER_NICE,
        help="nice of the 10 peer agents, which share dnsperf's core (see PEER_NICE)",
    )
    parser.add_argument(
        "--stamped",
        action="store_true",
        help="time each query by the kernel's transmit and receive stamps (bench/stamped_load.py)"
        " instead of by dnsperf: the server's latency without the client's own waits",
    )
    parser.add_argument(
        "--peer-idle",
        action="store_true",
        help="run the peers in the idle scheduling class (SCHED_IDLE) instead of at --peer-nice",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=("idle", "busy", "join"), default=["idle", "busy"]
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0],
        help="meshd variants by --dns-workers (0: DNS on the agent's own loop)",
    )
    parser.add_argument("--out", type=Path, help="append the report to this file")
    parser.add_argument(
        "--loopwatch",
        type=float,
        help="instead of DNS loads: time every loop callback of the busy agent for this many "
        "seconds (bench/loopwatch.py), and print the breakdown",
    )
    parser.add_argument(
        "--ref",
        help="also run meshd from this reference checkout (its PYTHONPATH), interleaved",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="DIR",
        help="DNS loads: one more checkout run as meshd-altN, interleaved (repeatable)",
    )
    parser.add_argument("--loopwatch-runs", type=int, default=1)
    parser.add_argument(
        "--cpu-per-change",
        type=float,
        help="instead of DNS loads: CPU per change of the busy agent's process and of its "
        "scan worker over this many seconds of churn (with --ref: interleaved)",
    )
    parser.add_argument("--cpu-runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("knotd", "dnsperf", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run `make bench-deps` first")
    # This process (the churn thread, the stamped client, reading dnsperf's output) runs on
    # the client's core: on the servers' core it would take their time, Knot's most (its
    # DNS UPDATEs are built and sent from here).
    os.sched_setaffinity(0, {1})
    work = dns_bench.WORK / "busy"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dns_bench.write_manifests(work / "manifests", args.services)
    if args.cpu_per_change:
        text = change_cost_report(args, work)
        print(text, flush=True)
        return
    if args.loopwatch:
        variants = [("ref", args.ref)] if args.ref else []
        variants.append(("branch", None))
        text = ""
        for run, mode in itertools.product(range(args.loopwatch_runs), args.modes):
            for name, path in variants:
                watched = loop_profile(args, work, path, mode)
                summary = loop_summary(f"{mode} run {run + 1} {name}", watched, args.loopwatch)
                text += summary + "\n"
                print(summary, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as fh:
                fh.write("\n" + text)
        return
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
