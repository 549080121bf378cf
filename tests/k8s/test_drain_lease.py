"""With the Kubernetes API source a drain is kept on the cluster's meshd Lease.

Two real ``meshd run --kubeconfig`` replicas of one cluster against the fake API server:
a drain sent to one is written to the Lease annotation ``meshd.io/drain`` and followed by
the other; the leader's renewals keep it; it survives a rollout of both replicas (no state
directory anywhere); an undrain sent to the other replica ends it for both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import AgentProcess, wait_until
from tests.integration.test_drain import post
from tests.k8s.fake_apiserver import ThreadedApiServer
from tests.k8s.objects import exported_service, namespace

pytestmark = pytest.mark.integration


@pytest.fixture
def api() -> Iterator[ThreadedApiServer]:
    with ThreadedApiServer() as server:
        yield server


def lease_drain(api: ThreadedApiServer) -> dict[str, Any] | None:
    def find() -> dict[str, Any] | None:
        res = api.server.store.resource("Lease")
        return api.server.store.objects[res.plural].get(("meshd-system", "meshd-east"))

    lease = api.call(find)
    text = ((lease or {}).get("metadata") or {}).get("annotations", {}).get("meshd.io/drain")
    return None if text is None else dict(json.loads(text))


def replicas_drained(agent: AgentProcess) -> dict[str, bool]:
    state = agent.state()
    return {} if state is None else {a["replica"]: a["drained"] for a in state["agents"]}


def test_a_drain_is_kept_on_the_lease_and_survives_a_rollout(
    api: ThreadedApiServer, tmp_path: Path
) -> None:
    api.call(api.server.put, namespace("meshd-system"))
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        api.call(api.server.put, obj)
    kubeconfig = api.call(api.server.kubeconfig, tmp_path / "kubeconfig")
    replicas = {r: AgentProcess("east", "us", None, tmp_path / r) for r in ("a", "b")}
    for r in replicas:
        (tmp_path / r).mkdir()

    def start() -> None:
        for name, agent in replicas.items():
            others = [a.grpc for a in replicas.values() if a is not agent]
            agent.start(
                others, "--kubeconfig", str(kubeconfig), "--lease-namespace", "meshd-system",
                "--replica-id", name,
            )  # fmt: skip
        for agent in replicas.values():
            agent.wait_ready()

    a, b = replicas["a"], replicas["b"]
    try:
        start()
        wait_until("the Lease", lambda: api.call(lambda: _has_lease(api)))
        _, body = wait_until("a drain the Lease keeps", lambda: _accepted(a, "/drain"))
        assert body["kept_in"] == ["lease"], body
        assert lease_drain(api) == {"drained": True, "reason": "rollout", "at": body["at"]}
        wait_until("b follows", lambda: replicas_drained(a) == {"a": True, "b": True})
        for agent in replicas.values():  # a rollout: both replicas replaced, nothing on disk
            agent.stop()
        start()
        wait_until(
            "drained after the rollout", lambda: replicas_drained(a) == {"a": True, "b": True}
        )
        assert (b.state() or {}).get("drained") == ["east"]
        wait_until("an undrain through b", lambda: _accepted(b, "/undrain"))
        assert lease_drain(api)["drained"] is False  # type: ignore[index]
        wait_until("a follows", lambda: replicas_drained(b) == {"a": False, "b": False})
    finally:
        for agent in replicas.values():
            agent.stop()


def _has_lease(api: ThreadedApiServer) -> bool:
    res = api.server.store.resource("Lease")
    return ("meshd-system", "meshd-east") in api.server.store.objects[res.plural]


def _accepted(agent: AgentProcess, path: str) -> tuple[int, dict[str, Any]] | None:
    """The answer to a drain or undrain once the agent takes it (a replica that has not
    connected to the API server yet answers 503)."""
    status, body = post(agent, path, {"reason": "rollout"} if path == "/drain" else {})
    return (status, body) if status == 200 else None
