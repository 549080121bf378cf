"""Fixed cost of one wakeup of the DNS server's UDP reader, without the event loop.

The server's UDP socket is read by a callback the event loop calls when it is readable; at
10,000 queries/s nearly every wakeup carries one query, so a wakeup's fixed cost is paid by
every query. This calls the server's reader directly (``DnsServer._reader``, the C
``_fastpath.Reader``; a checkout before it has the Python method ``_udp_readable``) on a
real UDP socket bound on loopback, first with nothing waiting (one recvmmsg(2) that finds
nothing: the pure fixed cost), then with one query sent from a client socket before each
call (the client's send and receive are in the figure too). Process CPU time per call,
``--runs`` times each; prints every run and the median.

Usage: ``.venv/bin/python bench/wakeup_bench.py [--runs 5]``; against another checkout,
``PYTHONPATH=CHECKOUT .venv/bin/python bench/wakeup_bench.py`` (with its ``_fastpath`` built).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

# After PYTHONPATH (another checkout) and the installed project: a fallback only.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import dnsserver
from dnsserver import wire
from dnsserver.records import ServiceRecords
from dnsserver.server import DnsServer, DnsServerConfig
from dnsserver.zone import Zone

EMPTY_CALLS = 200_000  # per run: bounded
QUERY_CALLS = 50_000


def per_call_ns(call: object, count: int, before: object = None) -> float:
    assert callable(call)
    start = time.process_time()
    for _ in range(count):
        if before is not None:
            before()  # type: ignore[operator]
        call()
    return (time.process_time() - start) / count * 1e9


async def measure(runs: int) -> None:
    zone = Zone("clusterset.local", serial=1)
    zone.synced = True
    for i in range(1000):
        address = (f"10.0.{i >> 8}.{i & 255}",)
        zone.set_service(
            "ns",
            f"svc-{i}",
            ServiceRecords("ns", f"svc-{i}", False, address, (("http", "TCP", 80),)),
        )
    server = DnsServer(DnsServerConfig(host="127.0.0.1", port=0), zone)
    await server.start()
    try:
        asyncio.get_running_loop().remove_reader(server._fast_fd)  # we call it ourselves
        reader = getattr(server, "_reader", None) or server._udp_readable
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.connect(server.address)
            client.settimeout(5)
            query = (
                struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
                + wire.encode_name("svc-5.ns.svc.clusterset.local")
                + struct.pack("!HH", 1, 1)
            )

            def ask() -> None:
                client.send(query)

            def answered() -> None:
                reader()
                client.recv(512)

            empty = [per_call_ns(reader, EMPTY_CALLS) for _ in range(runs)]
            one = [per_call_ns(answered, QUERY_CALLS, ask) for _ in range(runs)]
    finally:
        await server.close()
    for label, figures in (("nothing waiting", empty), ("one query (with the client's)", one)):
        runs_text = ", ".join(f"{f:,.0f}" for f in figures)
        print(f"{label}: median {statistics.median(figures):,.0f} ns per wakeup ({runs_text})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"dnsserver from {Path(dnsserver.__file__).parent}")
    asyncio.run(measure(args.runs))


if __name__ == "__main__":
    main()
