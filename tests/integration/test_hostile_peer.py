"""A hostile peer on an ``--insecure`` ring, against real ``meshd run`` processes (issue 13).

Without TLS any peer can say anything; what it must never do is take an agent down or
keep the clusterset from healing:

- one SWIM push-pull and one ring push-pull naming 5,000 made-up agents leave the
  agent's tables at their bounds (``mesh.model``), every agent left out counted, and the
  agent answering DNS and its peers all along;
- a forged chunk of east's records (a newer generation, with a consistent head) is taken
  by west and south; west is then killed with SIGKILL and restarted, and may relearn east
  from south first. East's own word must win every copy back within a few seconds,
  without east restarting or changing anything (before the fix, it never did).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServiceType
from mesh.ring.catalog import Change
from mesh.ring.records import OriginLog, RecordStore
from mesh.wire.record_codec import Publisher, chunk_to_pb
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc
from tests.integration.harness import REPO, AgentProcess, wait_until
from tests.integration.test_tls import metric

pytestmark = pytest.mark.integration
DB = "db.shop.svc.clusterset.local"
EAST, WEST, SOUTH, FORGED = "10.1.1.5", "10.2.1.5", "10.3.1.5", "6.6.6.6"
FLOOD = 5000
FAKE = "127.77.{}.{}:9"  # loopback, nothing listens: a dial fails at once, nothing leaves


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    agents = {}
    for cluster in ("east", "west", "south"):
        shutil.copytree(REPO / "examples" / cluster, tmp_path / cluster)
        agents[cluster] = AgentProcess(cluster, "us", tmp_path / cluster, tmp_path)
    try:
        for agent in agents.values():
            agent.start([a.grpc for a in agents.values() if a is not agent])
        for agent in agents.values():
            agent.wait_ready()
        for agent in agents.values():
            wait_until(
                f"{agent.cluster} answers all three",
                lambda a=agent: a.addresses(DB) == {EAST, WEST, SOUTH},
            )
        yield agents
    finally:
        for agent in agents.values():
            agent.stop()


def rejected(agent: AgentProcess, kind: str) -> float:
    return metric(agent, "meshd_gossip_rejected_total", f'kind="{kind}"')


def fake(i: int) -> str:
    return FAKE.format(i // 250, i % 250 + 1)


def test_a_push_pull_of_5000_made_up_agents_leaves_every_table_bounded(
    ring: dict[str, AgentProcess],
) -> None:
    east, west = ring["east"], ring["west"]
    swim = pb.SwimDatagram(
        push_pull=pb.SwimPushPull(
            source_id="fake-0/a0",
            source_address=fake(0),
            members=[
                pb.SwimMember(
                    id=f"fake-{i // 4}/a{i}",
                    cluster_id=f"fake-{i // 4}",
                    address=fake(i),
                    incarnation=1,
                    state=pb.SWIM_ALIVE,
                )
                for i in range(FLOOD)
            ],
            reply=True,
        )
    )
    members = [pb.Member(cluster_id=f"fake-{i // 4}", address=fake(i)) for i in range(FLOOD)]
    push = pb.PushPullRequest(sender=pb.Member(cluster_id="fake-0", address=fake(0)))
    push.members.extend(members)
    with grpc.insecure_channel(east.grpc) as channel:
        stub = pb_grpc.GossipStub(channel)
        stub.Swim(swim, timeout=10)
        stub.PushPull(push, timeout=10)
    wait_until(
        "east counts what it left out",
        lambda: (
            rejected(east, "swim:too_many_members") == FLOOD - 2048
            and rejected(east, "swim:table_full") >= 1
            and rejected(east, "member:too_many") == FLOOD - 2048
            and rejected(east, "member:table_full") >= 1
        ),
    )
    deadline = time.monotonic() + 3.0  # east keeps answering, and west keeps east
    while time.monotonic() < deadline:
        state = east.state()
        assert state is not None
        assert len(state["swim"]) <= 2048
        assert len({m["cluster"] for m in state["swim"]}) <= 512
        assert len(state["members"]) <= 2048
        assert east.addresses(DB) == {EAST, WEST, SOUTH}
        assert EAST in west.addresses(DB)
        time.sleep(0.1)
    for agent in ring.values():  # a second table's worth spread by SWIM is bounded too
        state = agent.state()
        assert state is not None
        assert len(state["swim"]) <= 2048, agent.cluster
        assert agent.proc is not None
        assert agent.proc.poll() is None, agent.logs()


def forged_east(replica: str, generation: int) -> list[pb.OriginChunk]:
    """East's records as a forger makes them: a newer generation, db at 6.6.6.6, and a
    head that matches them (without TLS nothing else is checked)."""
    db = ServiceKey("shop", "db")
    service = ExportedService(db, ServiceType.HEADLESS, endpoints=(Endpoint((FORGED,)),))
    state = ClusterState(
        "east", generation, 0, "us", "", frozenset({"shop"}), {db: service}, replica
    )
    log = OriginLog("east", replica, generation)
    Publisher(log, None).publish(state, Change("east", frozenset({db}), cluster=True), 0.0)
    chunks, _ = RecordStore(log).select(None, 1 << 20)
    return [chunk_to_pb(c, "") for c in chunks]


def test_the_origins_own_word_wins_back_a_forged_copy_after_a_kill_and_restart(
    ring: dict[str, AgentProcess],
) -> None:
    east, west, south = ring["east"], ring["west"], ring["south"]
    state = west.state()
    assert state is not None
    (held,) = [c for c in state["clusters"] if c["cluster"] == "east"]
    forgery = pb.PushPullRequest(sender=pb.Member(cluster_id="forger", address=fake(0)))
    forgery.chunks.extend(forged_east(held["replica"], held["generation"] + 1))
    swapped = {a.cluster: gauge(a, "meshd_gossip_copies_swapped_total") for a in (west, south)}
    for agent in (west, south):  # each takes it whole before it answers the call
        with grpc.insecure_channel(agent.grpc) as channel:
            pb_grpc.GossipStub(channel).PushPull(forgery, timeout=5)
        assert gauge(agent, "meshd_gossip_copies_swapped_total") > swapped[agent.cluster]
    # Either may answer with it for a moment, until east's next exchange with it (a round
    # is 0.2 s here) wins its copy back. West restarts meanwhile and may hear south first.
    west.kill()
    west.start([east.grpc, south.grpc])
    west.wait_ready()
    started = time.monotonic()
    for agent in (west, south):
        wait_until(
            f"{agent.cluster} answers east's own db again",
            lambda a=agent: a.addresses(DB) == {EAST, WEST, SOUTH},
            timeout_s=10.0,
        )
    assert time.monotonic() - started < 10.0
    deadline = time.monotonic() + 2.0  # and it stays east's
    while time.monotonic() < deadline:
        for agent in (west, south):
            assert FORGED not in agent.addresses(DB), agent.cluster
        time.sleep(0.1)
    for agent in (west, south):
        assert gauge(agent, "meshd_gossip_copies_building") == 0.0, agent.cluster


def gauge(agent: AgentProcess, name: str) -> float:
    status, body = agent.admin("/metrics")
    assert status == 200
    found = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))
