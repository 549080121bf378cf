"""Catch-up of a new agent joining a ring that holds 100,000 endpoints: real processes.

Two ``meshd run`` processes on loopback with mutual TLS and origin-signed records
(certificates from ``meshd certs``, as the demo makes them). ``east`` reads manifests of
``--services`` headless services with ``--endpoints`` endpoints in all (EndpointSlices of at
most 100 endpoints, as Kubernetes cuts them). Once east holds them all, ``west`` is started
with ``--join`` east, and the clock runs from west's spawn (Python start-up included) until
west's ``/metrics`` counts every endpoint in its catalog, then until its DNS answers the last
service with all of its endpoints. Repeated ``--trials`` times with a fresh west, reporting
the median and each trial, and how many messages and bytes west received.

Event-loop lag (``lagprobe``): during each catch-up a UDP DNS query every 5 ms goes to
west (from the moment it binds its DNS port: it answers SERVFAIL until synced) and one to
east (which serves the records); each agent answers from its event loop, so an answer's
latency is that loop's lag. Controls in the same run: east idle before the first trial,
west idle after each catch-up.

Usage: ``.venv/bin/python bench/catchup_real_bench.py [--endpoints 100000] [--services 2000]
[--trials 3] [--control-s 5] [--out bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
from common import free_port, machine  # bench/common.py (run from the repo root)
from lagprobe import Prober, Window, udp_bound

ROOT = Path(__file__).resolve().parents[1]
MESHD = str(Path(sys.executable).parent / "meshd")
SLICE = 100  # endpoints per EndpointSlice: the Kubernetes controller's default maximum


def write_manifests(directory: Path, services: int, endpoints: int) -> None:
    directory.mkdir(parents=True)
    per = endpoints // services
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"]
    n = 0
    for s in range(services):
        meta = f"metadata:\n  name: s{s}\n  namespace: shop\n"
        docs.append(f"apiVersion: v1\nkind: Service\n{meta}spec:\n  clusterIP: None\n")
        docs.append(f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}")
        for part in range(0, per, SLICE):
            lines = []
            for _ in range(min(SLICE, per - part)):
                lines.append(f'  - addresses: ["10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"]')
                n += 1
            docs.append(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
                f"  name: s{s}-{part // SLICE}\n  namespace: shop\n  labels:\n"
                f"    kubernetes.io/service-name: s{s}\naddressType: IPv4\nendpoints:\n"
                + "\n".join(lines)
                + "\n"
            )
    (directory / "shop.yaml").write_text("---\n".join(docs))


def metrics(port: int) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
        return str(reply.read().decode())
    return ""


def endpoints_held(admin_port: int) -> float:
    return metric(metrics(admin_port), "meshd_catalog_endpoints")


def settled(admin_port: int) -> object:
    """A probe for ``wait``: true once the agent's zone rebuild count stopped moving between
    two reads (it publishes and rebuilds in slices after its catalog is full)."""
    last = [-2.0]

    def probe() -> bool:
        now = metric(metrics(admin_port), "meshd_zone_rebuilds_total")
        same, last[0] = now == last[0], now
        return same

    return probe


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else -1.0


Agent = tuple[subprocess.Popen[bytes], int, int, str]  # process, DNS port, admin port, gossip


def start(cluster: str, work: Path, certs: Path, join: str | None) -> Agent:
    dns_port, admin_port, grpc_port = free_port(), free_port(), free_port()
    mine = certs / cluster
    argv = [
        MESHD, "run", "--cluster-id", cluster, "--region", "us",
        "--dns-listen", f"127.0.0.1:{dns_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
        "--grpc-listen", f"127.0.0.1:{grpc_port}", "--log-level", "warning",
        "--tls-cert", str(mine / "tls.crt"), "--tls-key", str(mine / "tls.key"),
        "--tls-ca", str(mine / "ca.crt"), "--manifests", str(work / cluster),
    ]  # fmt: skip
    (work / cluster).mkdir(exist_ok=True)
    if join:
        argv += ["--join", join]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)
    return proc, dns_port, admin_port, f"127.0.0.1:{grpc_port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait(what: str, probe: object, timeout: float, every_s: float = 0.05) -> float:
    started = time.monotonic()
    while not probe():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            sys.exit(f"{what}: not within {timeout:.0f} s")
        time.sleep(every_s)
    return time.monotonic()


def srv_count(port: int, name: str) -> int:
    query = dns.message.make_query(name, "A")
    with contextlib.suppress(Exception):
        reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=1)
        return sum(len(rrset) for rrset in reply.answer)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=2_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--control-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshd-catchup-"))
    certs = work / "certs"
    ca = str(certs / "ca")
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([MESHD, "certs", "init", "--clusterset", "bench", "--out", ca])
    for cluster in ("east", "west"):
        out = str(certs / cluster)
        run([MESHD, "certs", "issue", "--cluster-id", cluster, "--ca", ca, "--out", out])
    per = args.endpoints // args.services
    total = per * args.services
    write_manifests(work / "east", args.services, total)
    last = f"s{args.services - 1}.shop.svc.clusterset.local"
    east, east_dns, east_admin, east_grpc = start("east", work, certs, None)
    rows = []
    lags: list[tuple[Window, Window, Window]] = []
    try:
        began = time.monotonic()
        wait("east loads its manifests", lambda: endpoints_held(east_admin) >= total, 600)
        loaded = time.monotonic() - began
        wait("east answers", lambda: srv_count(east_dns, last) == per, 120)
        wait("east settles", settled(east_admin), 120, 1.0)  # the control is of an idle east
        east_control, _ = Prober(east_dns, last).run(args.control_s)
        for trial in range(args.trials):
            row, lag = one_west(work, certs, (east_grpc, east_dns), total, last, per, args)
            rows.append(row)
            lags.append(lag)
            print(f"trial {trial + 1}: {rows[-1]}", file=sys.stderr)
    finally:
        stop(east)
        shutil.rmtree(work, ignore_errors=True)
    git = ["git", "log", "-1", "--format=%h"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [
        f"## {datetime.date.today()} — catch-up of a new agent, {total:,} endpoints "
        "(real processes)",
        "",
        f"Command: `.venv/bin/python bench/catchup_real_bench.py --endpoints {args.endpoints} "
        f"--services {args.services} --trials {args.trials} --control-s {args.control_s}` "
        f"at {commit}. Machine: {machine()}. "
        f"Two `meshd run` processes on loopback, mutual TLS, records signed by east and each "
        f"verified by west; east exports {args.services:,} headless services x {per} endpoints "
        f"(its own load from YAML: {loaded:.1f} s). Times from west's spawn (Python start-up "
        "included).",
        "",
        "| trial | every endpoint in west's catalog, s | west's DNS answers the last "
        "service, s | messages received | MiB received | west RSS, MiB |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {i + 1} | {h:.2f} | {a:.2f} | {m:.0f} | {b / 2**20:.1f} | {r:.0f} |"
            for i, (h, a, m, b, r) in enumerate(rows)
        ),
        f"| median | {statistics.median(r[0] for r in rows):.2f} | "
        f"{statistics.median(r[1] for r in rows):.2f} | | | |",
        "",
        "Event-loop lag: latency of a UDP DNS query sent every 5 ms (ms; a query unanswered "
        "when its window closes counts with the time it waited). While west catches up, its "
        "progress is read every 0.25 s (so the times above are within 0.25 s).",
        "",
        "| window | trial | queries | median | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| east idle (control) | | {east_control.row()} |",
        *(
            line
            for i, (west, east_lag, west_control) in enumerate(lags)
            for line in (
                f"| west during its catch-up | {i + 1} | {west.row()} |",
                f"| east during west's catch-up | {i + 1} | {east_lag.row()} |",
                f"| west idle after it (control) | {i + 1} | {west_control.row()} |",
            )
        ),
        _median_row("west during its catch-up", [w for w, _, _ in lags]),
        _median_row("east during west's catch-up", [e for _, e, _ in lags]),
        _median_row("west idle (control)", [c for _, _, c in lags]),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + report)


def _median_row(label: str, windows: list[Window]) -> str:
    cells = [
        statistics.median(w.median for w in windows),
        statistics.median(w.quantile(0.99) for w in windows),
        statistics.median(w.quantile(0.999) for w in windows),
        statistics.median(w.longest for w in windows),
    ]
    return f"| **median, {label}** | | | " + " | ".join(f"{v * 1e3:.1f}" for v in cells) + " |"


def one_west(
    work: Path,
    certs: Path,
    east: tuple[str, int],
    total: int,
    last: str,
    per: int,
    args: argparse.Namespace,
) -> tuple[tuple[float, float, float, float, float], tuple[Window, Window, Window]]:
    """Start a fresh west, time its catch-up and probe both loops meanwhile, stop it."""
    join, east_dns = east
    shutil.rmtree(work / "west", ignore_errors=True)
    (work / "west").mkdir()  # west has the namespace (namespace sameness), no exports
    (work / "west" / "ns.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    )
    spawned = time.monotonic()
    west, dns_port, admin, _ = start("west", work, certs, join)
    try:
        wait("west binds DNS", lambda: udp_bound(dns_port), 60)
        west_probe = Prober(dns_port, last).in_thread(1200)
        east_probe = Prober(east_dns, last).in_thread(1200)
        try:
            # /metrics walks the whole catalog: read it every 0.25 s, not 20 times a second,
            # so that the bench's own reads stay out of the lag it measures.
            held = wait(
                "west holds every endpoint", lambda: endpoints_held(admin) >= total, 600, 0.25
            )
            answered = wait("west answers", lambda: srv_count(dns_port, last) == per, 120, 0.25)
        finally:
            west_lag, east_lag = west_probe.window(), east_probe.window()
        # The last service by name is not the last the rebuild reaches (s999 > s1999).
        wait("west settles", settled(admin), 120, 1.0)
        west_control, _ = Prober(dns_port, last).run(args.control_s)
        text = metrics(admin)
        received = metric(text, "meshd_gossip_bytes_total", '{direction="received"}')
        messages = metric(
            text, "meshd_gossip_messages_total", '{direction="received",outcome="ok"}'
        )
        rss = 0.0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{west.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
        times = (held - spawned, answered - spawned, messages, received, rss)
        return times, (west_lag, east_lag, west_control)
    finally:
        stop(west)


if __name__ == "__main__":
    main()
