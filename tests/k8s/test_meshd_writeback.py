"""A real ``meshd run --kubeconfig`` process writes back what the MCS API expects.

The agent takes the Lease, creates the ServiceImport and sets the ServiceExport's
conditions, shows it in /metrics (which `promtool check metrics` accepts), and gives the
Lease up when it stops.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import AgentProcess, wait_until
from tests.k8s.fake_apiserver import ThreadedApiServer
from tests.k8s.objects import exported_service, namespace
from tests.meta.monitoring_rules import promtool

pytestmark = pytest.mark.integration


@pytest.fixture
def api() -> Iterator[ThreadedApiServer]:
    with ThreadedApiServer() as server:
        yield server


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess("east", "us", None, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def stored(api: ThreadedApiServer, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    def find() -> dict[str, Any] | None:
        res = api.server.store.resource(kind)
        return api.server.store.objects[res.plural].get((ns, name))

    return api.call(find)


def test_meshd_run_writes_imports_and_conditions_and_releases_the_lease(
    api: ThreadedApiServer, agent: AgentProcess, tmp_path: Path
) -> None:
    api.call(api.server.put, namespace("meshd-system"))
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        api.call(api.server.put, obj)
    kubeconfig = api.call(api.server.kubeconfig, tmp_path / "kubeconfig")
    agent.start([], "--kubeconfig", str(kubeconfig), "--lease-namespace", "meshd-system")
    agent.wait_ready()

    imported = wait_until(
        "the ServiceImport",
        lambda: (stored(api, "ServiceImport", "shop", "web") or {}).get("status"),
    )
    assert imported["clusters"] == [{"cluster": "east"}]
    assert [(c["type"], c["status"]) for c in imported["conditions"]] == [("Ready", "True")]

    def condition_types() -> set[str]:
        export = stored(api, "ServiceExport", "shop", "web") or {}
        return {c["type"] for c in (export.get("status") or {}).get("conditions", [])}

    wait_until(
        "Valid, Conflict and meshd.io/Ports",
        lambda: condition_types() == {"Valid", "Ready", "Conflict", "meshd.io/Ports"},
    )
    lease = stored(api, "Lease", "meshd-system", "meshd-east")
    assert lease is not None
    assert lease["spec"]["holderIdentity"]
    assert lease["spec"]["leaseDurationSeconds"] == 15

    metrics = agent.admin("/metrics")[1].decode()
    assert 'meshd_kube_leader{cluster="east"} 1.0' in metrics
    assert (
        'meshd_kube_writes_total{outcome="ok",resource="serviceimports",verb="create"} 1.0'
        in metrics
    )
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=metrics, capture_output=True, text=True
    )
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, ""), lint.stdout + lint.stderr

    assert agent.stop() == 0, agent.logs()
    lease = stored(api, "Lease", "meshd-system", "meshd-east")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == ""  # released: the next replica need not wait
