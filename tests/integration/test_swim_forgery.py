"""An insider cannot forge SWIM news about another cluster: real ``meshd run`` processes.

east, west and south form a ring over mutual TLS (certificates from ``meshd certs``). The
test then speaks to east as west would, over a channel with west's own valid TLS
certificate, and signs with west's own valid signing key: it says that south left, died,
moved to another address, came back at a huge incarnation, and that east itself accused
south. Every such claim must be dropped and counted (``meshd_gossip_rejected_total{kind=
"swim:..."}``), south must stay alive at its own address in east's view and in east's DNS
answers, and an accusation that west may really make (under its own name) at incarnation
2**64 - 1 must neither push south's incarnation out of range nor stop east's SWIM loop.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh.security import pki
from mesh.security.signing import SWIM_DOMAIN, Signer
from mesh.security.swim_claims import claim_of
from mesh.swim.messages import Alive, Dead, Gossip, Left, Suspect, Update
from mesh.wire.swim_codec import to_pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc
from tests.integration.harness import MESHD, REPO, AgentProcess, wait_until
from tests.integration.test_tls import metric, tls_flags

pytestmark = pytest.mark.integration
DB = "db.shop.svc.clusterset.local"
EAST, WEST, SOUTH = "10.1.1.5", "10.2.1.5", "10.3.1.5"


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[tuple[dict[str, AgentProcess], Path]]:
    subprocess.run([*MESHD, "certs", "init", "--clusterset", "prod", "--out", tmp_path / "ca"],
                   check=True, capture_output=True)  # fmt: skip
    agents = {}
    for cluster in ("east", "west", "south"):
        out = tmp_path / cluster
        issue = ["certs", "issue", "--cluster-id", cluster, "--ca", tmp_path / "ca", "--out", out]
        subprocess.run([*MESHD, *issue], check=True, capture_output=True)
        shutil.copytree(REPO / "examples" / cluster, out / "manifests")
        agents[cluster] = AgentProcess(cluster, "us", out / "manifests", tmp_path)
    try:
        for agent in agents.values():
            others = [a.grpc for a in agents.values() if a is not agent]
            agent.start(others, *tls_flags(tmp_path / agent.cluster), insecure=False)
        for agent in agents.values():
            agent.wait_ready()
        yield agents, tmp_path
    finally:
        for agent in agents.values():
            agent.stop()


def swim_member(agent: AgentProcess, cluster: str) -> dict[str, Any] | None:
    state = agent.state() or {}
    found = [m for m in state.get("swim", []) if m["cluster"] == cluster]
    return found[0] if len(found) == 1 else None


def rejected(agent: AgentProcess, reason: str) -> float:
    return max(0.0, metric(agent, "meshd_gossip_rejected_total", f'kind="swim:{reason}"'))


def signed(signer: Signer, update: Update) -> Update:
    _cluster, body = claim_of(update)
    sealed = signer.seal(SWIM_DOMAIN, body)
    return dataclasses.replace(update, proof=bytes.fromhex(sealed.key_id) + sealed.signature)


def send_as_west(tmp: Path, east: AgentProcess, updates: tuple[Update, ...]) -> None:
    west = tmp / "west"
    creds = grpc.ssl_channel_credentials(
        (west / "ca.crt").read_bytes(),
        (west / "tls.key").read_bytes(),
        (west / "tls.crt").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "prod.meshd.internal")]
    with grpc.secure_channel(east.grpc, creds, options=options) as channel:
        pb_grpc.GossipStub(channel).Swim(to_pb(Gossip("west/insider", updates)), timeout=5)


def test_an_insider_cannot_forge_swim_news_about_another_cluster(
    ring: tuple[dict[str, AgentProcess], Path],
) -> None:
    agents, tmp = ring
    east = agents["east"]
    wait_until("east answers all three", lambda: east.addresses(DB) == {EAST, WEST, SOUTH})
    south = wait_until(
        "east knows south alive",
        lambda: (m := swim_member(east, "south")) and m["state"] == "alive" and m,
    )
    sid, address, incarnation = south["id"], south["address"], south["incarnation"]
    west_key = pki.load_signer(tmp / "west/signing.crt", tmp / "west/signing.key", "west")
    east_id = swim_member(east, "east")["id"]  # type: ignore[index]
    forgeries: tuple[Update, ...] = (
        Dead(sid, incarnation, "west/insider"),  # unsigned
        signed(west_key, Left(sid, incarnation + 1)),  # south's word, west's key
        signed(west_key, Alive(sid, "south", "127.0.0.1:9", incarnation + 1)),
        signed(west_key, Suspect(sid, incarnation, east_id)),  # in east's name
        signed(west_key, Dead(sid, incarnation, east_id)),
    )
    before = {reason: rejected(east, reason) for reason in ("unsigned", "unknown_key")}
    sent_at = time.monotonic()
    for forgery in forgeries:  # one a datagram: an unsigned claim ends the one it is in
        send_as_west(tmp, east, (forgery,))
    wait_until(
        "east counts every forgery",
        lambda: (
            rejected(east, "unsigned") - before["unsigned"] == 1
            and rejected(east, "unknown_key") - before["unknown_key"] == 4
        ),
    )
    # west may accuse under its own name; a number this high must not travel any further.
    send_as_west(tmp, east, (signed(west_key, Suspect(sid, 2**64 - 1, "west/insider")),))
    while time.monotonic() < sent_at + 3.0:  # several probe rounds (0.5 s each)
        member = swim_member(east, "south")
        assert member is not None
        assert member["address"] == address, member
        assert member["state"] in ("alive", "suspect"), member
        assert member["incarnation"] < 2**32, member
        assert SOUTH in east.addresses(DB)
        time.sleep(0.1)
    wait_until(
        "south refutes and is alive in east's view",
        lambda: (m := swim_member(east, "south")) and m["state"] == "alive" and m,
    )
    assert east.admin("/healthz")[0] == 200, east.logs()  # every task, SWIM's included, runs
    assert east.proc is not None
    assert east.proc.poll() is None, east.logs()
