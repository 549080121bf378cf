"""Helpers for the write-back tests: a fake API server that knows who called, and replicas.

``RecordingApiServer`` is the fake API server plus the ``User-Agent`` of every request (a
writer names itself ``meshd/<identity>``) and optional faults (a function of the request
that may answer with an error instead). ``Replica`` is one meshd replica's Kubernetes side:
a real ``KubernetesSource`` feeding a real ``Catalog`` (as the agent does) and a real
``KubeWriter`` planning from that catalog, all configured from a kubeconfig; given an
``Answering``, also the agent's routing planner (``AnswerPlanner``), re-planned on every
change as the agent's rebuild does, so the writer derives what the policy chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from mesh.kube.election import LeaseTimings
from mesh.kube.source import KubeAccess, KubernetesSource
from mesh.kube.writer import KubeWriter, WriterSettings
from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.ring.catalog import Catalog, Change
from mesh.routing.modes import Answering
from mesh.routing.planner import AnswerPlanner
from mesh.routing.policy import Locality
from tests.k8s.conftest import FAST
from tests.k8s.fake_apiserver import FakeApiServer, RequestRecord
from tests.k8s.fake_store import ApiError

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Fast, client-go-shaped: lease 1 s > renew deadline 0.6 s > 1.2 x retry 0.1 s.
FAST_LEASE = LeaseTimings(lease_duration_s=1.0, renew_deadline_s=0.6, retry_period_s=0.1)
FAST_WRITER = WriterSettings(
    lease=FAST_LEASE,
    poll_s=0.05,
    resync_s=30.0,
    min_interval_s=0.02,
    watch=FAST,
    overlay_ttl_s=5.0,
)
Fault = Callable[[web.Request, str], "ApiError | None"]


class RecordingApiServer(FakeApiServer):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.agents: dict[int, str] = {}
        self.faults: list[Fault] = []

    async def _dispatch(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        self.agents[id(record)] = agent
        for fault in list(self.faults):
            error = fault(request, agent)
            if error is not None:
                raise error
        return await super()._dispatch(request, record)

    def writes(self, identity: str | None = None, kind: str = "") -> list[RequestRecord]:
        """Write requests (by a replica, if given) whose path names ``kind``."""
        return [
            r
            for r in list(self.requests)
            if r.method in WRITE_METHODS
            and f"/{kind}" in r.path
            and (identity is None or self.agents.get(id(r)) == f"meshd/{identity}")
        ]

    def mcs_writes(self, identity: str | None = None) -> list[RequestRecord]:
        """Writes to ServiceImports and ServiceExports (not to the Lease)."""
        return [r for r in self.writes(identity) if "/leases" not in r.path]


class Replica:
    """One meshd replica: source -> catalog -> writer, against ``api``."""

    def __init__(
        self,
        api: FakeApiServer,
        tmp_path: Path,
        identity: str,
        cluster: str = "east",
        settings: WriterSettings = FAST_WRITER,
        answering: Answering | None = None,
        region: str = "us",
    ) -> None:
        self.catalog = Catalog(ClusterState(cluster, 1, 0, region, namespaces=frozenset()))
        self.ring_synced = True  # as the agent's ``synced``: the ring brought the others' states
        self.healthy: set[str] | None = None  # clusters in the answers; None: every one
        self.answers: dict[ServiceKey, tuple[str, ...]] = {}  # what DNS would answer (A/AAAA)
        self.planner = (
            AnswerPlanner(Locality(cluster, region), answering=answering) if answering else None
        )
        if answering is not None:
            settings = replace(settings, answering=answering)
        access = KubeAccess(kubeconfig=api.kubeconfig(tmp_path / f"kubeconfig-{identity}"))
        self.source = KubernetesSource(
            access,
            self._on_exports,
            lambda problem: None,
            FAST,
            rand=lambda: 0.0,
            on_vips=self._on_vips,
        )
        self.writer = KubeWriter(
            cluster,
            self.source,
            self.catalog.clusters,
            settings,
            identity=identity,
            rand=lambda: 0.0,
            ring_synced=lambda: self.ring_synced,
            planner=self.planner,
        )
        self.identity = identity
        self.source_task = asyncio.create_task(self.source.run())
        self.writer_task = asyncio.create_task(self.writer.run())

    def _on_exports(self, exports: LocalExports) -> None:
        self.planned(self.catalog.set_local(exports))

    def _on_vips(self, vips: dict[ServiceKey, tuple[str, ...]]) -> None:
        if self.planner is not None:
            self.planned(self.planner.note_vips(vips))

    def planned(self, change: Change | None = None) -> None:
        """What the agent does on a change: note it, and rebuild the answers."""
        if self.planner is None:
            return
        states = self.catalog.clusters()
        if change:
            self.planner.note(change)
        everyone = {s.cluster_id for s in states}
        self.planner.note_health(everyone if self.healthy is None else self.healthy, states)
        for key, records in self.planner.plan(states, self.catalog.local.namespaces):
            self.answers[key] = records.addresses if records is not None else ()

    def merge(self, state: ClusterState) -> None:
        """A remote cluster's state arrives through the ring."""
        change = self.catalog.merge(state)
        assert change is not None
        self.planned(change)

    def set_healthy(self, healthy: set[str] | None) -> None:
        """The clusters this agent reaches change (None: all)."""
        self.healthy = healthy
        self.planned()

    def check(self) -> None:
        for task in (self.source_task, self.writer_task):
            if task.done():
                task.result()  # raises what ended it
                raise AssertionError(f"replica {self.identity} stopped")

    async def stop_writer(self) -> None:
        """Stop writing as a clean shutdown does (releasing the Lease)."""
        self.writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer_task

    async def stop(self) -> None:
        for task in (self.writer_task, self.source_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(
    what: str, probe: Callable[[], Any], *replicas: Replica, timeout_s: float = 5.0
) -> Any:
    """Poll ``probe`` until it is truthy; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        for replica in replicas:
            replica.check()
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def objects(api: FakeApiServer, kind: str) -> dict[str, dict[str, Any]]:
    """The objects of ``kind`` in the fake's store, by ``namespace/name``."""
    res = api.store.resource(kind)
    return {f"{ns}/{name}": obj for (ns, name), obj in api.store.objects[res.plural].items()}


def conditions(api: FakeApiServer, key: str) -> dict[str, dict[str, Any]]:
    export = objects(api, "ServiceExport").get(key) or {}
    return {c["type"]: c for c in (export.get("status") or {}).get("conditions", [])}
