"""The MCS API in whichever version the API server serves (issue 15, part 3).

The upstream CRDs now store ``multicluster.x-k8s.io/v1beta1`` and serve v1alpha1 too; an
older installation serves v1alpha1 only. meshd discovers the version before it lists
(``mesh.kube.source.discover_version``), prefers v1beta1, and writes its ServiceImports and
ServiceExport conditions (v1beta1's: Valid, Ready, Conflict) in the version it reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.k8s.fake_store import Store, mcs_resources, resources
from tests.k8s.objects import exported_service, namespace
from tests.k8s.writeback import RecordingApiServer, Replica, objects, until

WEB = "shop/web"


async def serving(versions: tuple[str, ...]) -> RecordingApiServer:
    storage, *others = versions
    server = RecordingApiServer(store=Store(resources(mcs_resources(storage, tuple(others)))))
    await server.start()
    server.put(namespace("meshd-system"))
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        server.put(obj)
    return server


@pytest_asyncio.fixture
async def replica_on(tmp_path: Path) -> AsyncIterator[Any]:
    running: list[tuple[Replica, RecordingApiServer]] = []

    async def start(versions: tuple[str, ...]) -> tuple[Replica, RecordingApiServer]:
        api = await serving(versions)
        running.append((Replica(api, tmp_path, "a"), api))
        return running[-1]

    yield start
    for replica, api in running:
        await replica.stop()
        await api.close()


def conditions(api: RecordingApiServer) -> dict[str, dict[str, Any]]:
    export = objects(api, "ServiceExport").get(WEB, {})
    return {c["type"]: c for c in export.get("status", {}).get("conditions", [])}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("versions", "used"),
    [(("v1beta1", "v1alpha1"), "v1beta1"), (("v1alpha1",), "v1alpha1")],
    ids=["upstream-now", "old-crds"],
)
async def test_meshd_reads_and_writes_the_version_served(
    replica_on: Any, versions: tuple[str, ...], used: str
) -> None:
    east, api = await replica_on(versions)
    await until(
        "the import", lambda: objects(api, "ServiceImport").get(WEB, {}).get("status"), east
    )
    await until("Ready on the export", lambda: "Ready" in conditions(api), east)
    group = f"/apis/multicluster.x-k8s.io/{used}/"
    mcs = [r for r in api.requests if "/multicluster.x-k8s.io/" in r.path and r.resource]
    assert mcs
    assert {r.path.startswith(group) for r in mcs} == {True}, {r.path for r in mcs}
    ready = conditions(api)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Exported")
    imported = objects(api, "ServiceImport")[WEB]
    assert imported["apiVersion"] == f"multicluster.x-k8s.io/{versions[0]}"  # as stored
    assert imported["spec"]["sessionAffinity"] == "None"
    assert imported["spec"]["ipFamilies"] == ["IPv4"]
    assert [c["type"] for c in imported["status"]["conditions"]] == ["Ready"]
