"""DNS latency as the kernel sees it: from a query entering loopback to its answer leaving.

dnsperf times a query from its own send to its own receive, so its latency includes the
time dnsperf itself waits for a core. On this 2-core host the client shares its core with
the busy bench's 10 peer agents, and its tail moves with them (Knot's busy p99 went from
1.6 to 20 ms between runs of one session). This load generator takes the client out:
the socket asks the kernel for software timestamps (``SO_TIMESTAMPING``) of each query as
it is transmitted (read back from the error queue, matched by ``SOF_TIMESTAMPING_OPT_ID``'s
counter) and of each answer as it is received (a control message with the datagram). On
loopback the transmit stamp is taken as the query is handed to the loopback device, and
the receive stamp as the server's answer arrives on the client's socket, in the server's own
send path: their difference is the server's latency (its socket queue, its wait for the
core, its answer) plus two loopback traversals, whenever the client reads them.

The same binary query file dnsperf reads (``-B``: each query behind a 2-byte length),
sent at ``rate`` per second by one thread, in order and round the file; one thread reads
answers and stamps. At most 65,536 queries per load (the DNS ID names the query).

Usage (alone): ``.venv/bin/python bench/stamped_load.py PORT QUERIES [SECONDS] [RATE]``;
``busy_tail_bench.py --stamped`` runs it in place of dnsperf.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path

# linux/net_tstamp.h, asm-generic/socket.h, linux/in.h, linux/errqueue.h
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
IP_RECVERR = 11
SO_EE_ORIGIN_TIMESTAMPING = 4
MSG_ERRQUEUE = 0x2000
FLAGS = (
    SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_RX_SOFTWARE
    | SOF_TIMESTAMPING_SOFTWARE
    | SOF_TIMESTAMPING_OPT_ID
    | SOF_TIMESTAMPING_OPT_TSONLY
)
MAX_QUERIES = 65536
ANC = 512


def read_queries(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, at = [], 0
    while at + 2 <= len(data):
        (size,) = struct.unpack_from("!H", data, at)
        out.append(data[at + 2 : at + 2 + size])
        at += 2 + size
    if not out:
        raise ValueError(f"{path}: no queries")
    return out


def _stamp_ns(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(payload) >= 16:
            sec, nsec = struct.unpack_from("qq", payload, 0)  # [0]: the software stamp
            return sec * 1_000_000_000 + nsec
    return None


def _tx_id(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancdata:
        if level == socket.SOL_IP and kind == IP_RECVERR and len(payload) >= 16:
            origin = payload[4]  # after the 4-byte ee_errno
            if origin == SO_EE_ORIGIN_TIMESTAMPING:
                return int(struct.unpack_from("I", payload, 12)[0])
    return None


def stamped_load(port: int, queries: list[bytes], seconds: float, rate: int) -> dict[str, float]:
    """Send ``seconds * rate`` queries to 127.0.0.1:``port`` at ``rate`` a second; returns
    p50 / p99 / p99.9 of the kernel-stamped latency in microseconds, and the counts."""
    count = int(seconds * rate)
    if count > MAX_QUERIES:
        raise ValueError(f"at most {MAX_QUERIES} queries per load ({count} asked)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, FLAGS)  # OPT_ID counts from here
    sent_ns = [0] * count
    received_ns = [0] * count
    done, all_in = threading.Event(), threading.Event()
    answered = [0]
    wires = [bytearray(q) for q in queries]

    def send() -> None:
        start = time.monotonic()
        for seq in range(count):
            due = start + seq / rate
            wait = due - time.monotonic()
            if wait > 0.0005:
                time.sleep(wait)
            wire = wires[seq % len(wires)]
            struct.pack_into("!H", wire, 0, seq)
            sock.send(wire)

    def receive() -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR)
        while not done.is_set():
            if not poller.poll(100):
                continue
            while True:
                try:
                    data, anc, _, _ = sock.recvmsg(4096, ANC, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                stamp = _stamp_ns(anc)
                if len(data) >= 2 and stamp is not None:
                    received_ns[struct.unpack_from("!H", data, 0)[0] % count] = stamp
                    answered[0] += 1
                    if answered[0] >= count:
                        all_in.set()
            while True:
                try:
                    _, anc, _, _ = sock.recvmsg(0, ANC, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                tx, stamp = _tx_id(anc), _stamp_ns(anc)
                if tx is not None and stamp is not None and tx < count:
                    sent_ns[tx] = stamp

    reader = threading.Thread(target=receive)
    reader.start()
    try:
        send()
        all_in.wait(1.0)  # the last answers, or a second for those lost
    finally:
        done.set()
        reader.join()
        sock.close()
    latencies = sorted(
        (r - s) / 1000 for s, r in zip(sent_ns, received_ns, strict=True) if s and r >= s
    )
    if len(latencies) < count // 2:
        raise RuntimeError(f"only {len(latencies)} of {count} queries stamped both ways")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))]

    return {
        "p50": pct(0.5),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "answered": len(latencies),
        "sent": count,
    }


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    print(stamped_load(port, read_queries(path), seconds, rate))


if __name__ == "__main__":
    main()
