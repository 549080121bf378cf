"""An agent keeps answering DNS while its manifests source reloads a large file: the parse
runs in a worker process, and the agent applies the result in bounded steps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from mesh.daemon.agent import FIRST_VIEW_S, Agent
from mesh.daemon.settings import AgentSettings
from mesh.sources.manifests import ManifestSource
from tests.integration.harness import free_port
from tests.unit.test_manifests_run import big_manifest, replace, until

NAME = "s1017.shop.svc.clusterset.local"


async def addresses(port: int, name: str) -> set[str]:
    query = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    return {r.to_text() for rrset in reply.answer for r in rrset}


async def answers_with(port: int, expected: set[str]) -> None:
    """Poll the agent's DNS (bounded) until ``NAME`` answers ``expected``."""
    deadline = asyncio.get_running_loop().time() + 60
    while (last := await addresses(port, NAME)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{NAME}: {last}, not {expected}"
        await asyncio.sleep(0.05)


def settings_for(manifests: Path, port: int) -> AgentSettings:
    return AgentSettings(
        "east",
        manifests,
        region="us",
        dns_listen=f"127.0.0.1:{port}",
        grpc_listen="127.0.0.1:0",
        admin_listen=None,
    )


@pytest.mark.asyncio
async def test_gossip_starts_with_the_first_local_view(tmp_path: Path) -> None:
    """A first view that lands in the middle of a catch-up slows it down by seconds: the
    agent starts gossip once the source delivered, or after ``FIRST_VIEW_S`` at most."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    replace(manifests / "shop.yaml", big_manifest(3))
    agent = Agent(settings_for(manifests, free_port()))
    loop = asyncio.get_running_loop()
    began = loop.time()
    await agent.start()
    try:
        waited = loop.time() - began
        assert agent.source_synced.is_set() or waited >= FIRST_VIEW_S
        if agent.source_synced.is_set():  # the records the ring offers first hold the view
            assert len(agent.catalog.local.services) == 3
            assert agent.local_records is not None
            assert agent.local_records.pending == 3 or len(agent.records.local.records) == 4
    finally:
        await agent.stop()


@pytest.mark.asyncio
async def test_dns_answers_while_a_large_file_reloads(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    big = manifests / "big.yaml"
    replace(big, big_manifest(3000))
    port = free_port()
    agent = Agent(settings_for(manifests, port))
    source = agent.source
    assert isinstance(source, ManifestSource)
    await agent.start()
    try:
        before = {"10.1.4.17", "10.2.4.17"}
        await answers_with(port, before)
        replace(big, big.read_text().replace('"10.1.4.17"', '"10.9.9.9"'))
        await until("the reload to start", lambda: bool(source.reloading))
        answered = await addresses(port, NAME)
        assert source.reloading, "the reload ended before the answer came: make the file bigger"
        assert answered == before  # answered during the reload, from what the zone holds
        await answers_with(port, {"10.9.9.9", "10.2.4.17"})
        assert agent.failed_tasks() == []
    finally:
        await agent.stop()
