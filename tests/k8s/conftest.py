"""Fixtures: a fake API server, and a ``KubernetesSource`` running against it.

The source is configured the way a user configures meshd, from a kubeconfig file (HTTPS,
the server's CA, a bearer token); nothing in it knows the server is a test server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from mesh.kube.source import KubeAccess, KubernetesSource, WatchTimings
from mesh.model import LocalExports, ServiceKey
from mesh.sources.translate import SourceProblem
from tests.k8s.fake_apiserver import FakeApiServer

# Short timings so that each test takes a second or two; page_size 2 makes every list
# come in several pages.
FAST = WatchTimings(
    watch_timeout_s=30.0,
    inactivity_timeout_s=30.0,
    request_timeout_s=5.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    page_size=2,
)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer() as server:
        yield server


class RunningSource:
    """A source in a task, with what it delivered and reported."""

    def __init__(self, access: KubeAccess, timings: WatchTimings) -> None:
        self.exports: list[LocalExports] = []
        self.problems: list[SourceProblem] = []
        self.source = KubernetesSource(
            access, self.exports.append, self.problems.append, timings, rand=lambda: 0.0
        )
        self.task = asyncio.create_task(self.source.run())

    @property
    def latest(self) -> LocalExports:
        assert self.exports, "nothing delivered yet"
        return self.exports[-1]

    def services(self) -> dict[str, Any]:
        return {str(k): v for k, v in self.latest.services.items()} if self.exports else {}

    def ready_addresses(self, key: str) -> set[str]:
        namespace, name = key.split("/")
        if not self.exports:
            return set()
        service = self.latest.services.get(ServiceKey(namespace, name))
        if service is None:
            return set()
        return {a for e in service.ready_endpoints() for a in e.addresses}

    async def until(self, what: str, probe: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Poll ``probe`` until it is truthy; fail naming ``what`` and the last state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.task.done():
                self.task.result()  # raises what ended it
                raise AssertionError("the source stopped")
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.02)
        last = self.services() if self.exports else "nothing delivered"
        raise AssertionError(
            f"timed out after {timeout_s}s waiting for {what}; exports: {last}; "
            f"problems: {self.problems}"
        )

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest_asyncio.fixture
async def start_source(tmp_path: Path) -> AsyncIterator[Callable[..., RunningSource]]:
    """Start sources against a server; every one is stopped after the test, even a failed one."""
    running: list[RunningSource] = []

    def start(
        server: FakeApiServer, timings: WatchTimings = FAST, access: KubeAccess | None = None
    ) -> RunningSource:
        if access is None:
            access = KubeAccess(kubeconfig=server.kubeconfig(tmp_path / "kubeconfig"))
        running.append(RunningSource(access, timings))
        return running[-1]

    yield start
    for item in running:
        await item.stop()
