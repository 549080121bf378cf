"""A flood of made-up members: what one large push-pull costs a running agent.

Two ``meshd run`` processes on loopback, ``--insecure`` (no signature stands in the way):
``east`` (the victim) and ``west`` (an observer that joined it). Once both answer each
other's services, the bench sends east, as any peer could, one SWIM push-pull and one ring
push-pull, each naming ``--members`` made-up agents (``--per-cluster`` of them in each
made-up cluster ``fake-N``, at ``127.77.x.y:9``: loopback addresses where nothing listens,
so dialling them fails at once and no packet leaves the machine). For ``--seconds`` after
that it measures:

- east's DNS answer time, one query every 10 ms from this process (a stall of east's event
  loop shows as a slow answer; a lost answer counts as the 1 s timeout);
- east's RSS, and the members its SWIM table and its ring peer table hold;
- how often west's DNS answers leave east out (``db``, headless: west answers every
  cluster it holds healthy, so east drops out of it whenever west thinks east is down).

The same is measured for ``--baseline`` seconds before the flood. Usage:
``.venv/bin/python bench/flood_bench.py [--members 5000] [--per-cluster 1] [--seconds 20]
[--out FILE]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import grpc
from common import free_port, machine  # bench/common.py (run from the repo root)

from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
MESHD = str(Path(sys.executable).parent / "meshd")
WEB = "web.shop.svc.clusterset.local"
EAST_WEB = {"10.1.0.10", "10.1.0.11"}  # examples/east's ready web endpoints
DB = "db.shop.svc.clusterset.local"  # headless: every cluster's ready endpoints
EAST_DB = {"10.1.1.5"}


class Agent:
    def __init__(self, cluster: str, work: Path, join: str | None) -> None:
        self.dns, self.admin, self.grpc = free_port(), free_port(), free_port()
        manifests = work / cluster
        shutil.copytree(ROOT / "examples" / cluster, manifests)
        argv = [
            MESHD, "run", "--insecure", "--cluster-id", cluster, "--region", "us",
            "--manifests", str(manifests), "--dns-listen", f"127.0.0.1:{self.dns}",
            "--admin-listen", f"127.0.0.1:{self.admin}",
            "--grpc-listen", f"127.0.0.1:{self.grpc}", "--log-level", "warning",
        ]  # fmt: skip
        if join:
            argv += ["--join", join]
        log = open(work / f"{cluster}.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(argv, start_new_session=True, stdout=log, stderr=log)
        log.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def state(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.admin}/debug/state"
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(url, timeout=5) as reply,
        ):
            return dict(json.loads(reply.read()))
        return {}

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024

    def addresses(self, name: str, timeout: float = 1.0) -> set[str] | None:
        """The A records of ``name``; None when no answer came within ``timeout``."""
        try:
            reply = dns.query.udp(
                dns.message.make_query(name, "A"), "127.0.0.1", port=self.dns, timeout=timeout
            )
        except (dns.exception.Timeout, OSError):
            return None
        return {rd.address for rrset in reply.answer for rd in rrset if rrset.rdtype == 1}

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait(what: str, probe: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def fake_address(i: int) -> str:
    return f"127.77.{i // 250}.{i % 250 + 1}:9"


def flood(east: Agent, members: int, per_cluster: int) -> None:
    """One SWIM push-pull and one ring push-pull, each naming ``members`` made-up agents."""

    def cluster(i: int) -> str:
        return f"fake-{i // per_cluster}"

    swim = pb.SwimDatagram(
        push_pull=pb.SwimPushPull(
            source_id="fake-0/a0",
            source_address=fake_address(0),
            members=[
                pb.SwimMember(
                    id=f"{cluster(i)}/a{i}",
                    cluster_id=cluster(i),
                    address=fake_address(i),
                    incarnation=1,
                    state=pb.SWIM_ALIVE,
                )
                for i in range(members)
            ],
            reply=True,
        )
    )
    ring = pb.PushPullRequest(
        sender=pb.Member(cluster_id="fake-0", address=fake_address(0), replica="a0"),
        members=[
            pb.Member(cluster_id=cluster(i), address=fake_address(i), replica=f"a{i}")
            for i in range(members)
        ],
        more=False,
    )
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(east.address, options=options) as channel:
        stub = pb_grpc.GossipStub(channel)
        stub.Swim(swim, timeout=10)
        with contextlib.suppress(grpc.RpcError):
            stub.PushPull(ring, timeout=10)


def watch(east: Agent, west: Agent, seconds: float) -> dict[str, float]:
    """DNS answer times at east, and west's answers that leave east out, for ``seconds``."""
    times: list[float] = []
    west_total = west_without_east = 0
    stop = threading.Event()

    def observe_west() -> None:
        nonlocal west_total, west_without_east
        while not stop.is_set():
            answer = west.addresses(DB)
            west_total += 1
            if answer is None or not answer & EAST_DB:
                west_without_east += 1
            time.sleep(0.1)

    observer = threading.Thread(target=observe_west)
    observer.start()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            started = time.monotonic()
            answer = east.addresses(WEB)
            times.append(1.0 if answer is None else time.monotonic() - started)
            time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))
    finally:
        stop.set()
        observer.join()
    ordered = sorted(times)
    state = east.state()
    return {
        "queries": len(times),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
        "over_100ms": sum(1 for t in times if t > 0.1),
        "rss_mib": east.rss_mib(),
        "swim_members": len(state.get("swim", [])),
        "ring_peers": len(state.get("members", [])),
        "west_without_east": west_without_east,
        "west_queries": west_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--per-cluster", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--baseline", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshd-flood-"))
    east = Agent("east", work, None)
    west = Agent("west", work, east.address)
    try:
        wait("east answers with its own web", lambda: east.addresses(WEB) == EAST_WEB)
        wait("west answers with east's db", lambda: (west.addresses(DB) or set()) & EAST_DB)
        before = watch(east, west, args.baseline)
        sent = time.monotonic()
        flood(east, args.members, args.per_cluster)
        sent_s = time.monotonic() - sent
        after = watch(east, west, args.seconds)
        alive = east.proc.poll() is None
    finally:
        west.stop()
        east.stop()
        shutil.rmtree(work, ignore_errors=True)
    git = ["git", "log", "-1", "--format=%h"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    rows = [("before", before, args.baseline), ("after the flood", after, args.seconds)]
    lines = [
        f"## {datetime.date.today()} — one push-pull of {args.members:,} made-up members, "
        f"{args.per_cluster} per cluster (`--insecure`, real processes, {commit})",
        "",
        f"Command: `.venv/bin/python bench/flood_bench.py --members {args.members} "
        f"--per-cluster {args.per_cluster} --seconds {args.seconds:g}` at {commit}. "
        f"Machine: {machine()}. One SWIM push-pull "
        f"and one ring push-pull, each of {args.members:,} made-up agents, sent to east "
        f"(taking both took {sent_s:.2f} s); DNS queried at east every 10 ms; west queried "
        f"every 100 ms. East still running at the end: {'yes' if alive else 'NO'}.",
        "",
        "| window | s | east DNS p50, ms | p99, ms | max, ms | answers > 100 ms | east RSS, "
        "MiB | SWIM members | ring peers | west answers without east |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {s:g} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | "
            f"{r['over_100ms']:.0f} of {r['queries']:.0f} | {r['rss_mib']:.0f} | "
            f"{r['swim_members']:.0f} | {r['ring_peers']:.0f} | "
            f"{r['west_without_east']:.0f} of {r['west_queries']:.0f} |"
            for name, r, s in rows
        ),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + report)


if __name__ == "__main__":
    main()
