"""Network namespace primitives for the ring tests: create, enter, clean up.

- ``run`` runs one iproute2 command and raises with its stderr;
- ``require_netns`` says clearly what this machine lacks (root, iproute2, TUN);
- namespaces of this suite are named ``mdnet-<pid>-<token>-<name>``: ``clean_stale``
  deletes those whose creating process is gone (a crashed or killed run), after killing
  whatever still runs in them; live runs, this one's included, are left alone;
- ``in_netns`` moves the calling thread into a namespace with ``setns(2)`` and back, so
  sockets for DNS and HTTP are opened inside a "cluster" and then used from the test.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator

PREFIX = "mdnet"
CLONE_NEWNET = 0x40000000
OWN_TOKENS: set[str] = set()  # tokens of labs made by this process
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsUnavailableError(RuntimeError):
    """This machine cannot run the namespace tests; the message says what is missing."""


def run(*cmd: str) -> str:
    """Run a command; raise with its stderr when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def require_netns() -> None:
    """Raise ``NetnsUnavailableError`` naming what this machine lacks."""
    if os.geteuid() != 0:
        raise NetnsUnavailableError(
            "tests/netns need root (ip netns, TUN devices); CI runs as root"
        )
    if shutil.which("ip") is None:
        raise NetnsUnavailableError("no `ip` command: install iproute2 (make system-deps does)")
    if not os.path.exists("/dev/net/tun"):
        raise NetnsUnavailableError("no /dev/net/tun: the kernel needs CONFIG_TUN")


def list_netns() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_netns(name: str) -> None:
    """Kill what runs in namespace ``name`` (ours: it has our prefix), then delete it."""
    with contextlib.suppress(RuntimeError):
        for pid in run("ip", "netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(RuntimeError):
        run("ip", "netns", "del", name)


def clean_stale() -> list[str]:
    """Delete namespaces of this prefix left by runs whose process is gone; return them."""
    stale = []
    for name in list_netns():
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        mine_now = pid == os.getpid() and parts[2] in OWN_TOKENS
        if mine_now or (pid != os.getpid() and _pid_alive(pid)):
            continue
        delete_netns(name)
        stale.append(name)
    return stale


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name`` (sockets made there stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def socket_in(ns: str, kind: socket.SocketKind) -> socket.socket:
    with in_netns(ns):
        return socket.socket(socket.AF_INET, kind)


class NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self) -> None:
        sock = socket_in(self.ns, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
