"""DNS latency as the kernel sees it: from a query entering loopback to its answer leaving.

dnsperf times a query from its own send to its own receive, so its latency includes the
time dnsperf itself waits for a core. On this 2-core host the client shares its core with
the busy bench's 10 peer agents, and its tail moves with them (Knot's busy p99 went from
1.6 to 20 ms between runs of one session). This load takes the client out: its socket asks
the kernel for software timestamps (``SO_TIMESTAMPING``) of each query as it is
transmitted (read back from the error queue, matched by ``SOF_TIMESTAMPING_OPT_ID``'s
counter) and of each answer as it is received (a control message with the datagram). On
loopback the transmit stamp is taken as the query is handed to the loopback device, and
the receive stamp as the server's answer is queued for the client, in the server's own send
path: their difference is the server's latency (its socket queue, its wait for the core,
its answer) and two loopback traversals, whenever the client gets round to reading them.

The client is a small C program (``bench/stamped_client.c``, built here with ``cc`` on
first use into ``bench/work``): one thread, queries on a fixed schedule at ``rate`` a
second (the DNS ID is the query's number, so at most 65,536 per load), answers and stamps
read as they come. A Python client's threads fell behind the schedule on the busy core and
sent in bursts, which changed the load itself. It reads the binary query file dnsperf
reads (``-B``: each query behind a 2-byte length).

Usage (alone): ``.venv/bin/python bench/stamped_load.py PORT QUERIES [SECONDS] [RATE]``;
``busy_tail_bench.py --stamped`` runs it in place of dnsperf.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "stamped_client.c"
BINARY = HERE / "work" / "stamped_client"


def client() -> Path:
    """The built client, rebuilt when its source is newer."""
    if not BINARY.exists() or BINARY.stat().st_mtime < SOURCE.stat().st_mtime:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError("no C compiler (cc) to build bench/stamped_client.c")
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [compiler, "-O2", "-Wall", "-o", str(BINARY), str(SOURCE)], check=True, timeout=120
        )
    return BINARY


def stamped_load(port: int, queries: Path, seconds: float, rate: int) -> dict[str, float]:
    """``seconds * rate`` queries to 127.0.0.1:``port`` at ``rate`` a second; returns p50,
    p99 and p99.9 of the kernel-stamped latency in microseconds, and the counts."""
    result = subprocess.run(
        [str(client()), str(port), str(queries), f"{seconds:g}", str(rate)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"stamped client failed: {result.stderr[-1000:]}")
    latencies = sorted(int(line) / 1000 for line in result.stdout.split())
    sent = int(seconds * rate)
    if len(latencies) < sent // 2:
        raise RuntimeError(f"only {len(latencies)} of {sent} queries stamped both ways")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))]

    return {
        "p50": pct(0.5),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "answered": len(latencies),
        "sent": sent,
    }


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    print(stamped_load(port, path, seconds, rate))


if __name__ == "__main__":
    main()
