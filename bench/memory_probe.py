"""Where a catch-up's memory goes, by source line (tracemalloc), per service.

Replays the newcomer of ``bench/catchup_bench.py`` on replies it wrote (``--role produce
--data DIR``) under tracemalloc, takes a snapshot after the records are taken and another
after every DNS answer is built, and prints the largest lines of each stage in bytes and
objects per service. tracemalloc counts what was asked of the allocator, not RSS
(allocator rounding and fragmentation come on top: about 10%), and slows the run about
5x, so keep it to tens of thousands of services.

Usage: ``.venv/bin/python bench/catchup_bench.py --role produce --data DIR --clusters 10
--endpoints 100000`` then ``.venv/bin/python bench/memory_probe.py --data DIR [--top 12]``
"""

from __future__ import annotations

import argparse
import gc
import struct
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dnsserver.zone import Zone  # noqa: E402
from mesh.model import ClusterState  # noqa: E402
from mesh.ring.catalog import Catalog  # noqa: E402
from mesh.ring.records import OriginLog, RecordStore  # noqa: E402
from mesh.routing.planner import AnswerPlanner  # noqa: E402
from mesh.routing.policy import Locality  # noqa: E402
from mesh.security.signing import Trust  # noqa: E402
from mesh.wire.record_codec import ChunkOpener  # noqa: E402
from mesh.wire.v1 import gossip_pb2 as pb  # noqa: E402

NAMESPACES = 20  # as catchup_bench makes them


def show(title: str, stats: list[tracemalloc.StatisticDiff], services: int, top: int) -> None:
    total = sum(s.size_diff for s in stats)
    print(f"{title}: {total / services:,.0f} B per service")
    for s in stats[:top]:
        where = s.traceback[0]
        name = where.filename.removeprefix(str(ROOT) + "/")
        print(
            f"  {s.size_diff / services:8.1f} B {s.count_diff / services:5.2f} objects  "
            f"{name}:{where.lineno}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    tracemalloc.start(1)
    start = tracemalloc.take_snapshot()
    trust_file = args.data / "ca.crt"
    trust = Trust.from_pem(trust_file.read_bytes()) if trust_file.exists() else None
    opener = ChunkOpener(trust)
    namespaces = frozenset(f"ns{n}" for n in range(NAMESPACES))
    catalog = Catalog(ClusterState("c0", 1, 0, "r0", namespaces=namespaces, replica="a"))
    store = RecordStore(OriginLog("c0", "a", 1))
    planner = AnswerPlanner(Locality("c0", "r0"))
    wall = time.time()
    with (args.data / "replies.bin").open("rb") as fh:
        while header := fh.read(4):
            data = fh.read(struct.unpack(">I", header)[0])
            for msg in pb.PushPullResponse.FromString(data).chunks:
                applied = store.apply(opener.open(msg, wall), 0.0)
                if applied.state is not None:
                    planner.note(catalog.put(applied.state, None, True))
    gc.collect()
    taken = tracemalloc.take_snapshot()
    clusters = catalog.clusters()
    planner.note_health({s.cluster_id for s in clusters}, clusters)
    zone = Zone("clusterset.local", serial=1)
    for key, records in planner.plan(clusters, catalog.local.namespaces):
        zone.set_service(key.namespace, key.name, records)
    gc.collect()
    answered = tracemalloc.take_snapshot()
    services = zone.service_count()
    endpoints = sum(len(svc.endpoints) for s in clusters for svc in s.services.values())
    print(f"{services:,} services, {endpoints:,} endpoints")
    show("records (stage 1)", taken.compare_to(start, "lineno"), services, args.top)
    show("DNS answers (stage 2)", answered.compare_to(taken, "lineno"), services, args.top)


if __name__ == "__main__":
    main()
