"""Drains and drills on real ``meshd run`` processes, queried with dnspython.

Three agents read the demo manifests: ``api`` is exported by east and west in one tier
(weights east=70,west=30, one address per answer), so every agent's answers include east.
The tests drain and undrain through the admin port as ``meshd drain`` does, restart a
drained agent, run two replicas of one cluster, refuse writes from the network, and run
``meshd drill`` the way scripts do (``--json`` and exit status), also interrupted.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import MESHD, REPO, AgentProcess, http_get, wait_until

pytestmark = pytest.mark.integration
API = "api.shop.svc.clusterset.local"
EAST_API, WEST_API = "10.1.3.10", "10.2.3.10"
REGIONS = {"east": "us", "west": "us", "south": "eu"}


def answers(agent: AgentProcess, name: str = API, queries: int = 10) -> set[str]:
    """Every address in ``queries`` answers in a row (a weighted answer rotates)."""
    found: set[str] = set()
    for _ in range(queries):
        found |= agent.addresses(name)
    return found


def post(agent: AgentProcess, path: str, body: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    return post_to(f"127.0.0.1:{agent.admin_port}", path, body)


def post_to(address: str, path: str, body: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{address}{path}", data=json.dumps(body or {}).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), json.load(response)
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.load(exc)


def meshd(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MESHD, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def start(procs: dict[str, AgentProcess], extra: dict[str, list[str]] | None = None) -> None:
    for name, agent in procs.items():
        others = [a.grpc for a in procs.values() if a is not agent]
        agent.start(others, *(extra or {}).get(name, []))
    for agent in procs.values():
        agent.wait_ready()


def drained_in_view(agent: AgentProcess) -> list[str]:
    state = agent.state()
    return [] if state is None else list(state["drained"])


def wait_answers(procs: dict[str, AgentProcess], expected: set[str], what: str) -> None:
    for agent in procs.values():
        wait_until(f"{agent.cluster}: {what}", lambda a=agent: answers(a) == expected)  # type: ignore[misc]


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AgentProcess]]:
    """east, west and south; east's admin listens on every address (for the 403 test)."""
    tmp = tmp_path_factory.mktemp("ring")
    procs = {}
    for cluster, region in REGIONS.items():
        shutil.copytree(REPO / "examples" / cluster, tmp / cluster)
        procs[cluster] = AgentProcess(cluster, region, tmp / cluster, tmp)
    try:
        east = procs["east"]
        start(procs, {"east": ["--admin-listen", f"0.0.0.0:{east.admin_port}"]})
        wait_answers(procs, {EAST_API, WEST_API}, "api from east and west")
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture
def undrained(ring: dict[str, AgentProcess]) -> Iterator[dict[str, AgentProcess]]:
    """The ring, with every cluster undrained after the test, whatever happened."""
    yield ring
    for agent in ring.values():
        post(agent, "/undrain")
    for agent in ring.values():
        wait_until(f"{agent.cluster}: nothing drained", lambda a=agent: drained_in_view(a) == [])  # type: ignore[misc]


def test_a_drain_leaves_every_answer_and_an_undrain_brings_it_back(
    undrained: dict[str, AgentProcess],
) -> None:
    east = undrained["east"]
    status, body = post(east, "/drain", {"reason": "maintenance"})
    assert status == 200, body
    assert body["cluster"] == "east"
    assert body["drained"] is True
    assert body["reason"] == "maintenance"
    assert body["kept_in"] == []
    wait_answers(undrained, {WEST_API}, "api without east")
    for agent in undrained.values():
        state = agent.state()
        assert state is not None
        assert state["drained"] == ["east"]
        (info,) = [c for c in state["clusters"] if c["cluster"] == "east"]
        assert info["drain"]["drained"]
        assert info["drain"]["reason"] == "maintenance"
        assert info["healthy"]  # drained is not unhealthy: it still answers gossip
        _, metrics = agent.admin("/metrics")
        assert b"\nmeshd_drained_clusters 1.0" in metrics
    explained = meshd(
        "status", "--admin", f"127.0.0.1:{undrained['south'].admin_port}", "--service", "shop/api"
    )
    assert explained.returncode == 0, explained.stderr
    assert "no: drained" in explained.stdout
    assert "left out: east (drained)" in explained.stdout
    as_json = json.loads(
        meshd(
            "status", "--admin", f"127.0.0.1:{east.admin_port}", "--service", "shop/api", "--json"
        ).stdout
    )
    assert as_json["left_out"] == [{"cluster": "east", "why": "drained"}]
    undone = meshd("undrain", "--admin", f"127.0.0.1:{east.admin_port}")
    assert undone.returncode == 0, undone
    assert "undrained" in undone.stdout
    wait_answers(undrained, {EAST_API, WEST_API}, "api from east again")


def test_a_drain_that_leaves_nothing_fails_open_and_is_counted(
    undrained: dict[str, AgentProcess],
) -> None:
    """checkout is exported by south alone: drained, it still answers (fail open)."""
    checkout = "checkout.shop.svc.clusterset.local"
    assert post(undrained["south"], "/drain")[0] == 200
    east = undrained["east"]
    wait_until("south drained in east's view", lambda: drained_in_view(east) == ["south"])
    assert answers(east, checkout, 1) == {"10.3.4.10"}
    _, metrics = east.admin("/metrics")
    assert b"\nmeshd_drained_failed_open_services 1.0" in metrics
    assert b'meshd_routing_services{state="failed_open"} 1.0' in metrics


def _network_address() -> str | None:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    return None


def test_drains_from_the_network_are_refused(undrained: dict[str, AgentProcess]) -> None:
    address = _network_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to come from")
    east = undrained["east"]
    status, body = post_to(f"{address}:{east.admin_port}", "/drain")
    assert status == 403, body
    assert "loopback only" in body["error"]
    assert post_to(f"{address}:{east.admin_port}", "/undrain")[0] == 403
    assert http_get(f"http://{address}:{east.admin_port}/debug/state")[0] == 200  # reads are open
    assert drained_in_view(east) == []
    assert post(east, "/drain", {"reason": "x" * 257})[0] == 400  # a bad reason: nothing done
    assert drained_in_view(east) == []


def test_drill_json_passes_and_undrains(undrained: dict[str, AgentProcess]) -> None:
    west = undrained["west"]
    done = meshd(
        "drill",
        "--admin",
        f"127.0.0.1:{west.admin_port}",
        "--cluster",
        "east",
        "--service",
        "shop/api",
        "--hold",
        "0.2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert "holding east drained for 0.2 s" in done.stderr  # then undrained and measured back
    report = json.loads(done.stdout)
    assert set(report) == {"cluster", "service", "members", "max_drained_s", "max_restored_s"}
    assert (report["cluster"], report["service"]) == ("east", "shop/api")
    assert sorted(m["cluster"] for m in report["members"]) == ["east", "south", "west"]
    for member in report["members"]:
        assert set(member) == {
            "cluster",
            "replica",
            "drained_s",
            "restored_s",
            "ttl_s",
            "in_answers_before",
        }
        assert member["in_answers_before"] is True
        assert 0 <= member["drained_s"] < 5, member
        assert 0 <= member["restored_s"] < 5, member
        assert member["ttl_s"] == 5
    assert report["max_drained_s"] == max(m["drained_s"] for m in report["members"])
    assert drained_in_view(west) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "nowhere"], "no cluster 'nowhere'"),
        (["--cluster", "south", "--service", "shop/checkout"], "no other healthy cluster"),
        (["--cluster", "south", "--service", "shop/api"], "south does not export shop/api"),
    ],
)
def test_drill_that_cannot_run_exits_2(
    ring: dict[str, AgentProcess], args: list[str], message: str
) -> None:
    done = meshd("drill", "--admin", f"127.0.0.1:{ring['east'].admin_port}", *args)
    assert done.returncode == 2, done
    assert message in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert drained_in_view(ring["east"]) == []


def test_drill_that_times_out_exits_1_and_undrains(undrained: dict[str, AgentProcess]) -> None:
    east = undrained["east"]
    done = meshd(
        "drill",
        "--admin",
        f"127.0.0.1:{east.admin_port}",
        "--cluster",
        "east",
        "--service",
        "shop/api",
        "--timeout",
        "0.001",
        "--json",
    )
    assert done.returncode == 1, done
    report = json.loads(done.stdout)
    assert report["max_drained_s"] is None
    assert any(m["drained_s"] is None for m in report["members"])
    wait_until("east undrained after the drill", lambda: drained_in_view(east) == [])


def _stderr_until(proc: subprocess.Popen[str], text: str, timeout_s: float) -> str:
    """What ``proc`` wrote to stderr up to and including ``text`` (read without blocking
    past ``timeout_s``, nor past the process's end)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    said = b""
    while text.encode() not in said:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} on stderr in {timeout_s} s: {said.decode()!r}"
        ready, _, _ = select.select([proc.stderr], [], [], left)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"stderr closed before {text!r}: {said.decode()!r}"
            said += chunk
    return said.decode()


def test_drill_interrupted_undrains(undrained: dict[str, AgentProcess]) -> None:
    east = undrained["east"]
    proc = subprocess.Popen(
        [
            *MESHD,
            "drill",
            "--admin",
            f"127.0.0.1:{east.admin_port}",
            "--cluster",
            "east",
            "--service",
            "shop/api",
            "--hold",
            "600",  # drained until interrupted: the interrupt cannot come after the drill
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until("the drill to drain east", lambda: drained_in_view(east) == ["east"])
        said = _stderr_until(proc, "holding east drained", timeout_s=60)
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=15)
        err = said + rest
        assert proc.returncode == 1, err
        assert "interrupted" in err
        assert drained_in_view(east) == []  # undrained before the drill exited
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_drain_survives_a_restart_with_state_dir(tmp_path: Path) -> None:
    procs = {}
    for cluster in ("east", "west"):
        shutil.copytree(REPO / "examples" / cluster, tmp_path / cluster)
        procs[cluster] = AgentProcess(cluster, "us", tmp_path / cluster, tmp_path)
    state = tmp_path / "east-state"
    east, west = procs["east"], procs["west"]
    try:
        start(procs, {"east": ["--state-dir", str(state)]})
        done = meshd("drain", "--admin", f"127.0.0.1:{east.admin_port}", "--reason", "rollout")
        assert done.returncode == 0, done
        assert "kept in: state-dir" in done.stdout
        assert json.loads((state / "drain.json").read_text())["drained"] is True
        wait_until("west sees east drained", lambda: drained_in_view(west) == ["east"])
        before = _generation(west)
        east.stop()
        east.start([west.grpc], "--state-dir", str(state))
        east.wait_ready()
        wait_until("east's new generation reaches west", lambda: _generation(west) > before)
        for agent in (east, west):
            assert drained_in_view(agent) == ["east"]
            assert answers(agent) == {WEST_API}
        assert post(east, "/undrain")[0] == 200
        wait_until("west sees east undrained", lambda: drained_in_view(west) == [])
        assert json.loads((state / "drain.json").read_text())["drained"] is False
    finally:
        for proc in procs.values():
            proc.stop()


def _generation(agent: AgentProcess) -> int:
    """The generation of east's state that ``agent`` holds (a restart starts a larger one)."""
    state = agent.state()
    found = [c["generation"] for c in (state or {}).get("clusters", []) if c["cluster"] == "east"]
    return int(found[0]) if found else 0


def test_replicas_of_a_cluster_adopt_each_others_decision(tmp_path: Path) -> None:
    """Drained through replica a, undrained through replica b: both follow, every agent
    too, and each keeps the decision in its own state directory."""
    procs = {}
    for name, cluster in (("a", "east"), ("b", "east"), ("west", "west")):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copytree(REPO / "examples" / cluster, folder / "manifests")
        procs[name] = AgentProcess(cluster, "us", folder / "manifests", folder)
    try:
        start(
            procs,
            {
                r: ["--replica-id", r, "--state-dir", str(tmp_path / r / "state")]
                for r in ("a", "b")
            },
        )
        assert post(procs["a"], "/drain", {"reason": "one"})[0] == 200
        wait_until(
            "b adopts the drain", lambda: _replica_drained(procs["west"]) == {"a": True, "b": True}
        )
        assert json.loads((tmp_path / "b" / "state" / "drain.json").read_text())["drained"]
        wait_answers({"west": procs["west"]}, {WEST_API}, "api without east")
        assert post(procs["b"], "/undrain")[0] == 200
        wait_until(
            "a adopts the undrain",
            lambda: _replica_drained(procs["west"]) == {"a": False, "b": False},
        )
        wait_answers({"west": procs["west"]}, {EAST_API, WEST_API}, "api from east again")
    finally:
        for proc in procs.values():
            proc.stop()


def _replica_drained(agent: AgentProcess) -> dict[str, bool]:
    state = agent.state()
    if state is None:
        return {}
    return {a["replica"]: a["drained"] for a in state["agents"] if a["cluster"] == "east"}


def test_every_agent_announces_its_dns_and_admin_addresses(ring: dict[str, AgentProcess]) -> None:
    state = ring["south"].state()
    assert state is not None
    found = {a["cluster"]: (a["dns"], a["admin"], a["live"]) for a in state["agents"]}
    for cluster, agent in ring.items():
        # east's admin listens on 0.0.0.0: it announces the --advertise host instead.
        expected = (f"127.0.0.1:{agent.dns_port}", f"127.0.0.1:{agent.admin_port}", True)
        assert found[cluster] == expected, found
