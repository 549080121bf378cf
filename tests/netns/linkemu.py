"""A userspace link emulator between network namespaces: what ``tc netem`` would do.

Why userspace: the kernel of these machines (and of CI, the same kind) is built without
``sch_netem`` and ``act_gact`` (``zcat /proc/config.gz | grep NETEM``), so ``tc qdisc ...
netem`` answers "Specified qdisc kind is unknown" and no in-kernel qdisc can delay packets.
TUN devices are there, so the links between "clusters" go through this process instead.

Topology: every namespace holds one TUN device (L3, no ARP) with its address in one /24.
The emulator keeps the TUN file descriptors; a packet one namespace sends to another
address of the /24 is read here, judged by the rule of its directed link (source namespace
-> destination namespace), and written into the destination's TUN after the link's delay,
unless it is dropped. The kernels on both ends are real: TCP, gRPC and their retransmits
run as they would across a real network; only the wire is emulated.

Rules per directed link (``LinkRule``): ``cut`` drops everything (a silent black hole, as a
firewall or a dead router would, not a reset); ``loss`` drops each packet with that
probability (seeded, so a run can be replayed); ``delay_s`` holds every packet that long.
Delay is fixed, so a link never reorders. A one-way rule makes an asymmetric link.

The decision (``Switch.route``) is pure: packet, source, ``now`` and a random draw in, a
destination and a delivery time out. The thread (``LinkEmulator``) only moves bytes. A
TUN device that is not persistent disappears when its descriptor closes, so a test process
that dies leaves no device behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import ipaddress
import os
import random
import select
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


@dataclass(frozen=True, slots=True)
class LinkRule:
    """What one directed link does to packets (defaults: a perfect wire)."""

    cut: bool = False
    loss: float = 0.0
    delay_s: float = 0.0


PERFECT = LinkRule()


class Switch:
    """Pure forwarding decision between ports (namespaces), by IPv4 destination address."""

    def __init__(self) -> None:
        self.ports_by_address: dict[bytes, str] = {}
        self.rules: dict[tuple[str, str], LinkRule] = {}
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (src, dst, outcome)

    def attach(self, port: str, address: str) -> None:
        self.ports_by_address[ipaddress.IPv4Address(address).packed] = port

    def set_rule(self, src: str, dst: str, rule: LinkRule) -> None:
        self.rules[(src, dst)] = rule

    def route(self, src: str, packet: bytes, now: float, draw: float) -> tuple[str, float] | None:
        """(destination port, delivery time) or None to drop; ``draw`` uniform in [0, 1)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None  # IPv6 router solicitations and the like: this network is IPv4
        dst = self.ports_by_address.get(packet[16:20])
        if dst is None or dst == src:
            return None
        rule = self.rules.get((src, dst), PERFECT)
        if rule.cut:
            self.counts[(src, dst, "cut")] += 1
            return None
        if draw < rule.loss:
            self.counts[(src, dst, "lost")] += 1
            return None
        self.counts[(src, dst, "sent")] += 1
        return dst, now + rule.delay_s


def open_tun(name: str) -> int:
    """A non-persistent TUN device (IPv4 packets without a header) in this namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class LinkEmulator:
    """The thread that moves packets between the TUN devices of a ``Switch``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.switch = Switch()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._ports_by_fd: dict[int, str] = {}
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._sequence = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="linkemu", daemon=True)
        self.write_errors = 0

    def add_port(self, port: str, device: str, address: str) -> None:
        """Create ``device`` (in this process's namespace; move it with ``ip link set``)."""
        fd = open_tun(device)
        with self._lock:
            self._fds[port] = fd
            self._ports_by_fd[fd] = port
            self.switch.attach(port, address)
        self._wake()

    def set_rule(self, src: str, dst: str, rule: LinkRule) -> None:
        with self._lock:
            self.switch.set_rule(src, dst, rule)

    def rule(self, src: str, dst: str) -> LinkRule:
        with self._lock:
            return self.switch.rules.get((src, dst), PERFECT)

    def counts(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            return Counter(self.switch.counts)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close every TUN descriptor (the devices go with them)."""
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for fd in [*self._fds.values(), self._wake_r, self._wake_w]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        poller = select.poll()
        registered: set[int] = set()
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping:
            with self._lock:
                for fd in self._ports_by_fd.keys() - registered:
                    poller.register(fd, select.POLLIN)
                    registered.add(fd)
                timeout_ms = self._deliver_due(time.monotonic())
            for fd, _events in poller.poll(timeout_ms):
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                else:
                    self._read_all(fd)

    def _read_all(self, fd: int) -> None:
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except (BlockingIOError, OSError):
                return
            with self._lock:
                src = self._ports_by_fd.get(fd)
                if src is None:
                    return
                verdict = self.switch.route(src, packet, time.monotonic(), self._random.random())
                if verdict is not None:
                    dst, at = verdict
                    self._sequence += 1
                    heapq.heappush(self._queue, (at, self._sequence, dst, packet))

    def _deliver_due(self, now: float) -> int | None:
        """Write every packet whose time has come; the poll timeout (ms) until the next."""
        while self._queue and self._queue[0][0] <= now:
            _at, _seq, dst, packet = heapq.heappop(self._queue)
            try:
                os.write(self._fds[dst], packet)
            except OSError:  # device down (a cut with ``ip link``), queue full: a lost packet
                self.write_errors += 1
        if not self._queue:
            return None
        return max(0, int((self._queue[0][0] - now) * 1000) + 1)
