"""``meshd drill`` figures: how long every agent takes to leave a drained cluster out of its
answers, and to take it back after the undrain, measured by the drill itself.

Two set-ups, both real processes on 127.0.0.1 with the agents' default timings
(``--gossip-interval 0.5``):

- demo: ``meshd demo`` (three clusters, one agent each, mutual TLS and signed records),
  drilled with ``meshd drill --cluster east --service shop/api`` (weights east=70,west=30,
  one address per answer: every agent answers east in 7 answers of 10);
- ten: ten ``meshd run`` agents, five clusters of two replicas each (``--insecure``), one
  service ``api`` exported by all five in one tier (``meshd.io/affinity: none``), drilled
  with ``--cluster c0``: every one of the ten agents answers with c0 before the drain.

Each run is one ``meshd drill --json``; the table gives the median over the runs of the
slowest member (``max_drained_s``, ``max_restored_s``) and the slowest single member seen.

Usage: ``.venv/bin/python bench/drill_bench.py [--runs 5] [--append bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine  # noqa: E402  (bench/common.py)

from tests.integration.harness import MESHD, AgentProcess, free_port_run, wait_until  # noqa: E402

CLUSTERS = 5
REPLICAS = 2
TIMINGS = ("--gossip-interval", "0.5", "--peer-timeout", "2.0")


def drill(admin: str, cluster: str, service: str) -> dict[str, Any]:
    done = subprocess.run(
        [*MESHD, "drill", "--admin", admin, "--cluster", cluster, "--service", service, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"drill failed ({done.returncode}): {done.stderr}{done.stdout}")
    return dict(json.loads(done.stdout))


def run_demo(runs: int) -> list[dict[str, Any]]:
    dns, admin = free_port_run(3), free_port_run(3)
    proc = subprocess.Popen(
        [*MESHD, "demo", "--dns-port-base", str(dns), "--admin-port-base", str(admin)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Ctrl-C"):
                break
        return [drill(f"127.0.0.1:{admin}", "east", "shop/api") for _ in range(runs)]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)


def manifest(index: int) -> str:
    return f"""apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec:
  ports: [{{name: http, protocol: TCP, port: 80}}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: api
  namespace: shop
  annotations: {{meshd.io/affinity: none}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-c{index}
  namespace: shop
  labels: {{kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 80}}]
endpoints:
- addresses: ["10.{index}.3.10"]
"""


def run_ten(runs: int, workdir: Path) -> list[dict[str, Any]]:
    agents: list[AgentProcess] = []
    for c in range(CLUSTERS):
        folder = workdir / f"c{c}"
        folder.mkdir()
        (folder / "shop.yaml").write_text(manifest(c))
        for r in range(REPLICAS):
            logs = workdir / f"c{c}-r{r}"
            logs.mkdir()
            agents.append(AgentProcess(f"c{c}", "r1", folder, logs))
    try:
        seeds = [agents[0].grpc]
        for i, agent in enumerate(agents):
            agent.start(seeds if i else [], *TIMINGS, "--replica-id", f"r{i % REPLICAS}")
        for agent in agents:
            agent.wait_ready()
        everyone = {f"10.{c}.3.10" for c in range(CLUSTERS)}
        for agent in agents:
            wait_until(
                f"{agent.cluster} to answer every cluster",
                lambda a=agent: a.addresses("api.shop.svc.clusterset.local") == everyone,  # type: ignore[misc]
                60,
            )
        admin = f"127.0.0.1:{agents[0].admin_port}"
        return [drill(admin, "c0", "shop/api") for _ in range(runs)]
    finally:
        for agent in agents:
            agent.stop()


def row(name: str, reports: list[dict[str, Any]]) -> str:
    drained = [r["max_drained_s"] for r in reports]
    restored = [r["max_restored_s"] for r in reports]
    members = len(reports[0]["members"])
    worst_d = max(m["drained_s"] for r in reports for m in r["members"])
    worst_r = max(m["restored_s"] for r in reports for m in r["members"])
    return (
        f"| {name} | {members} | {len(reports)} | {statistics.median(drained):.2f} | "
        f"{worst_d:.2f} | {statistics.median(restored):.2f} | {worst_r:.2f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--append", type=Path, default=None)
    args = parser.parse_args()
    demo = run_demo(args.runs)
    with tempfile.TemporaryDirectory(prefix="meshd-drill-bench-") as tmp:
        ten = run_ten(args.runs, Path(tmp))
    head = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", "mesh", "dnsserver"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    lines = [
        f"## {datetime.date.today()} — `meshd drill`: a drained cluster out of every agent's "
        f"answers and back (code {head})",
        "",
        f"- machine: {machine()} (shared with other engineers); date: {datetime.date.today()}",
        f"- command: `.venv/bin/python bench/drill_bench.py --runs {args.runs}`",
        "- demo: `meshd demo` (east, west, south; TLS, signed records), `meshd drill --cluster "
        "east --service shop/api`; ten: 5 clusters x 2 replicas of `meshd run --insecure`, "
        "`api` exported by all five in one tier, `meshd drill --cluster c0`. Agents' default "
        "timings (gossip every 0.5 s). Times from the drain (undrain) request to each "
        "member's answers leaving the cluster out (taking it back), polled every 50 ms with "
        "4 queries.",
        "",
        "| set-up | members | runs | max drained s, median | slowest member drained s | "
        "max restored s, median | slowest member restored s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("demo, 3 clusters", demo),
        row("ten agents, 5 clusters x 2", ten),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"demo": demo, "ten": ten})[:2000], file=sys.stderr)
    if args.append is not None:
        with args.append.open("a") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
