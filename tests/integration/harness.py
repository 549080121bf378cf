"""Real processes on loopback for the integration tests: ports, agents, waiting, DNS.

Every agent is a real ``meshd run`` child process in its own session, so the harness can
stop it and anything it spawned by process group; ``AgentProcess.stop`` is called from
fixtures' finalisers, so no process outlives a failing test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rdatatype

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
# The installed console script: the tests run the command users run.
MESHD = [str(Path(sys.executable).parent / "meshd")]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS needs both on one port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports free for UDP and TCP (``meshd demo`` takes
    its DNS and admin ports from a base port up)."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65536 and all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def wait_until(what: str, probe: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (urllib.error.URLError, OSError):
        return 0, b""


class AgentProcess:
    """One ``meshd run`` child process with its own ports and manifests directory."""

    def __init__(self, cluster: str, region: str, manifests: Path | None, log_dir: Path) -> None:
        """``manifests`` None: pass the source in ``start``'s extra flags (``--kubeconfig``)."""
        self.cluster = cluster
        self.region = region
        self.manifests = manifests
        self.dns_port = free_port()
        self.grpc_port = free_port()
        self.admin_port = free_port()
        self.log_path = log_dir / f"{cluster}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # What runs: this checkout's meshd; another release's code for upgrade tests.
        self.command, self.code = MESHD, REPO
        self._last_start: tuple[list[str], tuple[str, ...], bool] = ([], (), True)

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, join: list[str], *extra: str, insecure: bool = True) -> None:
        """Start the agent; ``insecure=False`` leaves out ``--insecure`` (pass TLS flags)."""
        self._last_start = (join, extra, insecure)
        args = [
            *self.command,
            "run",
            *(["--insecure"] if insecure else []),
            "--cluster-id",
            self.cluster,
            "--region",
            self.region,
            *(["--manifests", str(self.manifests)] if self.manifests is not None else []),
            "--dns-listen",
            f"127.0.0.1:{self.dns_port}",
            "--grpc-listen",
            self.grpc,
            "--advertise",
            self.grpc,
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--gossip-interval",
            "0.2",
            "--peer-timeout",
            "1.0",
            *extra,
        ]
        if join:
            args += ["--join", ",".join(join)]
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it until it exits)
        env = {**os.environ, "PYTHONPATH": str(self.code)}
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=self.code,
        )
        log.close()

    def admin(self, path: str) -> tuple[int, bytes]:
        return http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def state(self) -> dict[str, Any] | None:
        status, body = self.admin("/debug/state")
        return json.loads(body) if status == 200 else None

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        for _ in range(3):
            wait_until(
                f"{self.cluster} /readyz",
                lambda: self.admin("/readyz")[0] == 200 or self._died(),
                timeout_s,
            )
            assert self.proc is not None
            if self.proc.poll() is None or "Address already in use" not in self.logs():
                break
            # Another program took one of the ports free_port() found: new ports, again.
            self.dns_port, self.grpc_port, self.admin_port = free_port(), free_port(), free_port()
            join, extra, insecure = self._last_start
            self.start(join, *extra, insecure=insecure)
        assert self.proc.poll() is None, self.logs()

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL the group if it does not exit. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode

    def query(self, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.dns_port, timeout=2)
        return dns.query.udp(q, "127.0.0.1", port=self.dns_port, timeout=2)

    def addresses(self, name: str, tcp: bool = False) -> set[str]:
        try:
            reply = self.query(name, "A", tcp)
        except (dns.exception.Timeout, OSError):
            return set()
        return {
            rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset
        }
