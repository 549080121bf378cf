"""A real ``meshd run --kubeconfig`` process against the fake API server, answering DNS.

The server runs on its own thread (``ThreadedApiServer``) so the test can block on the
process and on DNS; the agent reads the kubeconfig as it would read a real cluster's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.integration.harness import AgentProcess, wait_until
from tests.k8s.fake_apiserver import ThreadedApiServer
from tests.k8s.objects import endpoint_slice, exported_service, service_export

pytestmark = pytest.mark.integration
WEB = "web.shop.svc.clusterset.local"


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


def test_meshd_run_with_a_kubeconfig_answers_dns(
    api: ThreadedApiServer, agent: AgentProcess, tmp_path: Path
) -> None:
    for obj in exported_service("shop", "web", [("10.1.0.1", True), ("10.1.0.2", False)]):
        api.call(api.server.put, obj)
    kubeconfig = api.call(api.server.kubeconfig, tmp_path / "kubeconfig")
    agent.start([], "--kubeconfig", str(kubeconfig))
    agent.wait_ready()
    assert agent.addresses(WEB) == {"10.1.0.1"}

    # An EndpointSlice changes: the not-ready endpoint becomes ready.
    slice_ = endpoint_slice("shop", "web-abcde", "web", [("10.1.0.1", True), ("10.1.0.2", True)])
    api.call(api.server.put, slice_)
    wait_until("both endpoints", lambda: agent.addresses(WEB) == {"10.1.0.1", "10.1.0.2"})

    # Unexport: the name goes away (NXDOMAIN), the agent stays up.
    api.call(api.server.remove, "ServiceExport", "shop", "web")
    wait_until("NXDOMAIN", lambda: agent.query(WEB).rcode() == dns.rcode.NXDOMAIN)

    # The API server goes away and comes back with changes it made meanwhile.
    api.run(api.server.stop)
    api.call(api.server.put, service_export("shop", "web"))
    assert agent.query(WEB).rcode() == dns.rcode.NXDOMAIN  # the last known state
    api.run(api.server.start)
    wait_until("web again", lambda: agent.addresses(WEB) == {"10.1.0.1", "10.1.0.2"})
    assert agent.proc is not None
    assert agent.proc.poll() is None, agent.logs()
    assert agent.stop() == 0, agent.logs()


def test_meshd_run_is_not_ready_until_every_kind_is_listed(
    api: ThreadedApiServer, agent: AgentProcess, tmp_path: Path
) -> None:
    api.call(api.server.store.resources.pop, "serviceexports")  # no MCS CRD installed
    kubeconfig = api.call(api.server.kubeconfig, tmp_path / "kubeconfig")
    agent.start([], "--kubeconfig", str(kubeconfig))
    wait_until("the CRD problem in the log", lambda: "CRD installed" in agent.logs())
    assert agent.admin("/readyz")[0] == 503
    assert agent.query(WEB).rcode() == dns.rcode.SERVFAIL
