"""A real agent answers the address of its zone's name server (RFC 1912 section 2.3).

``ns.dns.clusterset.local`` is the apex NS target and the SOA MNAME; each agent answers its
A (or AAAA) with the host of ``--dns-advertise``, and the apex NS answer carries it as glue.
Asked with dnspython of real ``meshd run`` processes: one with ``--dns-advertise`` in the
agent's own DNS server, one with the default (the ``--dns-listen`` host) in a DNS worker
process.
"""

from __future__ import annotations

from pathlib import Path

import dns.rdatatype
import pytest

from tests.integration.harness import AgentProcess

pytestmark = pytest.mark.integration

NS = "ns.dns.clusterset.local."


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--dns-advertise", "192.0.2.53:53"), "192.0.2.53"),
        (("--dns-workers", "1"), "127.0.0.1"),
    ],
    ids=["dns-advertise", "default-in-a-worker"],
)
def test_the_name_server_has_the_advertised_address(
    tmp_path: Path, extra: tuple[str, ...], expected: str
) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    agent = AgentProcess("east", "us", manifests, tmp_path)
    agent.start([], *extra)
    try:
        agent.wait_ready()
        target = agent.query(NS, "A")
        answer = [(r.rdtype, r[0].address) for r in target.answer]
        assert answer == [(dns.rdatatype.A, expected)], target
        apex = agent.query("clusterset.local.", "NS")
        assert [r[0].target.to_text() for r in apex.answer] == [NS], apex
        glue = [(r.name.to_text(), r[0].address) for r in apex.additional]
        assert glue == [(NS, expected)], apex
        assert agent.query(NS, "AAAA").answer == [], "no AAAA for an IPv4 name server"
    finally:
        assert agent.stop() == 0, agent.logs()
