"""Bytes per second per agent at steady state with 200 members: measured per exchange, scaled.

The ring's idle cost is its push-pulls. Two ``Ring`` objects (the agent's own class, real
gRPC, plaintext and mutual TLS) are joined through a TCP proxy that counts every byte in
each direction; after they converge, ``--exchanges`` idle push-pulls are timed and counted
on the wire (HTTP/2, gRPC and TLS framing included; TCP/IP headers not). Each agent starts
``min(N - 1, interval x rate) / interval`` exchanges a second (``mesh.ring.peers``: 40 a second
at most by default) and answers as many, so at N members its ring traffic is that many
exchanges times the bytes of one, in each role. The SWIM traffic per member comes from the
simulator (``bench/swim_sim.py``, fast profile, 200 members: 446 B/s, protobuf payload
plus the gRPC prefix; the same framing ratio as measured here is applied to it).

Usage: ``.venv/bin/python bench/steady_bytes_bench.py [--exchanges 200] [--members 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import tempfile
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
from mesh.ring.catalog import Catalog  # noqa: E402
from mesh.ring.peers import PeerTable, PeerTimings  # noqa: E402
from mesh.security import pki  # noqa: E402
from mesh.transport.gossip import Ring  # noqa: E402
from mesh.transport.tls import RingTls, TlsFiles  # noqa: E402

SWIM_PAYLOAD_BYTES_PER_S = 446.0  # bench/RESULTS.md, swim_sim.py, fast profile, 200 members


class CountingProxy:
    """127.0.0.1:port -> target, counting bytes each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0  # client -> server
        self.down = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(65536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


def _exports(n: int) -> LocalExports:
    keys = [ServiceKey("shop", f"s{i}") for i in range(n)]
    services = {
        k: ExportedService(k, ServiceType.HEADLESS, endpoints=(Endpoint((f"10.0.{i}.1",)),))
        for i, k in enumerate(keys)
    }
    return LocalExports(frozenset({"shop"}), services)


async def _ring(cluster: str, tls: RingTls | None, seeds: list[str]) -> tuple[Ring, int]:
    catalog = Catalog(ClusterState(cluster, 1, 0, replica="a"))
    ring = Ring(
        catalog, PeerTable(cluster, "127.0.0.1:0", seeds, PeerTimings()), lambda c: None, tls=tls
    )
    change = catalog.set_local(_exports(50))
    ring.publisher.publish(catalog.local, change, 0.0)
    port = await ring.start("127.0.0.1:0")
    ring.peers.self_address = f"127.0.0.1:{port}"
    return ring, port


async def measure(exchanges: int, secure: bool) -> tuple[float, float]:
    """Bytes on the wire per idle exchange: (request direction, reply direction)."""
    tls: dict[str, RingTls | None] = {"east": None, "west": None}
    with tempfile.TemporaryDirectory() as tmp:
        if secure:
            now = datetime.datetime.now(datetime.UTC)
            pki.init_ca("bench", Path(tmp) / "ca", force=False, now=now)
            for name in tls:
                out = Path(tmp) / name
                pki.issue(name, Path(tmp) / "ca", out, ["127.0.0.1"], force=False, days=1, now=now)
                tls[name] = RingTls(
                    TlsFiles(out / "tls.crt", out / "tls.key", out / "ca.crt"), name
                )
        east, east_port = await _ring("east", tls["east"], [])
        proxy = CountingProxy(east_port)
        proxy_port = await proxy.start()
        address = f"127.0.0.1:{proxy_port}"
        west, _ = await _ring("west", tls["west"], [address])
        try:
            for _ in range(3):  # converge, and let HPACK tables settle
                await west._exchange(address)
            up, down = proxy.up, proxy.down
            for _ in range(exchanges):
                await west._exchange(address)
            return (proxy.up - up) / exchanges, (proxy.down - down) / exchanges
        finally:
            await west.close()
            await east.close()
            proxy.server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=200)
    parser.add_argument("--members", type=int, default=200)
    args = parser.parse_args()
    timings = PeerTimings()
    started_per_s = min(args.members - 1, timings.interval_s * timings.max_exchanges_per_s) / (
        timings.interval_s
    )
    lines = [
        f"## {datetime.date.today()} — bytes per second per agent at steady state, "
        f"{args.members} members",
        "",
        f"Command: `.venv/bin/python bench/steady_bytes_bench.py --exchanges {args.exchanges} "
        f"--members {args.members}`. Machine: {machine()}. Wire bytes of one idle push-pull "
        f"measured through a counting TCP proxy (mean of {args.exchanges}); per agent: "
        f"{started_per_s:.0f} exchanges started and as many answered a second "
        f"(gossip interval {timings.interval_s} s, at most {timings.max_exchanges_per_s:.0f} a "
        "second), plus SWIM from the simulator scaled by the same framing ratio.",
        "",
        "| ring | request, B | reply, B | ring B/s per agent (in + out) | SWIM B/s per agent "
        "(in + out) | total B/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for secure in (False, True):
        up, down = await measure(args.exchanges, secure)
        ring_rate = 2 * started_per_s * (up + down)
        swim_payload = SWIM_PAYLOAD_BYTES_PER_S * 2  # sent, and about as much received
        framing = (up + down) / 122.0  # an idle exchange is 61 B of protobuf each way
        swim_wire = swim_payload * framing
        lines.append(
            f"| {'mutual TLS' if secure else 'plaintext'} | {up:.0f} | {down:.0f} | "
            f"{ring_rate:,.0f} | {swim_wire:,.0f} | {ring_rate + swim_wire:,.0f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
