"""How long a query waits behind a long task step, with and without preemption.

The mechanism bench of ``dnsserver.preempt``: a ``DnsFront`` on a uvloop loop pinned to
core 0 serves one service while a task on the same loop runs steps of pure Python of
``--step-ms`` each, one every ``--gap-ms``; a client process pinned to core 1 sends one
query at a time (``--queries`` in all, after a random pause of ``--pause-us`` on average,
exponential and seeded: a fixed pause phase-locks with the steps, and the queries then
miss them) and times each round trip. ``preempt`` is the agent as it ships (the socket
signals during a step); ``queries-first`` takes SIGIO away first (an embedding program's
handler), so a query that arrives during a step waits for its end, as before preemption.
Runs alternate between the two; each run is a fresh process. Reported: median p50 / p99 /
p99.9 of the runs, and the share of queries over 200 us.

The busy tail of the agent itself (gossip, rebuilds, Knot alongside) is
``busy_tail_bench.py``; this one isolates the step-length part of that tail.

Usage: ``.venv/bin/python bench/preempt_bench.py [--runs 6] [--step-ms 0.5 2]
[--out bench/RESULTS.md]``. Needs ``taskset`` and two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

VARIANTS = ("preempt", "queries-first")

CLIENT = r"""
import json, random, socket, sys, time
import dns.message
port, count, pause_us = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pauses = random.Random(int(sys.argv[4]))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect(("127.0.0.1", port))
sock.settimeout(2.0)
query = dns.message.make_query("web.shop.svc.clusterset.local.", "A").to_wire()
times, lost = [], 0
for _ in range(count):
    started = time.perf_counter_ns()
    sock.send(query)
    try:
        sock.recv(4096)
    except TimeoutError:
        lost += 1
        continue
    times.append(time.perf_counter_ns() - started)
    time.sleep(pauses.expovariate(1e6 / pause_us))  # random: no phase lock with the steps
print(json.dumps({"us": [t / 1000 for t in times], "lost": lost}))
"""


async def serve_one_run(args: argparse.Namespace, variant: str) -> dict[str, object]:
    """The server side of one run, in this (fresh) process."""
    from dnsserver import queries_first
    from dnsserver.records import ServiceRecords
    from mesh.daemon.front import DnsFront
    from mesh.daemon.settings import AgentSettings
    from mesh.model import ServiceKey

    os.sched_setaffinity(0, {0})
    if variant == "queries-first":
        signal.signal(signal.SIGIO, lambda signum, frame: None)
    settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
    front = DnsFront(settings, serial=1)
    await front.start()
    records = ServiceRecords("shop", "web", False, ("10.1.0.1",), (("http", "TCP", 80),))
    front.apply([(ServiceKey("shop", "web"), records)], 2)
    assert (queries_first.preemption(asyncio.get_running_loop()) is not None) == (
        variant == "preempt"
    )
    done = asyncio.Event()
    steps = 0

    async def long_steps() -> None:
        nonlocal steps
        while not done.is_set():
            until = time.perf_counter() + args.step_ms / 1000
            while time.perf_counter() < until:  # pure Python: only a signal gets in
                pass
            steps += 1
            await asyncio.sleep(args.gap_ms / 1000)

    stepping = asyncio.create_task(long_steps())
    client = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", sys.executable, "-c", CLIENT,
        str(front.dns.address[1]), str(args.queries), str(args.pause_us), str(args.seed),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await client.communicate()
    done.set()
    await stepping
    await front.close()
    result: dict[str, object] = json.loads(out)
    result["steps"] = steps
    return result


def one_run(args: argparse.Namespace, variant: str) -> dict[str, object]:
    command = [sys.executable, __file__, "--serve", variant]
    command += ["--step-ms", str(args.step_ms[0]), "--gap-ms", str(args.gap_ms)]
    command += ["--queries", str(args.queries), "--pause-us", str(args.pause_us)]
    command += ["--seed", str(args.seed)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    parsed: dict[str, object] = json.loads(out)
    return parsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--step-ms", type=float, nargs="+", default=[0.5, 2.0])
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--queries", type=int, default=6000)
    parser.add_argument("--pause-us", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7, help="of the client's random pauses")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        args.step_ms = args.step_ms[0]
        print(json.dumps(uvloop.run(serve_one_run(args, args.serve))))
        return
    rows = []
    for step_ms in args.step_ms:
        found: dict[str, list[dict[str, object]]] = {v: [] for v in VARIANTS}
        for run in range(args.runs):
            order = VARIANTS if run % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                one = argparse.Namespace(
                    **{**vars(args), "step_ms": [step_ms], "seed": args.seed + run}
                )
                found[variant].append(one_run(one, variant))
        for variant in VARIANTS:
            runs = found[variant]
            times = [list(r["us"]) for r in runs]  # type: ignore[call-overload]
            cells = [statistics.median(percentile(t, s) for t in times) for s in (0.5, 0.99, 0.999)]
            over = statistics.median(sum(u > 200 for u in t) / len(t) for t in times)
            lost = sum(int(r["lost"]) for r in runs)  # type: ignore[call-overload]
            rows.append((step_ms, variant, cells, over, lost))
    command = " ".join(["bench/preempt_bench.py", *sys.argv[1:]])
    report = [
        f"## {datetime.date.today()} — a query behind a long task step (preempt_bench)\n",
        f"Command: `.venv/bin/python {command}`. Machine: {machine()}. A step of pure Python "
        f"every {args.gap_ms} ms on the serving loop (core 0); one query at a time from "
        f"core 1 after random pauses of {args.pause_us} µs on average (seed {args.seed} + "
        f"run), {args.queries} per run, {args.runs} runs per variant, alternating.\n",
        "| step ms | variant | p50 µs | p99 µs | p99.9 µs | queries over 200 µs | lost |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for step_ms, variant, (p50, p99, p999), over, lost in rows:
        report.append(
            f"| {step_ms} | {variant} | {p50:.0f} | {p99:.0f} | {p999:.0f} | {over:.1%} | {lost} |"
        )
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
