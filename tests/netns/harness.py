"""Three "clusters" in Linux network namespaces, each a real ``meshd run``, for ring tests.

What it builds (``Lab.up``): one namespace per cluster (east and west in region us, south
in eu, each with its own copy of ``examples/<cluster>``), named
``mdnet-<pid>-<token>-<cluster>`` so that runs never collide and a crashed run's leftovers
are recognised (``clean_stale`` deletes namespaces of this prefix whose creator process is
gone, after killing what still runs in them). Each namespace has loopback and one TUN
device with an address in 10.250.0.0/24, a private range that exists only inside these
namespaces; the links between them are the userspace emulator of ``tests.netns.linkemu``
(this kernel has no ``sch_netem``: see there). Each agent listens on its namespace's
address with the production ports (DNS 53, gossip 7946, admin 9090) and joins the other two.

Black box only: the tests see the agents as users do, through DNS answers queried from
inside the namespaces, ``/metrics`` and ``/debug/state`` over HTTP, and signals. Sockets
are opened inside a namespace with ``setns(2)`` on the calling thread, then used from here.

Links: ``cut`` (a silent black hole, optionally one direction only), ``degrade`` (loss and
delay), ``heal``; ``link_down`` takes the TUN device down inside a namespace instead (the
kernel then refuses to send, rather than the wire losing packets).

Cleanup: ``Lab.close`` stops every agent (SIGTERM, then SIGKILL to its process group), kills
anything left in the namespaces, closes the TUN devices and deletes the namespaces; each
step runs even when an earlier one fails. Needs root, iproute2 and /dev/net/tun; without
them ``NetnsUnavailableError`` says which is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.netns.linkemu import PERFECT, LinkEmulator, LinkRule
from tests.netns.nsutil import (
    OWN_TOKENS,
    PREFIX,
    NetnsHTTPConnection,
    clean_stale,
    delete_netns,
    require_netns,
    run,
    socket_in,
)

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
MESHD = str(Path(sys.executable).parent / "meshd")
# cluster -> (region, address inside its namespace)
CLUSTERS = {
    "east": ("us", "10.250.0.1"),
    "west": ("us", "10.250.0.2"),
    "south": ("eu", "10.250.0.3"),
}
DNS_PORT, GRPC_PORT, ADMIN_PORT = 53, 7946, 9090


@dataclass(frozen=True, slots=True)
class RingSettings:
    """The agents' ring flags and the bounds the tests derive from them.

    ``drop_bound_s``: the README's rule is that a cluster that has not answered an agent for
    ``--peer-timeout`` leaves its answers. Its last answer came no later than the failure,
    so the answer changes by ``peer_timeout``, plus one gossip interval for the agent's
    health check and zone rebuild, plus one for the DNS poll, plus ``slack_s`` for two
    cores shared by three agents, the link emulator and other engineers' tests.

    ``return_bound_s``: a cluster "comes back as soon as it answers again" (issue 4), but an
    agent retries a failed peer with a capped backoff (``reconnect_cap_s``, 4 s in the
    first ring; SWIM retries dead members "at a slow pace") and a TCP connection that lived
    through a black hole waits for its own retransmission timer. The bound is the cap plus
    one drop bound.
    """

    gossip_interval_s: float | None = 0.2  # None: not passed, the agent's default
    peer_timeout_s: float | None = 1.5
    slack_s: float = 1.5
    reconnect_cap_s: float = 4.0
    extra_flags: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        flags = list(self.extra_flags)
        if self.gossip_interval_s is not None:
            flags += ["--gossip-interval", str(self.gossip_interval_s)]
        if self.peer_timeout_s is not None:
            flags += ["--peer-timeout", str(self.peer_timeout_s)]
        return flags

    def describe(self) -> str:
        return " ".join(self.flags()) or "(the agent's defaults)"

    @property
    def drop_bound_s(self) -> float:
        if self.gossip_interval_s is None or self.peer_timeout_s is None:
            raise ValueError("bounds need both --gossip-interval and --peer-timeout")
        return self.peer_timeout_s + 2 * self.gossip_interval_s + self.slack_s

    @property
    def return_bound_s(self) -> float:
        return self.reconnect_cap_s + self.drop_bound_s


def wait_until(
    what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 0.05
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.1f}s waiting for {what}; last: {last!r}"
            )
        time.sleep(every_s)


# --- agents --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A DNS answer as the tests compare it: the rcode and the A addresses."""

    rcode: str
    addresses: frozenset[str]

    def __str__(self) -> str:
        return f"{self.rcode} {sorted(self.addresses)}"


class Agent:
    """One cluster: its namespace, address, manifests copy and ``meshd run`` process."""

    def __init__(self, cluster: str, ns: str, workdir: Path, code_root: Path = REPO) -> None:
        self.cluster = cluster
        self.code_root = code_root  # the tree whose mesh/ and dnsserver/ the agent runs
        self.region, self.address = CLUSTERS[cluster]
        self.ns = ns
        self.manifests = workdir / cluster
        self.log_path = workdir / f"{cluster}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc(self) -> str:
        return f"{self.address}:{GRPC_PORT}"

    def start(self, join: list[str], settings: RingSettings) -> None:
        args = [
            *("ip", "netns", "exec", self.ns, MESHD, "run", "--insecure"),
            *("--cluster-id", self.cluster, "--region", self.region),
            *("--manifests", str(self.manifests)),
            *("--dns-listen", f"{self.address}:{DNS_PORT}"),
            *("--grpc-listen", self.grpc, "--advertise", self.grpc),
            *("--admin-listen", f"{self.address}:{ADMIN_PORT}"),
            *settings.flags(),
            *(("--join", ",".join(join)) if join else ()),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            log.flush()
            env = {**os.environ, "PYTHONPATH": str(self.code_root)}
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.manifests.parent,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (``ip netns exec`` execs meshd: the PID is meshd's)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- the lab -------------------------------------------------------------------------------


class Lab:
    """The three clusters, their links and agents; ``close`` undoes everything ``up`` did."""

    def __init__(
        self, workdir: Path, settings: RingSettings, seed: int, code_root: Path = REPO
    ) -> None:
        """``code_root``: the source tree the agents run (PYTHONPATH), the checkout by default."""
        self.workdir = workdir
        self.code_root = code_root
        self.settings = settings
        self.seed = seed
        self.token = secrets.token_hex(3)
        OWN_TOKENS.add(self.token)
        self.emulator = LinkEmulator(seed)
        self.agents: dict[str, Agent] = {}
        self.namespaces: list[str] = []

    def __repr__(self) -> str:
        return f"Lab(token={self.token}, seed={self.seed}, workdir={self.workdir})"

    def up(self) -> None:
        """Namespaces, TUN links and manifests (agents not started); undone by ``close``."""
        require_netns()
        clean_stale()
        self.emulator.start()
        for index, cluster in enumerate(CLUSTERS):
            ns = f"{PREFIX}-{os.getpid()}-{self.token}-{cluster}"
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            agent = Agent(cluster, ns, self.workdir, self.code_root)
            device = f"md{self.token}{index}"
            self.emulator.add_port(cluster, device, agent.address)
            run("ip", "link", "set", device, "netns", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{agent.address}/24", "dev", device)
            run("ip", "-n", ns, "link", "set", device, "up")
            shutil.copytree(REPO / "examples" / cluster, agent.manifests)
            self.agents[cluster] = agent

    def close(self) -> None:
        try:
            for agent in self.agents.values():
                with contextlib.suppress(Exception):
                    agent.stop()
        finally:
            try:
                self.emulator.close()
            finally:
                for ns in self.namespaces:
                    delete_netns(ns)
                self.namespaces.clear()

    # agents

    def start(self, cluster: str) -> None:
        agent = self.agents[cluster]
        agent.start([a.grpc for a in self.agents.values() if a is not agent], self.settings)

    def start_all(self, ready_within_s: float = 30.0) -> None:
        for cluster in self.agents:
            self.start(cluster)
        for cluster in self.agents:
            self.wait_ready(cluster, ready_within_s)

    def wait_ready(self, cluster: str, timeout_s: float = 30.0) -> None:
        agent = self.agents[cluster]
        wait_until(
            f"{cluster} /readyz",
            lambda: not agent.alive() or self.http(cluster, "/readyz")[0] == 200,
            timeout_s,
            every_s=0.1,
        )
        assert agent.alive(), f"{cluster} exited:\n{agent.log_tail()}"

    # what users see

    def query(self, cluster: str, name: str, rdtype: str = "A", timeout_s: float = 1.0) -> Any:
        """The reply of ``cluster``'s DNS, asked from inside its namespace; None on timeout."""
        agent = self.agents[cluster]
        sock = socket_in(agent.ns, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            q = dns.message.make_query(name, rdtype)
            return dns.query.udp(q, agent.address, timeout=timeout_s, port=DNS_PORT, sock=sock)
        except (dns.exception.Timeout, OSError):
            return None
        finally:
            sock.close()

    def answer(self, cluster: str, name: str, timeout_s: float = 1.0) -> Answer | None:
        reply = self.query(cluster, name, "A", timeout_s)
        if reply is None:
            return None
        addresses = frozenset(
            rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset
        )
        return Answer(dns.rcode.to_text(reply.rcode()), addresses)

    def http(self, cluster: str, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        agent = self.agents[cluster]
        conn = NetnsHTTPConnection(agent.ns, agent.address, ADMIN_PORT, timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    def state(self, cluster: str) -> Any:
        status, body = self.http(cluster, "/debug/state")
        return json.loads(body) if status == 200 else None

    def metric(self, cluster: str, name: str) -> float | None:
        """The sum of every series of metric ``name`` (None when the agent does not show it)."""
        status, body = self.http(cluster, "/metrics")
        if status != 200:
            return None
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith((name + " ", name + "{"))
        ]
        return sum(values) if values else None

    # links

    def cut(self, a: str, b: str, both_ways: bool = True) -> None:
        """Drop every packet from ``a`` to ``b`` (and back unless ``both_ways`` is False)."""
        self.emulator.set_rule(a, b, LinkRule(cut=True))
        if both_ways:
            self.emulator.set_rule(b, a, LinkRule(cut=True))

    def isolate(self, cluster: str) -> None:
        for other in self.agents:
            if other != cluster:
                self.cut(cluster, other)

    def degrade(self, loss: float, delay_s: float) -> None:
        """Every directed link loses ``loss`` of its packets and delays the rest."""
        for a in self.agents:
            for b in self.agents:
                if a != b:
                    self.emulator.set_rule(a, b, LinkRule(loss=loss, delay_s=delay_s))

    def heal(self) -> None:
        for a in self.agents:
            for b in self.agents:
                if a != b:
                    self.emulator.set_rule(a, b, PERFECT)
            self.link_up(a)

    def link_down(self, cluster: str) -> None:
        agent = self.agents[cluster]
        run("ip", "-n", agent.ns, "link", "set", f"md{self.token}{self._index(cluster)}", "down")

    def link_up(self, cluster: str) -> None:
        agent = self.agents[cluster]
        run("ip", "-n", agent.ns, "link", "set", f"md{self.token}{self._index(cluster)}", "up")

    def _index(self, cluster: str) -> int:
        return list(self.agents).index(cluster)

    def diagnostics(self) -> str:
        """What a failing assertion should print: seed, link counters, each agent's log."""
        parts = [repr(self), f"link counters: {dict(self.emulator.counts())}"]
        for agent in self.agents.values():
            parts.append(f"--- {agent.cluster} (alive={agent.alive()}):\n{agent.log_tail(15)}")
        return "\n".join(parts)
