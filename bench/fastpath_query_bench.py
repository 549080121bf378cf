"""Per-query cost of the DNS answer paths on a zone of plain ClusterSetIP services.

Builds a zone of ``--services`` plain services as a catch-up makes them (3 IPv4 endpoints,
one named port ``http``), then answers a fixed mix of queries (A, SRV at the service's name
and at ``_http._tcp``, ANY, AAAA that is NODATA; half with EDNS; names in random order)
through the C path (``_fastpath.answer``, one query per call: the batch path's per-query
work plus a call's set-up) and the Python path (``query.respond``), ``--runs`` times each,
and prints the median queries per second of each (process CPU time). Runs against another
checkout with ``PYTHONPATH=DIR_WITH_SITECUSTOMIZE:CHECKOUT`` (see ``answers_bench.py``).

Usage: ``.venv/bin/python bench/fastpath_query_bench.py [--services 20000] [--runs 5]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import time
from pathlib import Path

# After PYTHONPATH (another checkout) and the installed project: a fallback only.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import dnsserver
from dnsserver import wire
from dnsserver.query import QueryStats, respond
from dnsserver.records import ServiceRecords
from dnsserver.zone import Zone

try:
    from dnsserver import _fastpath
except ImportError:  # the optional extension is not built
    _fastpath = None  # type: ignore[assignment]

QUERIES = 50_000  # per run and path: bounded


def _query(rng: random.Random, name: str, qtype: int, edns: bool) -> bytes:
    header = struct.pack("!HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, int(edns))
    opt = wire.opt_record(1232) if edns else b""
    return header + wire.encode_name(name) + struct.pack("!HH", qtype, 1) + opt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"dnsserver from {Path(dnsserver.__file__).parent}, seed {args.seed}")
    rng = random.Random(args.seed)
    zone = Zone("clusterset.local", serial=1)
    zone.synced = True
    for i in range(args.services):
        addresses = tuple(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 | j}" for j in (1, 2, 3))
        ports = (("http", "TCP", 80),)
        zone.set_service(
            f"ns{i % 20}",
            f"svc-{i}",
            ServiceRecords(f"ns{i % 20}", f"svc-{i}", False, addresses, ports),
        )
    mix = [(1, ""), (1, ""), (33, ""), (33, "_http._tcp."), (255, ""), (28, "")]
    queries = []
    for _ in range(QUERIES):
        i = rng.randrange(args.services)
        qtype, prefix = rng.choice(mix)
        queries.append(
            _query(
                rng, f"{prefix}svc-{i}.ns{i % 20}.svc.clusterset.local", qtype, rng.random() < 0.5
            )
        )
    paths = {"python respond": lambda q, s: respond(zone, q, True, s)}
    if _fastpath is not None:
        fast = _fastpath.answer
        paths["C answer"] = lambda q, s: fast(zone, q, s, respond)
    for label, path in paths.items():
        rates = []
        for _ in range(args.runs):
            stats = QueryStats()
            start = time.process_time()
            for q in queries:
                path(q, stats)
            rates.append(len(queries) / (time.process_time() - start))
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{label}: median {statistics.median(rates):,.0f} q/s (runs: {runs})")


if __name__ == "__main__":
    main()
