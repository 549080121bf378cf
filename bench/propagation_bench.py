"""How fast one service change reaches every agent: real ``meshd run`` processes on loopback.

N agents (clusters c0..c{N-1}, each exporting its own service ``svc-<i>`` and sharing the
headless ``db``) are joined in a ring. For each trial, agent 0's manifests get a new
endpoint address for ``db``; the clock starts at the file write and stops when every
agent's DNS answer for ``db.shop.svc.clusterset.local`` contains the new address (polled
over UDP every 10 ms, every agent at once from one socket, the replies read by
``answer_holds`` without building a message: the prober must not lag). The time includes
agent 0 noticing the edit (inotify, or its manifests poll), so it is the end-to-end figure
an operator sees. The report gives the prober's own CPU: on 2 cores it competes with the
agents.

Per hop, each trial also gives: *origin*, from the write until agent 0 itself answers the
new address (the notice, the scan, the publish and its own zone rebuild), and *spread*, from
then until the last other agent answers it (the push to the peers, their merge and rebuild).
CPU: the agents' processes (with their scan workers) in user + system seconds per second of
the trials, from ``/proc``; and the load average when the run starts (a shared machine).
Trials start once the ring has settled after converging (``settle``: the agents' CPU has
stopped changing), so they measure a change on a ring at rest, not its start-up.

Usage: ``python bench/propagation_bench.py --agents 10 --trials 20 [--ref REF]
[--settle-timeout 180] [--out bench/RESULTS.md]``; ``--ref`` runs the agents on another
commit's code (``git archive``, as ``bench/failover_bench.py`` does), for a before/after in
one session.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
from common import machine  # bench/common.py (run from the repo root)

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


def listen_ports(count: int) -> list[int]:
    """``count`` ports free for TCP and UDP on 127.0.0.1, below the kernel's ephemeral range:
    a port picked by binding port 0 comes from that range, and 50 agents dialling each
    other take ephemeral ports too, so one of them could take a port before its agent
    binds it (it did: agents exited with "Address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    found: list[int] = []
    for port in range(max(1024, low - 8000 - os.getpid() % 4000), low):
        if len(found) == count:
            return found
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
    sys.exit(f"no {count} free ports below {low}")


def answer_holds(data: bytes, address: bytes) -> bool | None:
    """Whether the DNS reply ``data`` answers with the A record ``address`` (4 octets);
    None when it is truncated (the caller asks again over TCP). A walk over the header,
    the question and the answer records' fixed fields, without building a message: the
    prober reads up to 50 replies of 50 records every 10 ms, and dnspython takes about
    2 ms to parse each one, so with it the prober fell behind by hundreds of milliseconds
    at 50 agents and its lateness counted as propagation."""
    if len(data) < 12 or data[2] & 0x02:  # the TC flag
        return None if len(data) >= 12 else False
    answers = int.from_bytes(data[6:8], "big")
    at = 12
    while data[at]:  # the question's name, uncompressed (it is our own query's)
        at += 1 + data[at]
    at += 5  # the root label, QTYPE, QCLASS
    for _ in range(answers):
        while True:  # the owner name: labels ending in a root label or a pointer
            length = data[at]
            if length >= 0xC0:
                at += 2
                break
            at += 1 + length
            if length == 0:
                break
        rtype = int.from_bytes(data[at : at + 2], "big")
        rdlength = int.from_bytes(data[at + 8 : at + 10], "big")
        at += 10
        if rtype == 1 and data[at : at + rdlength] == address:
            return True
        at += rdlength
    return False


def first_seen(ports: list[int], new: str, started: float, limit_s: float) -> dict[int, float]:
    """Seconds from ``started`` until each agent's answer first holds ``new``: every agent
    still missing it is asked at once from one socket every 10 ms (a sequential sweep of 50
    agents would blur the times by the sweep's own length)."""
    seen: dict[int, float] = {}
    q = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    wire = q.to_wire()
    needle = socket.inet_aton(new)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        while len(seen) < len(ports):
            if time.monotonic() - started > limit_s:
                sys.exit(f"not everywhere after {limit_s:.0f} s: {len(seen)}/{len(ports)}")
            waiting = [p for p in ports if p not in seen]
            for port in waiting:
                sock.sendto(wire, ("127.0.0.1", port))
            deadline = time.monotonic() + 0.01
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, (_host, port) = sock.recvfrom(65535)
                now = time.monotonic()
                if port in seen:
                    continue
                try:
                    found = answer_holds(data, needle)
                except IndexError:  # a reply cut short: not an answer
                    continue
                if found is None:
                    found = new in addresses(port)  # truncated (past ~70 agents): over TCP
                if found:
                    seen[port] = now - started
    return seen


def exited(procs: list[subprocess.Popen[bytes]], work: Path) -> str:
    """Which agents ended, with the end of their logs (for a run that failed)."""
    lines = []
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            tail = (work / f"c{i}.log").read_text(errors="replace").splitlines()[-5:]
            lines.append(f"c{i} exited with {proc.returncode}: " + " / ".join(tail))
    return "".join("\n" + line for line in lines[:10])


SETTLE_WINDOW_S = 3.0
SETTLE_BAND = 0.15  # settled: a window's CPU within this share of the window before's


def settle(sessions: set[int], timeout_s: float) -> tuple[float, float]:
    """Wait until the ring's start-up work is over: the agents answering with every
    address is not the end of it (catch-ups, rebuilds, SWIM settling; with 50 agents on 2
    cores the load average is still 30-70 then, and a trial then measures the start-up
    storm, not a change). Settled when the agents' CPU over a window of
    ``SETTLE_WINDOW_S`` stops changing (within ``SETTLE_BAND`` of the window before: a
    rising window is the storm too), or after ``timeout_s``. Returns the seconds waited
    and the cores used in the last window."""
    started = time.monotonic()
    before, rate = cpu_seconds(sessions), None
    while True:
        time.sleep(SETTLE_WINDOW_S)  # a measuring window, not a stand-in for a condition
        now = cpu_seconds(sessions)
        latest = (now - before) / SETTLE_WINDOW_S
        before = now
        waited = time.monotonic() - started
        print(f"settling: {latest:.2f} cores after {waited:.0f} s", file=sys.stderr)
        steady = rate is not None and abs(latest - rate) <= SETTLE_BAND * rate
        if steady or waited >= timeout_s:
            return waited, latest
        rate = latest


def cpu_seconds(sessions: set[int]) -> float:
    """User + system CPU seconds of every live process in these sessions (an agent and its
    scan worker), from /proc; ticks are 1/100 s."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[3]) in sessions:  # field 6 of stat: the session id
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


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
    parser.add_argument("--ref", default="worktree", help="git ref the agents run")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=180.0,
        help="longest wait, after the agents converge, for their CPU to stop changing",
    )
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="meshd-prop-"))
    env = dict(os.environ)
    if args.ref != "worktree":
        sys.path.insert(0, str(ROOT / "bench"))
        from failover_bench import export_tree

        (work / "code").mkdir()
        export_tree(args.ref, work / "code")
        env["PYTHONPATH"] = str(work / "code")
    meshd = str(Path(sys.executable).parent / "meshd")
    ports = listen_ports(2 * args.agents)
    dns_ports = ports[: args.agents]
    grpc = [f"127.0.0.1:{port}" for port in ports[args.agents :]]
    procs = []
    origins: list[float] = []
    spreads: list[float] = []
    times: list[float] = []
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
                    env=env,
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=open(work / f"c{i}.log", "wb"),  # noqa: SIM115 (closed at exit)
                )
            )
        everyone = {f"10.{i}.0.1" for i in range(args.agents)}
        deadline = time.monotonic() + 300
        while not all(addresses(p) == everyone for p in dns_ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                sys.exit(f"the agents did not converge within 300 s{exited(procs, work)}")
            time.sleep(0.1)
        sessions = {proc.pid for proc in procs}
        settled_s, settled_cores = settle(sessions, args.settle_timeout)
        cpu_before, wall_before = cpu_seconds(sessions), time.monotonic()
        prober_before = sum(os.times()[:2])
        for trial in range(args.trials):
            new = f"192.168.{trial // 250}.{trial % 250 + 1}"  # not an agent's 10.i.0.1
            started = time.monotonic()
            manifests(work / "c0", 0, new)
            seen = first_seen(dns_ports, new, started, 30.0)
            origin = seen[dns_ports[0]]
            origins.append(origin)
            spreads.append(max(seen.values()) - origin)
            times.append(max(seen.values()))
            print(
                f"trial {trial}: origin {origin:.3f} s, last {times[-1]:.3f} s",
                file=sys.stderr,
            )
            time.sleep(0.3)
        trials_s = time.monotonic() - wall_before
        cpu = (cpu_seconds(sessions) - cpu_before) / trials_s
        prober = (sum(os.times()[:2]) - prober_before) / trials_s
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
    ref = "HEAD" if args.ref == "worktree" else args.ref
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h", ref], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()

    def row(name: str, values: list[float]) -> str:
        return (
            f"| {name} | {len(values)} | {statistics.median(values):.3f} | "
            f"{pct(values, 0.99):.3f} | {max(values):.3f} |\n"
        )

    report = (
        f"## {datetime.date.today()} — one service change to every agent (real processes)\n\n"
        f"Command: `.venv/bin/python bench/propagation_bench.py --agents {args.agents} "
        f"--trials {args.trials}{''.join(' --agent-flag=' + f for f in args.agent_flag)}"
        f"{'' if args.ref == 'worktree' else ' --ref ' + args.ref}` "
        f"at {commit}. Machine: {machine()}; date {datetime.date.today()}; load average "
        f"{load_at_start[0]:.2f} at the start; trials {settled_s:.0f} s after the agents "
        f"converged, once their CPU stopped changing ({settled_cores:.2f} cores). "
        f"{args.agents} `meshd run` processes on "
        "loopback, default settings unless the command says otherwise; time from the "
        "manifest write at one agent to the new address in every agent's DNS answer "
        "(origin: until agent 0 answers it; spread: from then until the last agent does). "
        f"The agents used {cpu:.2f} cores during the trials "
        f"({100 * cpu / args.agents:.1f}% of a core each), the bench's prober "
        f"{prober:.2f} cores.\n\n"
        "| hop | trials | p50 s | p99 s | max s |\n|---|---:|---:|---:|---:|\n"
        + row("origin: write to agent 0's answer", origins)
        + row("spread: agent 0 to the last agent", spreads)
        + row(f"total: write to all {args.agents} agents", times)
    )
    print(report)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)


if __name__ == "__main__":
    main()
