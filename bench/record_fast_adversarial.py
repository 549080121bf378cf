"""How long ``record_fast.fast_sealed`` takes on crafted records: a peer's bytes are read by
the fast path before any signature is checked, so its worst case is any relay's to choose.

Each case is a sealed record of about ``--kib`` KiB that matches the expression a long way
and then fails (a long port name, many ports, many endpoints, many endpoint ports, each
followed by a byte that fits nowhere), plus two controls the fast path reads (a common
record with 3 endpoints, one with 5,000). ``--against REV`` also loads
``mesh/wire/record_fast.py`` as it was at git revision REV and times both, interleaved
run by run; medians of ``--runs`` runs (each run: the best of ``--repeat`` calls).

    .venv/bin/python bench/record_fast_adversarial.py --against HEAD~1 --runs 7
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType

from mesh.wire import record_fast
from mesh.wire.record_remake import encode_varint
from mesh.wire.v1 import gossip_pb2 as pb

ORIGIN = ("c1", "r-1", 300)


def _sealed(service_tail: bytes, service_size: int | None = None) -> bytes:
    head = pb.Service(namespace="shop", name="web", type=1).SerializeToString(deterministic=True)
    service = head + service_tail
    size = len(service) if service_size is None else service_size
    record = pb.Record(cluster_id="c1", replica="r-1", generation=300, version=9)
    body = record.SerializeToString(deterministic=True) + b"*" + encode_varint(size) + service
    return b"\n" + encode_varint(len(body)) + body + b"\x12@" + bytes(64) + b"\x1a " + b"ab" * 16


def cases(kib: int) -> dict[str, bytes]:
    n = kib * 1024
    port = b"\x22\x0d\n\x04http\x12\x03TCP\x18\x50"  # 15 bytes
    endpoint = b"*\x0c\n\x0810.0.0.1\x10\x01"  # 14 bytes
    common = pb.Service(
        namespace="shop",
        name="web",
        type=1,
        endpoints=[
            pb.Endpoint(addresses=[f"10.0.{i // 250}.{i % 250}"], ready=True) for i in range(3)
        ],
    ).SerializeToString(deterministic=True)[len(b"\n\x04shop\x12\x03web\x18\x01") :]
    large = pb.Service(
        namespace="shop",
        name="web",
        type=1,
        endpoints=[
            pb.Endpoint(addresses=[f"10.{i // 62500}.{i // 250 % 250}.{i % 250}"], ready=True)
            for i in range(5000)
        ],
    ).SerializeToString(deterministic=True)[len(b"\n\x04shop\x12\x03web\x18\x01") :]
    return {
        "long port name, then junk": _sealed(b"\x22\x05\n\x01" + b"a" * n + b"!"),
        "port name of 1s, then junk": _sealed(b"\x22\x05\n\x01" + b"1" * n + b"!"),
        "empty ports, then junk": _sealed(b"\x22\x00" * (n // 2) + b"!"),
        "ports, then junk": _sealed(port * (n // len(port)) + b"!"),
        "endpoints, then junk": _sealed(endpoint * (n // len(endpoint)) + b"!"),
        "endpoint ports, then junk": _sealed((b"R" + port[1:]) * (n // len(port)) + b"!"),
        "ports and endpoints, size off by one": _sealed(
            port * (n // 30) + endpoint * (n // 28), service_size=1
        ),
        "control: common record (3 endpoints)": _sealed(common),
        "control: 5,000 endpoints": _sealed(large),
    }


def _module_at(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:mesh/wire/record_fast.py"], check=True, capture_output=True
    ).stdout
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("record_fast_before", f.name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _time(call: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", help="git revision of the 'before' record_fast.py")
    args = parser.parse_args()
    sides: dict[str, ModuleType] = {"now": record_fast}
    if args.against:
        sides = {"before": _module_at(args.against), "now": record_fast}
    print(f"python {sys.version.split()[0]}; {args.kib} KiB cases; medians of {args.runs} runs")
    for name, data in cases(args.kib).items():
        times: dict[str, list[float]] = {side: [] for side in sides}
        answers = {
            side: module.fast_sealed(data, *ORIGIN) is not None for side, module in sides.items()
        }
        for _ in range(args.runs):  # interleaved: the host's load falls on both sides alike
            for side, module in sides.items():
                times[side].append(
                    _time(lambda m=module, d=data: m.fast_sealed(d, *ORIGIN), args.repeat)
                )
        row = "  ".join(
            f"{side} {statistics.median(t) * 1e3:8.3f} ms (read: {answers[side]})"
            for side, t in times.items()
        )
        print(f"{name:40s} {len(data):7d} B  {row}")


if __name__ == "__main__":
    main()
