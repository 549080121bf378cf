"""A real forwarding resolver (Unbound) in front of meshd, as CoreDNS is in a cluster.

Unbound is started by the test on loopback with a forward-zone for clusterset.local pointing
at a real ``meshd run`` process. Checks: answers through Unbound match meshd's own;
NXDOMAIN passes through; an answer too large for UDP makes Unbound retry meshd over TCP
(TC=1 then TCP) and the client still gets every record.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.harness import REPO, AgentProcess, free_port, wait_until

pytestmark = pytest.mark.integration
ZONE = "svc.clusterset.local"
BIG = 150  # endpoints of the big headless service: ~2.4 KB of A records, too big for UDP


def big_headless(path: Path) -> None:
    eps = "".join(f'  - addresses: ["10.9.{i // 250}.{i % 250 + 1}"]\n' for i in range(BIG))
    meta = "metadata:\n  name: big\n  namespace: shop\n"
    path.write_text(
        f"apiVersion: v1\nkind: Service\n{meta}spec:\n  clusterIP: None\n  ports:\n"
        "  - name: tcp\n    port: 9\n---\n"
        f"apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n{meta}---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n"
        "  namespace: shop\n  labels:\n    kubernetes.io/service-name: big\n"
        f"addressType: IPv4\nendpoints:\n{eps}"
    )


@pytest.fixture
def meshd(tmp_path: Path) -> Iterator[AgentProcess]:
    manifests = tmp_path / "east"
    shutil.copytree(REPO / "examples" / "east", manifests)
    big_headless(manifests / "big.yaml")
    agent = AgentProcess("east", "us", manifests, tmp_path)
    agent.start([])
    try:
        agent.wait_ready()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def unbound(tmp_path: Path, meshd: AgentProcess) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n"
        '  chroot: ""\n  username: ""\n  use-syslog: no\n  logfile: ""\n'
        f'  pidfile: "{tmp_path}/unbound.pid"\n  directory: "{tmp_path}"\n'
        "  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  verbosity: 1\n"
        # Forwarding to 127.0.0.1 must be allowed explicitly; the zone is not signed.
        '  do-not-query-localhost: no\n  domain-insecure: "clusterset.local"\n'
        '  module-config: "iterator"\n'
        "remote-control:\n  control-enable: no\n"
        'forward-zone:\n  name: "clusterset.local"\n'
        f"  forward-addr: 127.0.0.1@{meshd.dns_port}\n"
    )
    log = open(tmp_path / "unbound.log", "wb")  # noqa: SIM115 (closed in the finaliser)
    proc = subprocess.Popen(
        ["unbound", "-d", "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        probe = dns.message.make_query(f"web.shop.{ZONE}", "A")

        def answering() -> bool:
            assert proc.poll() is None, (tmp_path / "unbound.log").read_text()
            with contextlib.suppress(Exception):
                return bool(dns.query.udp(probe, "127.0.0.1", port=port, timeout=1).answer)
            return False

        wait_until("unbound to answer through meshd", answering)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def rrsets(reply: dns.message.Message) -> set[tuple[str, int, frozenset[str]]]:
    return {
        (r.name.to_text().lower(), r.rdtype, frozenset(rd.to_text() for rd in r))
        for r in reply.answer
    }


def test_answers_through_unbound_match_meshd(meshd: AgentProcess, unbound: int) -> None:
    for name, rdtype in [
        (f"db.shop.{ZONE}", "A"),
        (f"_http._tcp.web.shop.{ZONE}", "SRV"),
        (f"checkout.shop.{ZONE}", "A"),  # not exported by east alone: NXDOMAIN both ways
        (f"db-0.east.db.shop.{ZONE}", "A"),
        ("dns-version.clusterset.local", "TXT"),
    ]:
        direct = meshd.query(name, rdtype)
        via = dns.query.udp(
            dns.message.make_query(name, rdtype), "127.0.0.1", port=unbound, timeout=3
        )
        assert via.rcode() == direct.rcode(), name
        assert rrsets(via) == rrsets(direct), name
        for rrset in via.answer:
            assert rrset.ttl <= 5


def test_missing_names_are_nxdomain_through_unbound(unbound: int) -> None:
    q = dns.message.make_query(f"missing.shop.{ZONE}", "A")
    reply = dns.query.udp(q, "127.0.0.1", port=unbound, timeout=3)
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_truncated_answer_falls_back_to_tcp_through_unbound(
    meshd: AgentProcess, unbound: int
) -> None:
    everyone = {f"10.9.{i // 250}.{i % 250 + 1}" for i in range(BIG)}
    # meshd itself truncates this over UDP...
    direct = meshd.query(f"big.shop.{ZONE}", "A")
    assert direct.flags & dns.flags.TC
    # ...so Unbound must have fetched it over TCP to hand the client all of it.
    q = dns.message.make_query(f"big.shop.{ZONE}", "A")
    via, used_tcp = dns.query.udp_with_fallback(q, "127.0.0.1", port=unbound, timeout=5)
    assert used_tcp, "the client should have been told to retry over TCP (TC=1) too"
    got = {rd.address for r in via.answer if r.rdtype == dns.rdatatype.A for rd in r}
    assert got == everyone
    status, metrics = meshd.admin("/metrics")
    assert status == 200
    tcp_lines = [
        line
        for line in metrics.decode().splitlines()
        if line.startswith("meshd_dns_queries_total") and 'transport="tcp"' in line
    ]
    assert tcp_lines, "meshd saw no TCP query from unbound"
