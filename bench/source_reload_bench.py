"""Event-loop lag of an agent while its manifests source reloads a large file: real processes.

``east`` (a ``meshd run`` process, mutual TLS and signed records unless ``--insecure``)
reads one manifests file of ``--services`` services (about 550 bytes each: a Service, its
ServiceExport and an EndpointSlice of two endpoints; 20,000 services make 11 MB), and
``west`` joins it. A ``lagprobe.Prober`` sends east a DNS query every 5 ms; east answers
UDP from its event loop, so each answer's latency is the loop's lag. Windows:

- ``initial load``: from the moment east binds its DNS port (it answers SERVFAIL until it
  has synced) until the last service answers: parse, translate, publish (sign) and zone
  build of every service;
- per trial, a ``control`` window with east idle, then at once:
- ``edit``: one line of the big file changes (one endpoint address of one service; written
  to a temporary file and renamed over, as a ConfigMap update or a careful editor does),
  until east's DNS answers the new address, plus one second;
- ``rebuild``: a small second file adds a namespace ``zz-N`` with one exported service.
  A namespace change makes every answer of the zone be rebuilt (namespace sameness), and
  ``probe.zz-N`` sorts after every other service, so it answers when the rebuild is done.

Meanwhile a thread reads west's ``meshd_clusters{health="unhealthy"}`` every 0.25 s: a
sample above 0 is a moment when west dropped east from its answers.

Usage: ``.venv/bin/python bench/source_reload_bench.py [--services 20000] [--trials 3]
[--control-s 5] [--insecure] [--out bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from catchup_real_bench import MESHD, ROOT, metric, metrics, stop, wait
from common import free_port, machine
from lagprobe import Prober, Window, addresses, udp_bound

ZONE = "svc.clusterset.local"


def address(n: int) -> str:
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def service_documents(i: int) -> str:
    meta = f"metadata:\n  name: s{i}\n  namespace: shop\n"
    endpoints = "".join(f'- addresses: ["{address(i * 2 + e)}"]\n  zone: z{e}\n' for e in (0, 1))
    return "---\n".join(
        [
            f"apiVersion: v1\nkind: Service\n{meta}spec:\n  selector:\n    app: s{i}\n"
            "  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n    protocol: TCP\n",
            f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}",
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: s{i}-abc\n  namespace: shop\n  labels:\n"
            f"    kubernetes.io/service-name: s{i}\naddressType: IPv4\n"
            f"ports:\n- name: http\n  port: 8080\nendpoints:\n{endpoints}",
        ]
    )


def write_big(path: Path, services: int) -> None:
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"]
    docs += [service_documents(i) for i in range(services)]
    replace_file(path, "---\n".join(docs))


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def extra_documents(trial: int) -> str:
    ns = f"zz-{trial}"
    meta = f"metadata:\n  name: probe\n  namespace: {ns}\n"
    return "---\n".join(
        [
            f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n",
            f"apiVersion: v1\nkind: Service\n{meta}spec:\n  ports:\n  - port: 80\n",
            f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}",
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: probe-1\n  namespace: {ns}\n  labels:\n"
            "    kubernetes.io/service-name: probe\naddressType: IPv4\n"
            f'endpoints:\n- addresses: ["10.254.0.{trial + 1}"]\n',
        ]
    )


Agent = tuple[subprocess.Popen[bytes], int, int, str]


def start(cluster: str, work: Path, certs: Path | None, join: str | None) -> Agent:
    dns_port, admin_port, grpc_port = free_port(), free_port(), free_port()
    argv = [
        MESHD, "run", "--cluster-id", cluster, "--region", "us",
        "--dns-listen", f"127.0.0.1:{dns_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
        "--grpc-listen", f"127.0.0.1:{grpc_port}", "--log-level", "warning",
        "--manifests", str(work / cluster),
    ]  # fmt: skip
    if certs is None:
        argv.append("--insecure")
    else:
        mine = certs / cluster
        argv += ["--tls-cert", str(mine / "tls.crt"), "--tls-key", str(mine / "tls.key")]
        argv += ["--tls-ca", str(mine / "ca.crt")]
    if join:
        argv += ["--join", join]
    log = (work / f"{cluster}.log").open("ab")
    proc = subprocess.Popen(argv, start_new_session=True, stdout=log, stderr=log)
    return proc, dns_port, admin_port, f"127.0.0.1:{grpc_port}"


class HealthWatch:
    """Reads west's count of unhealthy clusters every 0.25 s, in a thread."""

    def __init__(self, admin_port: int) -> None:
        self.admin_port = admin_port
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            text = metrics(self.admin_port)
            value = metric(text, "meshd_clusters", '{health="unhealthy"}')
            self.samples.append((time.monotonic(), value))

    def dropped(self, since: float, until: float) -> tuple[int, int]:
        """(samples where west held east unhealthy, samples) between two monotonic times."""
        window = [v for t, v in self.samples if since <= t <= until]
        return sum(1 for v in window if v > 0), len(window)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


Row = tuple[str, int, Window, Window, float | None, tuple[int, int]]


def trial_edit(
    trial: int, services: int, work: Path, east_dns: int, health: HealthWatch, control_s: float
) -> Row:
    """One line of the big file changes; the window runs until east answers it."""
    k = (services // 3 + trial * 7919) % services
    name, old, new = f"s{k}.shop.{ZONE}", address(k * 2), f"10.250.{trial % 256}.1"
    big = work / "east" / "big.yaml"
    text = big.read_text()
    prober = Prober(east_dns, name)
    try:
        control, _ = prober.run(control_s)
        began = time.monotonic()
        replace_file(big, text.replace(f'addresses: ["{old}"]', f'addresses: ["{new}"]', 1))
        window, seen = prober.run(120, until=lambda a: new in addresses(a), tail_s=1.0)
    finally:
        prober.close()
    return ("edit", trial, control, window, seen, health.dropped(began, time.monotonic()))


def trial_rebuild(
    trial: int, work: Path, east_dns: int, health: HealthWatch, control_s: float
) -> Row:
    """A namespace is added: every answer is rebuilt; ``probe.zz-N`` answers last."""
    wanted = f"10.254.0.{trial + 1}"
    prober = Prober(east_dns, f"probe.zz-{trial}.{ZONE}")
    try:
        control, _ = prober.run(control_s)
        began = time.monotonic()
        replace_file(work / "east" / "extra.yaml", extra_documents(trial))
        window, seen = prober.run(120, until=lambda a: wanted in addresses(a), tail_s=1.0)
    finally:
        prober.close()
    return ("rebuild", trial, control, window, seen, health.dropped(began, time.monotonic()))


def make_certs(work: Path) -> Path:
    certs = work / "certs"
    ca = str(certs / "ca")
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([MESHD, "certs", "init", "--clusterset", "bench", "--out", ca])
    for cluster in ("east", "west"):
        out = str(certs / cluster)
        run([MESHD, "certs", "issue", "--cluster-id", cluster, "--ca", ca, "--out", out])
    return certs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--control-s", type=float, default=5.0)
    parser.add_argument("--insecure", action="store_true", help="no TLS, unsigned records")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshd-reload-"))
    certs = None if args.insecure else make_certs(work)
    (work / "east").mkdir()
    write_big(work / "east" / "big.yaml", args.services)
    size = (work / "east" / "big.yaml").stat().st_size
    (work / "west").mkdir()
    (work / "west" / "ns.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    )
    last = f"s{args.services - 1}.shop.{ZONE}"
    east, east_dns, _, east_grpc = start("east", work, certs, None)
    procs = [east]
    rows: list[Row] = []
    try:
        wait("east binds DNS", lambda: udp_bound(east_dns), 60)
        prober = Prober(east_dns, last)
        loaded, seen = prober.run(600, until=lambda a: bool(addresses(a)), tail_s=0.5)
        prober.close()
        print(f"initial load: {seen} s, {loaded.row()}", file=sys.stderr)
        west, _, west_admin, _ = start("west", work, certs, east_grpc)
        procs.append(west)
        wait(
            "west holds every service",
            lambda: metric(metrics(west_admin), "meshd_catalog_services") >= args.services,
            600,
        )
        health = HealthWatch(west_admin)
        try:
            for trial in range(args.trials):
                rows.append(
                    trial_edit(trial, args.services, work, east_dns, health, args.control_s)
                )
                print(rows[-1][0], trial, rows[-1][4], rows[-1][3].row(), file=sys.stderr)
                rows.append(trial_rebuild(trial, work, east_dns, health, args.control_s))
                print(rows[-1][0], trial, rows[-1][4], rows[-1][3].row(), file=sys.stderr)
        finally:
            health.close()
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    report = render(args, size, loaded, seen, rows)
    print(report)
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + report)


def render(
    args: argparse.Namespace, size: int, loaded: Window, seen: float | None, rows: list[Row]
) -> str:
    git = ["git", "log", "-1", "--format=%h"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    secure = "plaintext (`--insecure`)" if args.insecure else "mutual TLS, signed records"
    flags = f" --services {args.services} --trials {args.trials} --control-s {args.control_s}"
    flags += " --insecure" if args.insecure else ""
    lines = [
        f"## {datetime.date.today()} — event-loop lag while the manifests source reloads "
        f"{args.services:,} services (real processes)",
        "",
        f"Command: `.venv/bin/python bench/source_reload_bench.py{flags}` at {commit}. "
        f"Machine: {machine()}. Two `meshd run` processes, {secure}; east reads one "
        f"{size / 1e6:.1f} MB file. Latency of a UDP DNS query to east sent every 5 ms "
        "(ms; a query unanswered when its window closes counts with the time it waited). "
        "`west dropped east`: samples (every 0.25 s) of west's "
        '`meshd_clusters{health="unhealthy"}` above 0 during the window.',
        "",
        "| window | trial | done after, s | queries | median | p99 | p99.9 | max "
        "| west dropped east |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| initial load | | {seen or float('nan'):.2f} | {loaded.row()} | |",
    ]
    for kind, trial, control, window, done, (dropped, samples) in rows:
        lines.append(f"| control before {kind} | {trial + 1} | | {control.row()} | |")
        shown = f"{done:.2f}" if done is not None else "not seen"
        lines.append(
            f"| {kind} | {trial + 1} | {shown} | {window.row()} | {dropped} of {samples} |"
        )
    for kind in ("edit", "rebuild"):
        mine = [r for r in rows if r[0] == kind]
        if not mine:
            continue
        lines.append(
            f"| **median, {kind}** | | {_median(r[4] for r in mine)} | "
            f"| {_median(r[3].median * 1e3 for r in mine)} "
            f"| {_median(r[3].quantile(0.99) * 1e3 for r in mine)} "
            f"| {_median(r[3].quantile(0.999) * 1e3 for r in mine)} "
            f"| {_median(r[3].longest * 1e3 for r in mine)} | |"
        )
        lines.append(
            f"| **median, control** | | | "
            f"| {_median(r[2].median * 1e3 for r in mine)} "
            f"| {_median(r[2].quantile(0.99) * 1e3 for r in mine)} "
            f"| {_median(r[2].quantile(0.999) * 1e3 for r in mine)} "
            f"| {_median(r[2].longest * 1e3 for r in mine)} | |"
        )
    return "\n".join(lines) + "\n"


def _median(values: object) -> str:
    found = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return f"{statistics.median(found):.2f}" if found else "-"


if __name__ == "__main__":
    main()
