"""The fake API server answers as kube-apiserver does, to kubernetes_asyncio and to raw HTTP.

These pin the protocol details the source and the write-back rely on: list shapes and
pages, watch streams and 410, optimistic concurrency, the status subresource, patches,
RBAC and authentication answers.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.fake_rbac import Rbac
from tests.k8s.objects import exported_service, namespace, service, service_export

MCS = ("multicluster.x-k8s.io", "v1alpha1")


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    """Everything allowed: these tests are about the protocol (RBAC has its own test)."""
    async with FakeApiServer(rbac=Rbac.allow_all()) as server:
        yield server


@pytest_asyncio.fixture
async def kube(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(
        str(api.kubeconfig(tmp_path / "kc")), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest_asyncio.fixture
async def http(api: FakeApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    assert api.tls_files is not None
    context = ssl.create_default_context(cafile=str(api.tls_files.ca))
    headers = {"Authorization": f"Bearer {api.token}"}
    async with aiohttp.ClientSession(
        base_url=api.url, headers=headers, connector=aiohttp.TCPConnector(ssl=context)
    ) as session:
        yield session


async def get(http: aiohttp.ClientSession, path: str, **query: str) -> tuple[int, Any]:
    async with http.get(path, params=query) as response:
        return response.status, await response.json()


async def watch_lines(http: aiohttp.ClientSession, path: str, **query: str) -> list[Any]:
    """Every event of a watch that the server ends (timeoutSeconds)."""
    async with http.get(path, params={"watch": "1", **query}) as response:
        assert response.status == 200
        return [json.loads(line) for line in (await response.read()).splitlines() if line]


@pytest.mark.asyncio
async def test_list_shapes(api: FakeApiServer, http: aiohttp.ClientSession) -> None:
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        api.put(obj)
    status, body = await get(http, "/api/v1/services")
    assert status == 200
    assert body["kind"] == "ServiceList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {"resourceVersion": str(api.store.rv)}
    [item] = body["items"]
    assert "kind" not in item  # built-in list items carry no kind/apiVersion
    assert "apiVersion" not in item
    meta = item["metadata"]
    assert {"uid", "resourceVersion", "creationTimestamp"} <= set(meta)
    assert item["spec"]["type"] == "ClusterIP"
    assert item["spec"]["clusterIPs"] == [item["spec"]["clusterIP"]]
    assert item["spec"]["ports"][0]["targetPort"] == 80
    assert item["status"] == {"loadBalancer": {}}
    _, exports = await get(
        http, "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/shop/serviceexports"
    )
    assert exports["kind"] == "ServiceExportList"
    assert exports["items"][0]["kind"] == "ServiceExport"  # custom resources keep them
    assert exports["items"][0]["metadata"]["generation"] == 1
    _, namespaces = await get(http, "/api/v1/namespaces")
    shop = next(n for n in namespaces["items"] if n["metadata"]["name"] == "shop")
    assert shop["status"] == {"phase": "Active"}
    assert shop["metadata"]["labels"] == {"kubernetes.io/metadata.name": "shop"}


@pytest.mark.asyncio
async def test_pages_are_one_snapshot_and_expire_with_compaction(
    api: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    for name in "abcde":
        api.put(service("shop", name))
    status, first = await get(http, "/api/v1/services", limit="2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    api.remove("Service", "shop", "c")  # after the first page: the snapshot still has it
    api.put(service("shop", "bb"))
    _, second = await get(
        http, "/api/v1/services", limit="2", **{"continue": first["metadata"]["continue"]}
    )
    assert [i["metadata"]["name"] for i in second["items"]] == ["c", "d"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    api.compact()
    status, gone = await get(
        http, "/api/v1/services", limit="2", **{"continue": second["metadata"]["continue"]}
    )
    assert status == 410
    assert gone["reason"] == "Expired"
    assert gone["message"].startswith("The provided continue parameter is too old")
    status, exact = await get(
        http, "/api/v1/services", resourceVersion="1001", resourceVersionMatch="Exact"
    )
    assert (status, exact["code"], exact["reason"]) == (410, 410, "Expired")


@pytest.mark.asyncio
async def test_watch_streams_events_bookmarks_and_410(
    api: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    api.put(service("shop", "web"))
    start = str(api.store.rv)
    api.put(service("shop", "web", port=81))
    deleted = api.remove("Service", "shop", "web")
    events = await watch_lines(
        http,
        "/api/v1/services",
        resourceVersion=start,
        timeoutSeconds="1",
        allowWatchBookmarks="true",
    )
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "BOOKMARK"]
    assert events[0]["object"]["kind"] == "Service"  # watch events carry kind/apiVersion
    assert (
        events[1]["object"]["metadata"]["resourceVersion"] == deleted["metadata"]["resourceVersion"]
    )
    assert events[2]["object"]["metadata"]["resourceVersion"] == str(api.store.rv)
    no_bookmarks = await watch_lines(
        http, "/api/v1/services", resourceVersion=start, timeoutSeconds="1"
    )
    assert [e["type"] for e in no_bookmarks] == ["MODIFIED", "DELETED"]

    api.compact()
    [error] = await watch_lines(http, "/api/v1/services", resourceVersion=start)
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == 410
    assert error["object"]["reason"] == "Expired"
    assert error["object"]["message"].startswith(f"too old resource version: {start} (")
    api.expired_watch_http = True
    status, body = await get(http, "/api/v1/services", watch="1", resourceVersion=start)
    assert (status, body["reason"]) == (410, "Expired")


@pytest.mark.asyncio
async def test_leases_with_optimistic_concurrency(
    api: FakeApiServer, kube: client.ApiClient
) -> None:
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "meshd"}})
    leases = client.CoordinationV1Api(kube)
    body = {
        "metadata": {"name": "meshd"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    created = await leases.create_namespaced_lease("meshd", body)
    stale = created.metadata.resource_version
    taken = await leases.replace_namespaced_lease(
        "meshd",
        "meshd",
        {
            "metadata": {"name": "meshd", "resourceVersion": stale},
            "spec": {"holderIdentity": "b"},
        },
    )
    assert taken.spec.holder_identity == "b"
    with pytest.raises(ApiException) as conflict:
        await leases.replace_namespaced_lease(
            "meshd",
            "meshd",
            {
                "metadata": {"name": "meshd", "resourceVersion": stale},
                "spec": {"holderIdentity": "c"},
            },
        )
    assert conflict.value.status == 409
    status = json.loads(conflict.value.body)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    again = await leases.replace_namespaced_lease(
        "meshd",
        "meshd",
        {
            "metadata": {"name": "meshd", "resourceVersion": taken.metadata.resource_version},
            "spec": {"holderIdentity": "b"},
        },
    )
    assert again.metadata.resource_version == taken.metadata.resource_version  # no-op write


@pytest.mark.asyncio
async def test_status_subresource_and_patches(api: FakeApiServer, kube: client.ApiClient) -> None:
    api.put(service("shop", "web"))
    api.put(service_export("shop", "web"))
    custom = client.CustomObjectsApi(kube)
    condition = {"type": "Valid", "status": "True", "reason": "Exported", "message": "ok"}
    patched = await custom.patch_namespaced_custom_object_status(
        *MCS,
        "shop",
        "serviceexports",
        "web",
        {"status": {"conditions": [condition]}},
        _content_type="application/merge-patch+json",
    )
    assert patched["status"]["conditions"] == [condition]
    assert patched["metadata"]["generation"] == 1  # status is not spec
    # A write to the main resource cannot change the status.
    body = dict(patched, status={"conditions": []})
    body["metadata"] = dict(body["metadata"], labels={"a": "b"})
    replaced = await custom.replace_namespaced_custom_object(
        *MCS, "shop", "serviceexports", "web", body
    )
    assert replaced["status"]["conditions"] == [condition]
    assert replaced["metadata"]["labels"] == {"a": "b"}
    # A custom resource needs a resourceVersion to be replaced.
    del body["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as invalid:
        await custom.replace_namespaced_custom_object(*MCS, "shop", "serviceexports", "web", body)
    assert invalid.value.status == 422
    # Server-side apply creates, and needs a field manager.
    imp = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    with pytest.raises(ApiException) as no_manager:
        await custom.patch_namespaced_custom_object(
            *MCS, "shop", "serviceimports", "web", imp, _content_type="application/apply-patch+yaml"
        )
    assert no_manager.value.status == 422
    applied = await custom.patch_namespaced_custom_object(
        *MCS,
        "shop",
        "serviceimports",
        "web",
        imp,
        field_manager="meshd",
        _content_type="application/apply-patch+yaml",
    )
    assert applied["spec"]["type"] == "ClusterSetIP"
    # JSON patch; a delete with a stale precondition conflicts.
    ops = [{"op": "replace", "path": "/spec/type", "value": "Headless"}]
    changed = await custom.patch_namespaced_custom_object(
        *MCS, "shop", "serviceimports", "web", ops
    )
    assert changed["spec"]["type"] == "Headless"
    assert changed["metadata"]["generation"] == 2
    stale = {"preconditions": {"resourceVersion": applied["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiException) as conflict:
        await custom.delete_namespaced_custom_object(
            *MCS, "shop", "serviceimports", "web", body=stale
        )
    assert conflict.value.status == 409


@pytest.mark.asyncio
async def test_rbac_and_authentication_answers(
    api: FakeApiServer, http: aiohttp.ClientSession, kube: client.ApiClient
) -> None:
    api.rbac = Rbac((), present=True, user="system:serviceaccount:meshd:meshd")
    status, body = await get(
        http, "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/shop/serviceimports"
    )
    assert status == 403
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "serviceimports.multicluster.x-k8s.io is forbidden: User "
        '"system:serviceaccount:meshd:meshd" cannot list resource "serviceimports" in API '
        'group "multicluster.x-k8s.io" in the namespace "shop"',
        "reason": "Forbidden",
        "details": {"group": "multicluster.x-k8s.io", "kind": "serviceimports"},
        "code": 403,
    }
    with pytest.raises(ApiException) as denied:
        await client.CoreV1Api(kube).list_service_for_all_namespaces()
    assert denied.value.status == 403
    async with aiohttp.ClientSession() as anonymous:
        assert api.tls_files is not None
        context = ssl.create_default_context(cafile=str(api.tls_files.ca))
        async with anonymous.get(f"{api.url}/api/v1/services", ssl=context) as response:
            assert response.status == 401
            assert (await response.json())["reason"] == "Unauthorized"


@pytest.mark.asyncio
async def test_discovery(api: FakeApiServer, http: aiohttp.ClientSession) -> None:
    _, groups = await get(http, "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"multicluster.x-k8s.io", "discovery.k8s.io", "coordination.k8s.io"} <= names
    _, core = await get(http, "/api/v1")
    services = next(r for r in core["resources"] if r["name"] == "services")
    assert services["namespaced"] is True
    assert "watch" in services["verbs"]
    _, mcs = await get(http, "/apis/multicluster.x-k8s.io/v1alpha1")
    assert {r["name"] for r in mcs["resources"]} >= {"serviceexports", "serviceexports/status"}
    status, _ = await get(http, "/apis/nope/v1")
    assert status == 404


@pytest.mark.asyncio
async def test_a_crd_served_in_two_versions(
    api: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    """The MCS CRDs store v1beta1 and serve v1alpha1 too: one object, read and written in
    the version of the path (conversion strategy None: only apiVersion changes)."""
    api.put(namespace("shop"))
    alpha = "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/shop/serviceimports"
    beta = "/apis/multicluster.x-k8s.io/v1beta1/namespaces/shop/serviceimports"
    body = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": "web"},
        "spec": {"type": "ClusterSetIP", "ports": []},
    }
    async with http.post(alpha, json=body) as response:
        assert response.status == 201
        assert (await response.json())["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
    stored = api.store.get(api.store.resource("ServiceImport"), "shop", "web")
    assert stored["apiVersion"] == "multicluster.x-k8s.io/v1beta1"
    status, as_beta = await get(http, f"{beta}/web")
    assert (status, as_beta["apiVersion"]) == (200, "multicluster.x-k8s.io/v1beta1")
    status, as_alpha = await get(http, f"{alpha}/web")
    assert as_alpha == {**as_beta, "apiVersion": "multicluster.x-k8s.io/v1alpha1"}
    _, listed = await get(http, alpha)
    assert listed["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
    assert [i["apiVersion"] for i in listed["items"]] == ["multicluster.x-k8s.io/v1alpha1"]
    events = await watch_lines(http, beta, resourceVersion="0", timeoutSeconds="1")
    assert [e["object"]["apiVersion"] for e in events] == ["multicluster.x-k8s.io/v1beta1"]
    _, group = await get(http, "/apis/multicluster.x-k8s.io")
    assert group["kind"] == "APIGroup"
    assert [v["version"] for v in group["versions"]] == ["v1beta1", "v1alpha1"]
    assert group["preferredVersion"]["version"] == "v1beta1"
    status, _ = await get(http, "/apis/nope.example.com")
    assert status == 404
