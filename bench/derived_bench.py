"""Answer mode clusterset-ip: how long a ring change takes to reach the derived EndpointSlices
in the API server (issue 15: under a second).

One replica's Kubernetes side, in-process and real: ``KubernetesSource`` (list and watch),
the agent's routing planner (``AnswerPlanner``, re-planned on each change as the agent's
rebuild does) and ``KubeWriter`` with the agent's default timings (``WriterSettings()``:
looks for changes every 0.25 s, passes at most every 0.2 s), against the in-process fake API
server of tests/k8s over HTTPS with the shipped RBAC. This cluster (east) exports N services
in answer mode clusterset-ip with one ready endpoint each; west exports them too, with one
endpoint each. A "ring change" is a new state of west arriving (what the ring hands the
catalog) that moves west's endpoint of one service, while east's endpoint of that service is
not ready, so the policy answers from west: the clock runs from the catalog merge to the
moment the API server commits the EndpointSlice holding west's new address (a listener on
the fake's store, no polling). Each size: the derived objects are created first, then
``--changes`` changes, one at a time.

Usage: ``.venv/bin/python bench/derived_bench.py [--sizes 1 100 500] [--changes 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from mesh.kube.derived import derived_name
from mesh.kube.writer import WriterSettings
from mesh.model import (
    ClusterState,
    Endpoint,
    ExportedService,
    ServiceKey,
    ServicePort,
    ServiceType,
)
from mesh.routing.modes import Answering
from tests.k8s.fake_store import StoredEvent
from tests.k8s.objects import exported_service, namespace
from tests.k8s.writeback import RecordingApiServer, Replica

HTTP = ServicePort("http", "TCP", 80)


def west_state(size: int, version: int, moved: int) -> ClusterState:
    """West's exports; service ``moved`` has its endpoint at a new address in this version."""
    services = {}
    for i in range(size):
        key = ServiceKey("shop", f"s{i}")
        last = version if i == moved else 0
        endpoint = Endpoint((f"10.2.{i % 250}.{last % 250 + 1}",))
        services[key] = ExportedService(
            key, ServiceType.CLUSTER_SET_IP, (HTTP,), (endpoint,), exported_at=1.0
        )
    return ClusterState("west", 7, version, "us", namespaces=frozenset({"shop"}), services=services)


async def run(size: int, changes: int) -> list[float]:
    async with RecordingApiServer() as api:
        api.put(namespace("meshd-system"))
        for i in range(size):
            for obj in exported_service(
                "shop", f"s{i}", [(f"10.1.{i % 250}.{i // 250 + 1}", False)]
            ):
                api.put(obj)
        landed: dict[str, float] = {}

        def listen(event: StoredEvent) -> None:
            if event.resource.plural == "endpointslices" and event.type != "DELETED":
                for e in event.obj.get("endpoints") or []:
                    for address in e["addresses"]:
                        landed.setdefault(
                            f"{event.obj['metadata']['name']}|{address}", time.perf_counter()
                        )

        api.store.listeners.append(listen)
        with tempfile.TemporaryDirectory() as tmp:
            answering = Answering("clusterset-ip", vips=True)
            east = Replica(api, Path(tmp), "a", settings=WriterSettings(), answering=answering)
            try:
                east.merge(west_state(size, 1, -1))
                deadline = time.perf_counter() + 60 + size * 0.2
                last = derived_name(ServiceKey("shop", f"s{size - 1}"))
                first = f"{last}-west-ipv4|10.2.{(size - 1) % 250}.1"
                while first not in landed:
                    east.check()
                    assert time.perf_counter() < deadline, "derived objects not created"
                    await asyncio.sleep(0.01)
                while east.writer.plan().writes:  # the creation done (imports' VIPs too)
                    east.check()
                    assert time.perf_counter() < deadline, "derived objects not settled"
                    await asyncio.sleep(0.1)
                created = time.perf_counter() - deadline + 60 + size * 0.2
                samples = []
                for version in range(2, changes + 2):
                    moved = version % size
                    address = f"10.2.{moved % 250}.{version % 250 + 1}"
                    name = f"{derived_name(ServiceKey('shop', f's{moved}'))}-west-ipv4|{address}"
                    landed.pop(name, None)
                    started = time.perf_counter()
                    east.merge(west_state(size, version, moved))
                    while name not in landed:
                        east.check()
                        assert time.perf_counter() - started < 10, f"change {version} not derived"
                        await asyncio.sleep(0.002)
                    samples.append(landed[name] - started)
                    await asyncio.sleep(0.3)  # apart: each change its own pass
                print(f"  {size} services: derived objects created in {created:.1f} s")
                return samples
            finally:
                await east.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    print(machine())
    print("| services | changes | median s | p95 s | max s |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        samples = sorted(asyncio.run(run(size, args.changes)))
        p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
        print(
            f"| {size} | {len(samples)} | {statistics.median(samples):.3f} | {p95:.3f} "
            f"| {samples[-1]:.3f} |"
        )


if __name__ == "__main__":
    main()
