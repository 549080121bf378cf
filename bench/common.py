"""What the benchmarks share: the machine line of a report, and free loopback ports."""

from __future__ import annotations

import contextlib
import os
import platform
import socket


def cpu_model() -> str:
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh,
    ):
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine a figure was measured on."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (a DNS server needs both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
