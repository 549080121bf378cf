"""Where meshd's DNS tail comes from: p99 at 10,000 q/s against Knot, with the agent's
garbage collections timed.

Two parts:

- ``agent``: runs ``meshd run`` in this process with a ``gc.callbacks`` hook that times every
  collection (generation, pause, objects collected) and, on exit, writes them with
  ``gc.get_count()``/``gc.get_threshold()`` and the tracked heap size to ``--stats`` (JSON).
  ``--gc`` picks the collector's set-up for the experiment: ``default`` (as shipped, with
  ``mesh.daemon.heap``'s policy), ``stock`` (CPython's defaults: no threshold change and no
  freeze), ``off
  (``gc.disable()``: the upper bound of what any tuning can win). ``--switch-interval`` sets
  ``sys.setswitchinterval`` (how often gRPC's threads and the loop hand the GIL over).
  With ``--sample``, a task wakes every 2 ms and records how late it woke (an event-loop
  stall) and how much CPU the main thread and the process used meanwhile.
- ``compare`` (the default): for each of ``--runs`` runs, in an order rotated between runs,
  starts Knot and meshd under each ``--variants`` set-up (pinned to core 0, dnsperf on core
  1, as bench/dns_bench.py does), lets it idle ``--settle`` seconds, drives dnsperf -v at
  10,000 q/s for ``--seconds`` and records p50, p99, p99.9 and the collections timed during
  the load. Prints one line per run and server and a table of medians and ranges.

Usage::

    python bench/tail_probe.py --runs 10 --variants default stock --churn 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dns_bench  # bench/dns_bench.py

SAMPLE_S = 0.002
STALL_S = 0.0005


def agent(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gc", choices=("default", "off", "stock"), default="default")
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--sample", action="store_true")
    args, rest = parser.parse_known_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    pauses: list[tuple[float, int, float, int]] = []
    started: list[float] = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            now = time.perf_counter()
            pauses.append(
                (time.monotonic(), info["generation"], now - started[0], info["collected"])
            )

    gc.callbacks.append(timed)
    if args.gc == "off":
        gc.disable()
    from mesh.daemon import heap

    rebuilds: list[tuple[float, float]] = []
    rebuilt = heap.HeapSettler.rebuilt

    def recorded(settler: heap.HeapSettler, elapsed_s: float, synced: bool) -> None:
        rebuilds.append((time.monotonic(), elapsed_s))
        rebuilt(settler, elapsed_s, synced)

    heap.HeapSettler.rebuilt = recorded  # type: ignore[method-assign]
    if args.gc == "stock":
        heap.tune = lambda: None
        heap.HeapSettler.freeze = lambda settler: None  # type: ignore[method-assign]
    import mesh.daemon.cli
    import mesh.daemon.runner
    from mesh.daemon.cli import main

    stalls: list[tuple[float, float, float, float]] = []
    serve = mesh.daemon.runner.serve

    async def serve_sampled(settings: Any, stop: Any) -> int:
        task = asyncio.get_running_loop().create_task(sample(stalls))
        try:
            return await serve(settings, stop)
        finally:
            task.cancel()

    if args.sample:
        mesh.daemon.cli.serve = serve_sampled  # type: ignore[attr-defined]
    try:
        return main(["run", *[a for a in rest if a != "--"]])
    finally:
        stats = {
            "pauses": pauses,
            "stalls": stalls,
            "rebuilds": rebuilds,
            "threshold": gc.get_threshold(),
            "count": gc.get_count(),
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
        }
        args.stats.write_text(json.dumps(stats))


async def sample(stalls: list[tuple[float, float, float, float]]) -> None:
    """Every SAMPLE_S, how late the loop woke us: a late wake-up is a stall of the event
    loop, and the CPU the main thread and the whole process used meanwhile says whose: main
    thread busy means our own callbacks (a rebuild, a collection), process busy but the main
    thread not means another of our threads held the GIL (gRPC), neither means the kernel
    ran something else on the core (a neighbour)."""
    while True:
        wall, main, proc = time.perf_counter(), time.thread_time(), time.process_time()
        await asyncio.sleep(SAMPLE_S)
        late = time.perf_counter() - wall - SAMPLE_S
        if late > STALL_S:
            main_cpu, proc_cpu = time.thread_time() - main, time.process_time() - proc
            stalls.append((time.monotonic(), late, main_cpu, proc_cpu))


def switches(server: dns_bench.Server) -> int:
    """Involuntary context switches of the server's processes and threads so far: how often
    the kernel took the core away from it."""
    total = 0
    for pid in server.pids():
        for task in Path(f"/proc/{pid}/task").iterdir():
            status = (task / "status").read_text()
            total += int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
    return total


@contextlib.contextmanager
def churning(path: Path, every_s: float, seconds: float) -> Iterator[None]:
    """With ``every_s`` > 0, rewrite one more service's endpoint in the manifests every
    ``every_s`` for ``seconds`` (a bounded loop in a thread): the agent re-translates the
    directory and rebuilds, allocating as a live cluster makes it."""
    path.unlink(missing_ok=True)
    if every_s <= 0:
        yield
        return
    done = threading.Event()

    def churn() -> None:
        for n in range(int(seconds / every_s) + 1):
            if done.wait(every_s):
                return
            eps = f'  - addresses: ["10.251.0.{n % 250 + 1}"]\n'
            meta = "metadata:\n  name: churn\n  namespace: bench\n"
            path.write_text(
                f"apiVersion: v1\nkind: Service\n{meta}spec:\n  ports:\n  - name: http\n"
                f"    protocol: TCP\n    port: 80\n---\n"
                f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}---\n"
                f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
                f"  name: churn-1\n  namespace: bench\n  labels:\n"
                f"    kubernetes.io/service-name: churn\naddressType: IPv4\nendpoints:\n{eps}"
            )

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        path.unlink(missing_ok=True)


def pct(times: list[float], q: float) -> float:
    return times[min(len(times) - 1, int(len(times) * q))] * 1e6


def load(server: dns_bench.Server, queries: Path, seconds: float) -> list[float]:
    out = dns_bench.dnsperf(server, queries, seconds, 10000, verbose=True)
    return sorted(float(m) for m in dns_bench.re.findall(r"^> \S+ .* ([\d.]+)$", out, 8))


def compare(args: argparse.Namespace) -> None:
    work = dns_bench.WORK
    dns_bench.shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dns_bench.write_manifests(work / "manifests", args.services)
    queries = work / "queries.bin"
    dns_bench.write_queries(queries, args.services, 100000, 1)
    servers: list[tuple[str, dns_bench.Server]] = [("knot", dns_bench.knot(work, args.services))]
    for variant in args.variants:
        server = dns_bench.meshd(work, 0)
        extra = ["--gc", variant, "--stats", str(work / f"{variant}.json")]
        if args.switch_interval:
            extra += ["--switch-interval", str(args.switch_interval)]
        if args.sample:
            extra += ["--sample"]
        server.argv = [sys.executable, __file__, "agent", *extra, "--", *server.argv[2:]]
        server.name = f"meshd-{variant}"
        server.log = work / f"{variant}.log"
        servers.append((variant, server))
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in servers}
    for run in range(args.runs):
        shift = run % len(servers)
        for name, server in servers[shift:] + servers[:shift]:
            server.start(core=0)
            try:
                time.sleep(args.settle)
                before = switches(server)
                t0 = time.monotonic()
                with churning(work / "manifests" / "churn.yaml", args.churn, args.seconds):
                    times = load(server, queries, args.seconds)
                t1 = time.monotonic()
                preempted = switches(server) - before
            finally:
                server.stop()
            row = {"p50": pct(times, 0.5), "p99": pct(times, 0.99), "p999": pct(times, 0.999)}
            row["preempted"] = preempted
            if name != "knot":
                stats: dict[str, Any] = json.loads((work / f"{name}.json").read_text())
                during = [p for p in stats["pauses"] if t0 <= p[0] <= t1]
                row["gcs"] = len(during)
                row["gc2"] = sum(1 for p in during if p[1] == 2)
                row["gc_ms"] = sum(p[2] for p in during) * 1e3
                row["gc_max_ms"] = max((p[2] for p in during), default=0.0) * 1e3
                row["heap"] = stats["tracked"]
                took = [x[1] for x in stats["rebuilds"] if t0 <= x[0] <= t1]
                row["rebuilds"] = len(took)
                row["rebuild_ms"] = sum(took) * 1e3
                row["rebuild_max_ms"] = max(took, default=0.0) * 1e3
                late = [x for x in stats["stalls"] if t0 <= x[0] <= t1]
                row["stalls"] = len(late)
                row["stall_ms"] = sum(x[1] for x in late) * 1e3
                row["stall_max_ms"] = max((x[1] for x in late), default=0.0) * 1e3
                # Of the stalled time, the share the main thread spent on the CPU.
                row["stall_own"] = sum(x[2] for x in late) / max(1e-9, sum(x[1] for x in late))
                row["stall_proc"] = sum(x[3] for x in late) / max(1e-9, sum(x[1] for x in late))
                row["frozen"] = stats["frozen"]
            rows[name].append(row)
            print(f"run {run + 1} {name}: " + json.dumps(row), file=sys.stderr, flush=True)
    knot_p99 = [r["p99"] for r in rows["knot"]]
    print("| server | runs | p50 µs | p99 µs (range) | p99 / Knot's, per run | p99.9 µs |")
    print("|---|---:|---:|---:|---|---:|")
    for name, runs in rows.items():
        p99 = [r["p99"] for r in runs]
        ratios = [a / b for a, b in zip(p99, knot_p99, strict=True)]
        print(
            f"| {name} | {len(runs)} | {statistics.median(r['p50'] for r in runs):.0f} | "
            f"{statistics.median(p99):.0f} ({min(p99):.0f} to {max(p99):.0f}) | median "
            f"{statistics.median(ratios):.2f}, {', '.join(f'{x:.2f}' for x in ratios)} | "
            f"{statistics.median(r['p999'] for r in runs):.0f} |"
        )
        if name != "knot":
            gcs = [
                (r["gcs"], r["gc2"], round(r["gc_ms"], 1), round(r["gc_max_ms"], 1)) for r in runs
            ]
            last = runs[-1]
            print(
                f"  collections during load (count, gen2, total ms, max ms): {gcs}; "
                f"tracked objects {last['heap']:.0f}, frozen {last['frozen']:.0f}"
            )


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        sys.exit(agent(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--variants", nargs="+", default=["default", "off"])
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument(
        "--sample", action="store_true", help="time event-loop stalls (adds 500 wake-ups/s)"
    )
    parser.add_argument(
        "--churn", type=float, default=0.0, help="rewrite a manifest every this many seconds"
    )
    compare(parser.parse_args())


if __name__ == "__main__":
    main()
