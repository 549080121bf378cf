"""One service change from its origin to every other member, at 200 members: real gRPC.

A local change reaches the others from the origin itself: ``Ring.nudge`` pushes the new
records to every reachable peer at once (one hop), so at N members the time to reach all
is the origin's fan-out of N - 1 push-pulls plus a round trip. This bench runs that path
with the agent's own ``Ring`` class: the origin in this process, the other members spread
over ``--workers`` processes (each member its own gRPC server on 127.0.0.1), all synced
first. Per trial the origin changes one service, publishes and pushes as ``nudge`` does;
each member notes (CLOCK_MONOTONIC, shared by every process of the machine) when its
catalog holds the new endpoint, and the trial's time is the last member's. The periodic
rounds are not running (they would only repeat what the push delivered), and 199 members
share this machine's 2 cores, so the receiving side is far more crowded than in a real
clusterset, where each member has its own machine.

Usage: ``.venv/bin/python bench/fanout_bench.py [--members 200] [--workers 4] [--trials 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine  # noqa: E402

from mesh.model import (  # noqa: E402
    ClusterState,
    Endpoint,
    ExportedService,
    LocalExports,
    ServiceKey,
    ServiceType,
)
from mesh.ring.catalog import Catalog, Change  # noqa: E402
from mesh.ring.peers import PeerTable, PeerTimings  # noqa: E402
from mesh.transport.gossip import Ring  # noqa: E402

KEY = ServiceKey("shop", "db")


def exports(address: str) -> LocalExports:
    svc = ExportedService(KEY, ServiceType.HEADLESS, endpoints=(Endpoint((address,)),))
    return LocalExports(frozenset({"shop"}), {KEY: svc})


async def make_ring(index: int, on_change: object = None) -> Ring:
    catalog = Catalog(ClusterState(f"c{index}", 1, 0, replica="a"))
    callback = on_change if callable(on_change) else (lambda change: None)
    ring = Ring(catalog, PeerTable(f"c{index}", "127.0.0.1:0", [], PeerTimings()), callback)
    change = catalog.set_local(exports(f"10.{index // 250}.{index % 250}.1"))
    ring.publisher.publish(catalog.local, change, 0.0)
    port = await ring.start("127.0.0.1:0")
    ring.peers.self_address = f"127.0.0.1:{port}"
    return ring


async def serve(indexes: list[int], conn: Connection) -> None:
    """A worker: members ``indexes``; reports when each holds the expected address."""
    expected = {"address": ""}
    arrived: dict[int, float] = {}
    rings: list[Ring] = []
    everyone = asyncio.Event()

    def watcher(i: int) -> object:
        def on_change(change: Change) -> None:
            state = rings[i].catalog.get("c0")
            if state is not None and KEY in state.services:
                address = state.services[KEY].endpoints[0].addresses[0]
                if address == expected["address"] and i not in arrived:
                    arrived[i] = time.monotonic()
                    if len(arrived) == len(rings):
                        everyone.set()

        return on_change

    for n, index in enumerate(indexes):
        rings.append(await make_ring(index, watcher(n)))
    conn.send([r.peers.self_address for r in rings])
    loop = asyncio.get_running_loop()
    try:
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                return
            expected["address"] = command
            arrived.clear()
            everyone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everyone.wait(), 30)
            conn.send((len(arrived), max(arrived.values(), default=float("inf"))))
    finally:
        await asyncio.gather(*(r.close() for r in rings), return_exceptions=True)


def worker(indexes: list[int], conn: Connection) -> None:
    asyncio.run(serve(indexes, conn))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    others = list(range(1, args.members))
    groups = [others[w :: args.workers] for w in range(args.workers)]
    pipes, procs = [], []
    for group in groups:
        parent, child = mp.Pipe()
        proc = mp.Process(target=worker, args=(group, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    origin = await make_ring(0)
    try:
        addresses = [a for pipe in pipes for a in pipe.recv()]
        for address in addresses:
            origin.peers.add_seed(address)
        for start in range(0, len(addresses), 20):  # sync, learn them (20 at a time)
            await asyncio.gather(*(origin._exchange(a) for a in addresses[start : start + 20]))
        now = asyncio.get_running_loop().time()
        known = sum(1 for a in addresses if origin.peers.reachable(a, now))
        if known != len(addresses):
            raise SystemExit(f"only {known} of {len(addresses)} members synced")
        times = []
        for trial in range(args.trials + 1):  # the first is a warm-up, not counted
            address = f"10.200.{trial // 250}.{trial % 250 + 1}"
            for pipe in pipes:
                pipe.send(address)
            await asyncio.sleep(0.05)  # let the workers take the command before the clock
            started = time.monotonic()
            change = origin.catalog.set_local(exports(address))
            origin.publisher.publish(origin.catalog.local, change, 0.0)
            now = asyncio.get_running_loop().time()
            reachable = [a for a in origin.peers.peers if origin.peers.reachable(a, now)]
            await asyncio.gather(*(origin._exchange(a) for a in reachable))  # as nudge does
            reports = [pipe.recv() for pipe in pipes]
            reached = sum(n for n, _ in reports)
            if reached != len(others):
                raise SystemExit(f"trial {trial}: {reached} of {len(others)} members reached")
            if trial:
                times.append(max(t for _, t in reports) - started)
        times.sort()
        print(
            f"## {datetime.date.today()} — one change from its origin to {args.members - 1} "
            f"members (real gRPC, {args.workers} processes)\n\n"
            f"Command: `.venv/bin/python bench/fanout_bench.py --members {args.members} "
            f"--workers {args.workers} --trials {args.trials}`. Machine: {machine()}.\n\n"
            "| members | trials | p50 s | p99 s | max s |\n|---:|---:|---:|---:|---:|\n"
            f"| {args.members} | {len(times)} | {statistics.median(times):.3f} | "
            f"{times[min(len(times) - 1, int(len(times) * 0.99))]:.3f} | {times[-1]:.3f} |"
        )
    finally:
        for pipe in pipes:
            pipe.send("stop")
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        await origin.close()


if __name__ == "__main__":
    asyncio.run(main())
