"""How long an edit takes to reach the agent when the scan worker's core is saturated.

The manifests scan worker (``mesh.sources.offload``) runs at nice 10. It was tried in the
idle scheduling class (``SCHED_IDLE``), so that it never makes a DNS query wait; the price
was that on a core something else saturates it ran only in the scheduler's crumbs, and
meshd went back to nice 10 (``bench/RESULTS.md``, the busy tail, part 2). This probe
measures that price: a ``ManifestSource`` over ``--services`` services plus a one-service
``churn.yaml``, this process (and so its worker) pinned to core 0, a nice-0 busy loop on
the same core (bounded by ``timeout``), then ``--edits`` edits of ``churn.yaml``, each
timed from the write to ``on_change`` (at most ``--wait`` seconds each). Run it with
``PYTHONPATH=DIR`` (a reference checkout) to compare.

Usage: ``.venv/bin/python bench/scan_priority_probe.py [--services 1000] [--edits 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import busy_tail_bench
import dns_bench

import mesh
from mesh.model import LocalExports
from mesh.sources.manifests import ManifestSource


async def probe(directory: Path, edits: int, wait_s: float) -> list[float]:
    delivered = asyncio.Event()

    def on_change(_: LocalExports) -> None:
        delivered.set()

    source = ManifestSource(directory, on_change)
    task = asyncio.create_task(source.run())
    delays: list[float] = []
    hog = None
    try:
        await asyncio.wait_for(delivered.wait(), 60)
        await asyncio.sleep(0.5)  # past the worker's first answer: in its class now
        hog = await asyncio.create_subprocess_exec(
            "taskset", "-c", "0", "timeout", "60", sys.executable, "-c", "while True: pass"
        )
        await asyncio.sleep(0.5)
        for n in range(1, edits + 1):
            delivered.clear()
            start = time.monotonic()
            (directory / "churn.yaml").write_text(busy_tail_bench.churn_yaml(n))
            try:
                await asyncio.wait_for(delivered.wait(), wait_s)
                delays.append(time.monotonic() - start)
            except TimeoutError:
                delays.append(float("inf"))
    finally:
        if hog is not None:
            hog.terminate()
            await hog.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--wait", type=float, default=6.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    directory = Path(tempfile.mkdtemp(prefix="scan-priority-"))
    try:
        dns_bench.write_manifests(directory, args.services)
        (directory / "churn.yaml").write_text(busy_tail_bench.churn_yaml(0))
        delays = asyncio.run(probe(directory, args.edits, args.wait))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"{mesh.__file__}: edit to delivery with a nice-0 busy loop on the core, s: "
        + ", ".join(f"{d:.3f}" for d in delays)
    )


if __name__ == "__main__":
    main()
