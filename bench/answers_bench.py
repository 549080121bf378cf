"""The "policy + DNS answers" stage of a catch-up alone, in CPU seconds: routing decisions
and DNS answers of every service, as the newcomer of ``bench/catchup_bench.py`` makes them.

Takes the replies ``catchup_bench.py --role produce --data DIR`` wrote (parse, open, apply,
catalog: the newcomer's first stage, not measured here), then ``--repeat`` times plans every
service and encodes every answer into a fresh zone (``AnswerPlanner.plan``, then
``Zone.set_service`` per service, with the garbage collector on, and a full collection at the
end as ``catchup_bench`` does), and reports the process CPU time and wall time of each run,
their medians, the RSS with the first run's zone, and the full garbage collections of each
run (count and CPU seconds: each walks every object of the process, the catalog's too). CPU
time is what the stage costs; on a shared machine wall time also counts the others' work.

Runs against another checkout with ``PYTHONPATH=DIR_WITH_SITECUSTOMIZE:CHECKOUT`` (the
sitecustomize removes the editable install's finder, so the checkout's packages win).

Usage: ``.venv/bin/python bench/catchup_bench.py --role produce --data DIR --clusters 10
--endpoints 100000``, then ``.venv/bin/python bench/answers_bench.py --data DIR [--repeat 3]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import struct
import sys
import time
from pathlib import Path

# After PYTHONPATH (another checkout) and the installed project: a fallback only.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from dnsserver.zone import Zone
from mesh.model import ClusterState
from mesh.ring.catalog import Catalog
from mesh.ring.records import OriginLog, RecordStore
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality
from mesh.security.signing import Trust
from mesh.wire.record_codec import ChunkOpener
from mesh.wire.v1 import gossip_pb2 as pb

NAMESPACES = 20  # as catchup_bench makes them


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def take(data: Path) -> Catalog:
    """The newcomer's first stage: every reply parsed, opened, applied and cataloged."""
    ca = data / "ca.crt"
    opener = ChunkOpener(Trust.from_pem(ca.read_bytes()) if ca.exists() else None)
    namespaces = frozenset(f"ns{n}" for n in range(NAMESPACES))
    catalog = Catalog(ClusterState("c0", 1, 0, "r0", namespaces=namespaces, replica="a"))
    store = RecordStore(OriginLog("c0", "a", 1))
    wall = time.time()
    with (data / "replies.bin").open("rb") as fh:
        while header := fh.read(4):
            reply = pb.PushPullResponse.FromString(fh.read(struct.unpack(">I", header)[0]))
            for msg in reply.chunks:
                applied = store.apply(opener.open(msg, wall), 0.0)
                if applied.state is not None:
                    catalog.put(applied.state, None, True)
    return catalog


class FullCollections:
    """How many full (generation 2) garbage collections ran, and their CPU seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.process_time()
        else:
            self.count += 1
            self.seconds += time.process_time() - self._started


def stage(catalog: Catalog) -> tuple[float, float, tuple[Zone, AnswerPlanner]]:
    """(CPU seconds, wall seconds, (the zone, the planner)) of planning and encoding every
    answer."""
    cpu, wall = time.process_time(), time.perf_counter()
    clusters = catalog.clusters()
    planner = AnswerPlanner(Locality("c0", "r0"))
    planner.note_health({s.cluster_id for s in clusters}, clusters)
    zone = Zone("clusterset.local", serial=1)
    for key, records in planner.plan(clusters, catalog.local.namespaces):
        zone.set_service(key.namespace, key.name, records)
    zone.synced = True
    gc.collect()
    return time.process_time() - cpu, time.perf_counter() - wall, (zone, planner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    catalog = take(args.data)
    gc.collect()
    base = rss_mib()
    runs = []
    full = []
    for i in range(args.repeat):
        collections = FullCollections()
        cpu_s, wall_s, made = stage(catalog)
        gc.callbacks.remove(collections._observe)
        runs.append((cpu_s, wall_s))
        full.append(collections)
        if i == 0:
            after = rss_mib()  # with the zone and the planner's state alive
            services = made[0].service_count()
        del made
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    print(
        f"{Path(sys.modules[Zone.__module__].__file__ or '').parents[1]}: {services:,} services; "
        f"CPU s {' '.join(f'{r[0]:.2f}' for r in runs)} (median {cpu:.2f}, "
        f"{cpu / services * 1e6:.1f} us per service); wall s "
        f"{' '.join(f'{r[1]:.2f}' for r in runs)} (median {wall:.2f}); "
        f"RSS {base:.0f} -> {after:.0f} MiB with the first run's zone; full garbage "
        f"collections (the last one explicit): "
        f"{', '.join(f'{c.count} in {c.seconds:.2f} s' for c in full)}"
    )


if __name__ == "__main__":
    main()
