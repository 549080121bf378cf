"""A ring in the middle of a rolling upgrade: agents of the release before drains (commit
``OLDER_RELEASE``, run from its own source tree) next to agents that drain.

The older agent takes the newer agents' cluster records with their new fields (it ignores
them: nothing is rejected) and keeps answering, drained clusters included; the newer agents
read its records as "not drained, addresses unknown", and a drill leaves it out with a
warning instead of failing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, AgentProcess, wait_until
from tests.integration.test_drain import (
    EAST_API,
    REGIONS,
    WEST_API,
    answers,
    drained_in_view,
    meshd,
    post,
)

pytestmark = pytest.mark.integration
# The last commit of main before drains (the routing policy's merge): the "older release".
OLDER_RELEASE = "234ea1fcb3c36635bac6e48abfe21ba4edca63f6"


@pytest.fixture(scope="module")
def older_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source tree of the release before drains, as ``git archive`` gives it."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history of this checkout")
    base = OLDER_RELEASE
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{base}^{{commit}}"])
    if known.returncode != 0:
        pytest.skip(f"this checkout's history lacks {base}, the release before drains")
    tree = tmp_path_factory.mktemp("older")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", base, "mesh", "dnsserver"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    assert "drained" not in (tree / "mesh" / "model.py").read_text()
    return tree


@pytest.fixture
def mixed_ring(tmp_path: Path, older_release: Path) -> Iterator[dict[str, AgentProcess]]:
    procs = {}
    for cluster, region in REGIONS.items():
        shutil.copytree(REPO / "examples" / cluster, tmp_path / cluster)
        procs[cluster] = AgentProcess(cluster, region, tmp_path / cluster, tmp_path)
    south = procs["south"]
    south.command, south.code = [sys.executable, "-m", "mesh.daemon.cli"], older_release
    try:
        for agent in procs.values():
            agent.start([a.grpc for a in procs.values() if a is not agent])
        for agent in procs.values():
            agent.wait_ready()
        for agent in procs.values():
            wait_until(
                f"{agent.cluster} answers api from east and west",
                lambda a=agent: answers(a) == {EAST_API, WEST_API},  # type: ignore[misc]
            )
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def test_an_older_agent_ignores_drains_and_keeps_answering(
    mixed_ring: dict[str, AgentProcess],
) -> None:
    east, west, south = mixed_ring["east"], mixed_ring["west"], mixed_ring["south"]
    assert post(east, "/drain", {"reason": "upgrade"})[0] == 200
    for agent in (east, west):
        wait_until(f"{agent.cluster} leaves east out", lambda a=agent: answers(a) == {WEST_API})  # type: ignore[misc]
    assert answers(south) == {EAST_API, WEST_API}  # it does not know drains
    _, metrics = south.admin("/metrics")
    rejected = {
        line.split('"')[1]
        for line in metrics.decode().splitlines()
        if line.startswith("meshd_gossip_rejected_total{") and not line.endswith(" 0.0")
    }
    # Races between relays (stale, gap) happen in any ring; a record it could not read
    # (invalid_record, malformed) would be the new fields' fault.
    assert rejected <= {"chunk:stale", "chunk:gap"}, rejected
    state = west.state()
    assert state is not None
    (old,) = [a for a in state["agents"] if a["cluster"] == "south"]
    assert (old["dns"], old["admin"], old["drained"]) == (None, None, False)
    assert post(east, "/undrain")[0] == 200
    wait_until("west sees nothing drained", lambda: drained_in_view(west) == [])
    done = meshd(
        "drill", "--admin", f"127.0.0.1:{west.admin_port}", "--cluster", "east",
        "--service", "shop/api", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "south/" in done.stderr
    assert "not measured" in done.stderr
    assert '"cluster": "south"' not in done.stdout
