"""Three real ``meshd run`` processes on loopback, queried by dnspython, dig and kdig.

Each agent reads its own copy of the demo manifests (east and west in region us, south in
eu). The tests check what a user of the foundation relies on: every agent answers with
every cluster's exports over UDP and TCP, an edit to one cluster's manifests reaches every
agent, an agent killed with SIGKILL leaves the others' answers and is picked up again when
it restarts, an agent that starts before its peers finds them, and SIGTERM exits cleanly.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.integration.harness import REPO, AgentProcess, wait_until

pytestmark = pytest.mark.integration
ZONE = "svc.clusterset.local"
DB = f"db.shop.{ZONE}"
DB_ADDRESSES = {"east": "10.1.1.5", "west": "10.2.1.5", "south": "10.3.1.5"}
REGIONS = {"east": "us", "west": "us", "south": "eu"}


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    procs = {}
    for cluster, region in REGIONS.items():
        manifests = tmp_path / cluster
        shutil.copytree(REPO / "examples" / cluster, manifests)
        procs[cluster] = AgentProcess(cluster, region, manifests, tmp_path)
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def start_all(agents: dict[str, AgentProcess]) -> None:
    for agent in agents.values():
        agent.start([a.grpc for a in agents.values() if a is not agent])
    for agent in agents.values():
        agent.wait_ready()


def converged(agents: dict[str, AgentProcess], expected: set[str]) -> None:
    for agent in agents.values():
        wait_until(
            f"{agent.cluster} to answer {DB} with {sorted(expected)}",
            lambda agent=agent: agent.addresses(DB) == expected,  # type: ignore[misc]
        )


def test_every_agent_answers_every_cluster_over_udp_tcp_dig_and_kdig(
    agents: dict[str, AgentProcess],
) -> None:
    start_all(agents)
    everyone = set(DB_ADDRESSES.values())
    converged(agents, everyone)
    for agent in agents.values():
        assert agent.addresses(DB, tcp=True) == everyone
        # checkout is exported by south only: every agent answers it.
        assert agent.addresses(f"checkout.shop.{ZONE}") == {"10.3.4.10"}
        nx = agent.query(f"missing.shop.{ZONE}")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nx.authority
        assert nx.authority[0].name.to_text() == "clusterset.local."
        assert agent.query("example.com.").rcode() == dns.rcode.REFUSED
    east = agents["east"]
    # Locality: east answers web with its own endpoints, south with its own.
    assert east.addresses(f"web.shop.{ZONE}") == {"10.1.0.10", "10.1.0.11"}
    assert agents["south"].addresses(f"web.shop.{ZONE}") == {"10.3.0.10"}
    # Failover inside the region: east's cart endpoint is not ready, west's is.
    assert east.addresses(f"cart.shop.{ZONE}") == {"10.2.2.10"}
    port = str(east.dns_port)
    for tool, extra in (("dig", []), ("dig", ["+tcp"]), ("kdig", []), ("kdig", ["+tcp"])):
        out = subprocess.run(
            [tool, "@127.0.0.1", "-p", port, DB, "A", "+short", *extra],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        assert set(out.split()) == everyone, (tool, extra, out)
    srv = subprocess.run(
        ["dig", "@127.0.0.1", "-p", port, f"_http._tcp.web.shop.{ZONE}", "SRV", "+short"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert srv.split() == ["0", "100", "80", f"web.shop.{ZONE}."]


def test_a_manifest_edit_reaches_every_agent(agents: dict[str, AgentProcess]) -> None:
    start_all(agents)
    converged(agents, set(DB_ADDRESSES.values()))
    west_file = agents["west"].manifests / "shop.yaml"
    west_file.write_text(west_file.read_text().replace('"10.2.1.5"', '"10.2.1.99"'))
    converged(agents, {"10.1.1.5", "10.2.1.99", "10.3.1.5"})
    # Un-exporting: delete west's ServiceExport of db; its endpoints leave every answer.
    text = west_file.read_text()
    export = "kind: ServiceExport\nmetadata:\n  name: db\n"
    assert export in text
    west_file.write_text(text.replace(export, "kind: ConfigMap\nmetadata:\n  name: db\n"))
    converged(agents, {"10.1.1.5", "10.3.1.5"})


def test_killed_agent_leaves_answers_and_returns(agents: dict[str, AgentProcess]) -> None:
    start_all(agents)
    everyone = set(DB_ADDRESSES.values())
    converged(agents, everyone)
    agents["south"].kill()
    survivors = {c: a for c, a in agents.items() if c != "south"}
    converged(survivors, {"10.1.1.5", "10.2.1.5"})
    # checkout is exported by south alone: with south unreachable, answer fails open.
    assert agents["east"].addresses(f"checkout.shop.{ZONE}") == {"10.3.4.10"}
    south = agents["south"]
    south.start([a.grpc for a in survivors.values()])
    south.wait_ready()
    converged(agents, everyone)


def test_agent_started_before_its_peers_finds_them(agents: dict[str, AgentProcess]) -> None:
    east = agents["east"]
    others = [a for a in agents.values() if a is not east]
    east.start([a.grpc for a in others], "--sync-timeout", "0.5")
    east.wait_ready()
    assert east.addresses(DB) == {"10.1.1.5"}
    for agent in others:
        agent.start([east.grpc])  # they know only east; the rest is learned from the ring
    for agent in others:
        agent.wait_ready()
    converged(agents, set(DB_ADDRESSES.values()))


def test_sigterm_exits_cleanly(agents: dict[str, AgentProcess]) -> None:
    start_all(agents)
    for agent in agents.values():
        assert agent.stop() == 0, agent.logs()
        assert "Traceback" not in agent.logs(), agent.logs()


def test_replicas_of_one_cluster_stand_in_for_each_other(tmp_path: Path) -> None:
    """Two replicas of west read one source. When the replica whose state east answers from
    dies, east moves to the other's state at once and keeps following west's edits."""
    east_dir, west_dir = tmp_path / "east", tmp_path / "west"
    shutil.copytree(REPO / "examples" / "east", east_dir)
    shutil.copytree(REPO / "examples" / "west", west_dir)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    east = AgentProcess("east", "us", east_dir, tmp_path)
    west_a = AgentProcess("west", "us", west_dir, tmp_path / "a")
    west_b = AgentProcess("west", "us", west_dir, tmp_path / "b")
    everyone = [east, west_a, west_b]
    try:
        west_a.start([east.grpc], "--replica-id", "west-a")
        west_b.start([east.grpc], "--replica-id", "west-b")
        east.start([west_a.grpc, west_b.grpc])
        for agent in everyone:
            agent.wait_ready()
        converged({"east": east}, {"10.1.1.5", "10.2.1.5"})
        state = wait_until(
            "east to hold both west replicas",
            lambda: (
                (s := east.state()) is not None
                and any(c["cluster"] == "west" and len(c["replicas"]) == 2 for c in s["clusters"])
                and s
            ),
        )
        chosen = next(c["replica"] for c in state["clusters"] if c["cluster"] == "west")
        victim, survivor = (west_b, west_a) if chosen == "west-b" else (west_a, west_b)
        victim.kill()
        shop = west_dir / "shop.yaml"
        shop.write_text(shop.read_text().replace('"10.2.1.5"', '"10.2.1.77"'))
        converged({"east": east}, {"10.1.1.5", "10.2.1.77"})
        assert survivor.proc is not None
        assert survivor.proc.poll() is None
    finally:
        for agent in everyone:
            agent.stop()


def test_swim_drops_left_and_killed_clusters_without_waiting_for_peer_timeout(
    agents: dict[str, AgentProcess],
) -> None:
    """With --peer-timeout 60, only the SWIM membership can take a cluster out of answers
    quickly: a graceful stop says Left at once, a killed agent is suspected within seconds."""
    for agent in agents.values():
        agent.start([a.grpc for a in agents.values() if a is not agent], "--peer-timeout", "60")
    for agent in agents.values():
        agent.wait_ready()
    converged(agents, set(DB_ADDRESSES.values()))
    east = agents["east"]
    for agent in agents.values():
        wait_until(
            f"{agent.cluster}'s SWIM view to hold all three",
            lambda a=agent: (
                (s := a.state()) is not None
                and {m["cluster"] for m in s["swim"] if m["state"] == "alive"} == set(REGIONS)
            ),
        )
    assert agents["south"].stop() == 0
    wait_until(
        "east to drop south after its Left",
        lambda: east.addresses(DB) == {DB_ADDRESSES["east"], DB_ADDRESSES["west"]},
        timeout_s=5,
    )
    agents["west"].kill()
    wait_until(
        "east to drop killed west",
        lambda: east.addresses(DB) == {DB_ADDRESSES["east"]},
        timeout_s=20,
    )
    state = east.state()
    assert state is not None
    assert {c["cluster"]: c["healthy"] for c in state["clusters"]} == {
        "east": True,
        "west": False,
        "south": False,
    }
