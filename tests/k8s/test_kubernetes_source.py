"""The Kubernetes API source against the fake API server: exports, watch, relist, outages.

Each test starts a real ``KubernetesSource`` configured from a kubeconfig (HTTPS, CA, token)
and changes objects in the server the way controllers and users do; it then waits (polling
with a deadline) for what the source delivers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mesh.kube.source import KubeAccess, KubernetesConfigError, KubernetesSource
from mesh.model import ServiceKey, ServiceType
from mesh.sources.watchstate import WatchState
from tests.k8s.conftest import FAST, RunningSource
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.fake_rbac import Rbac, Rule
from tests.k8s.fake_tls import write_kubeconfig
from tests.k8s.objects import (
    endpoint_slice,
    exported_service,
    namespace,
    service,
    service_export,
)
from tests.k8s.writeback import RecordingApiServer

Start = Callable[..., RunningSource]


def seed(server: FakeApiServer, *objects: Any) -> None:
    for obj in objects:
        for item in obj if isinstance(obj, list) else [obj]:
            server.put(item)


async def watching(source: RunningSource, server: FakeApiServer) -> None:
    """Wait until the source watches every kind (its lists are done before that)."""
    await source.until("four open watches", lambda: len(server.watchers) == 4)


def lists(server: FakeApiServer, plural: str) -> int:
    """How many lists of ``plural`` were started (later pages carry ``continue``)."""
    return sum(
        1
        for r in server.requests
        if r.verb == "list" and r.resource == plural and "continue" not in r.query
    )


@pytest.mark.asyncio
async def test_export_and_unexport(api: FakeApiServer, start_source: Start) -> None:
    seed(api, namespace("shop"), service("shop", "web"))
    seed(api, endpoint_slice("shop", "web-1", "web", [("10.1.0.1", True)]))
    source = start_source(api)
    await source.until("the first full list", lambda: source.exports)
    assert source.latest.services == {}
    assert "shop" in source.latest.namespaces

    api.put(service_export("shop", "web"))
    await source.until("web exported", lambda: "shop/web" in source.services())
    web = source.latest.services[ServiceKey("shop", "web")]
    assert web.type is ServiceType.CLUSTER_SET_IP
    assert [(p.name, p.port) for p in web.ports] == [("http", 80)]
    assert source.ready_addresses("shop/web") == {"10.1.0.1"}

    api.remove("ServiceExport", "shop", "web")
    await source.until("web unexported", lambda: "shop/web" not in source.services())
    assert source.problems == []


@pytest.mark.asyncio
async def test_lists_come_in_pages_of_one_consistent_snapshot(
    api: FakeApiServer, start_source: Start
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        seed(api, exported_service("shop", name, [(f"10.0.0.{len(name) + ord(name)}", True)]))
    source = start_source(api)
    await source.until("five services", lambda: len(source.services()) == 5)
    pages = [r for r in api.requests if r.resource == "services" and "continue" in r.query]
    assert len(pages) == 2  # 5 items, 2 per page: three requests
    first = next(r for r in api.requests if r.resource == "services" and r.verb == "list")
    assert first.query["limit"] == "2"


@pytest.mark.asyncio
async def test_an_expired_continue_token_restarts_the_list_at_the_new_snapshot(
    start_source: Start,
) -> None:
    """Compaction between two pages: the continue token gets 410, the list starts again,
    and the store is stamped with the restarted list's resourceVersion, not the first's
    (watching from the older one would replay events over the newer snapshot)."""
    async with RecordingApiServer() as api:
        for name in ("a", "b", "c"):
            seed(api, exported_service("shop", name, [("10.0.0.1", True)]))
        first_rv = api.store.rv

        def compact_once(request: web.Request, agent: str) -> None:
            if "/services" in request.path and "continue" in request.query:
                api.faults.remove(compact_once)
                seed(api, exported_service("shop", "d", [("10.0.0.2", True)]))
                api.compact()

        api.faults.append(compact_once)
        source = start_source(api)
        await source.until("four services", lambda: len(source.services()) == 4)
        continued = [r for r in api.requests if r.resource == "services" and "continue" in r.query]
        assert continued[0].status == 410
        assert lists(api, "services") == 2
        services = source.source.state.stores["Service"]
        assert int(str(services.resource_version)) > first_rv
        assert source.problems == []
        await source.stop()


@pytest.mark.asyncio
async def test_an_endpoint_slice_turning_not_ready(api: FakeApiServer, start_source: Start) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True), ("10.1.0.2", True)]))
    source = start_source(api)
    await source.until("two ready", lambda: len(source.ready_addresses("shop/web")) == 2)

    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.1", False), ("10.1.0.2", True)]))
    await source.until("one ready", lambda: source.ready_addresses("shop/web") == {"10.1.0.2"})
    web = source.latest.services[ServiceKey("shop", "web")]
    assert {a for e in web.endpoints for a in e.addresses} == {"10.1.0.1", "10.1.0.2"}

    # conditions.ready absent means ready (EndpointSlice API).
    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.1", None), ("10.1.0.2", True)]))
    await source.until("both ready", lambda: len(source.ready_addresses("shop/web")) == 2)


@pytest.mark.asyncio
async def test_mcs_rules_externalname_and_publish_not_ready(
    api: FakeApiServer, start_source: Start
) -> None:
    seed(api, exported_service("shop", "db", [("10.2.0.1", False)], publish_not_ready=True))
    seed(api, exported_service("shop", "ext", [("10.2.0.9", True)], kind="ExternalName"))
    seed(api, exported_service("shop", "hl", [("10.2.0.5", True)], headless=True))
    source = start_source(api)
    await source.until("db and hl", lambda: set(source.services()) == {"shop/db", "shop/hl"})
    assert source.ready_addresses("shop/db") == {"10.2.0.1"}  # publishNotReadyAddresses
    assert source.latest.services[ServiceKey("shop", "hl")].type is ServiceType.HEADLESS
    await source.until("the ExternalName problem", lambda: source.problems)
    assert len(source.problems) == 1
    assert "Service shop/ext" in source.problems[0].reason
    assert "ExternalName cannot be exported" in source.problems[0].reason
    assert source.problems[0].origin == api.url


@pytest.mark.asyncio
async def test_relist_after_410_with_changes_missed_in_between(
    api: FakeApiServer, start_source: Start
) -> None:
    """While the agent is away, web is unexported, cart is exported and db changes; the
    history is compacted, so the watch gets 410 and the relist must show exactly that."""
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    seed(api, exported_service("shop", "db", [("10.1.1.1", True)]))
    source = start_source(api)
    await source.until("web and db", lambda: set(source.services()) == {"shop/web", "shop/db"})
    await watching(source, api)
    services_lists = lists(api, "services")
    old_rv = source.source.state.stores["Service"].resource_version
    watches = len(api.watch_requests("services"))

    await api.stop()
    api.remove("ServiceExport", "shop", "web")
    seed(api, exported_service("shop", "cart", [("10.1.2.1", True)]))
    api.put(endpoint_slice("shop", "db-abcde", "db", [("10.1.1.2", True)]))
    api.compact()
    await api.start()

    await source.until(
        "the relisted state",
        lambda: (
            set(source.services()) == {"shop/db", "shop/cart"}
            and source.ready_addresses("shop/db") == {"10.1.1.2"}
        ),
    )
    # It watched from where it was, was told 410 (history compacted), and listed again.
    resumed = api.watch_requests("services")[watches:]
    assert resumed[0].query["resourceVersion"] == old_rv
    assert int(str(old_rv)) < api.store.compacted
    assert lists(api, "services") == services_lists + 1
    # Nothing lost, nothing phantom: the source holds what the server holds, key by key.
    for kind, store in source.source.state.stores.items():
        held = sorted(store.objects)
        truth = sorted(
            (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in api.store.items(api.store.resource(kind))
        )
        assert held == truth, kind


@pytest.mark.asyncio
@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_410_as_an_event_or_as_http_both_relist(start_source: Start, as_http: bool) -> None:
    async with FakeApiServer(expired_watch_http=as_http) as api:
        seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
        source = start_source(api)
        await source.until("web", lambda: "shop/web" in source.services())
        await watching(source, api)
        before = lists(api, "serviceexports")
        await api.stop()
        api.remove("ServiceExport", "shop", "web")
        api.compact()
        await api.start()
        await source.until("web gone", lambda: "shop/web" not in source.services())
        assert lists(api, "serviceexports") == before + 1
        await source.stop()


@pytest.mark.asyncio
async def test_expired_in_an_open_stream_relists(api: FakeApiServer, start_source: Start) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    source = start_source(api)
    await source.until("web", lambda: "shop/web" in source.services())
    await watching(source, api)
    before = lists(api, "services")
    api.expire_watches()
    await source.until("a relist of services", lambda: lists(api, "services") > before)
    assert "shop/web" in source.services()


@pytest.mark.asyncio
async def test_bookmarks_move_the_resource_version_and_spare_a_relist(
    api: FakeApiServer, start_source: Start
) -> None:
    """Changes to other kinds move the server's revision; without a bookmark the services
    watch would resume from an old one, and after compaction get 410 and relist."""
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    source = start_source(api)
    await source.until("web", lambda: "shop/web" in source.services())
    await watching(source, api)
    services = source.source.state.stores["Service"]
    for i in range(5):
        api.put(endpoint_slice("shop", "web-abcde", "web", [(f"10.1.0.{i + 10}", True)]))
    await source.until(
        "the last slice", lambda: source.ready_addresses("shop/web") == {"10.1.0.14"}
    )
    assert int(str(services.resource_version)) < api.store.rv

    api.send_bookmarks()
    await source.until("the bookmark", lambda: services.resource_version == str(api.store.rv))
    before, delivered = lists(api, "services"), len(source.exports)
    api.compact()
    watches = len(api.watch_requests("services"))
    api.close_watches()
    await source.until("a new watch", lambda: len(api.watch_requests("services")) > watches)
    resumed = api.watch_requests("services")[-1]
    assert resumed.query["resourceVersion"] == str(api.store.rv)
    assert resumed.query["allowWatchBookmarks"] == "true"
    await source.until("it is answered", lambda: resumed.status == 200)
    assert lists(api, "services") == before  # no 410, no relist
    assert len(source.exports) == delivered  # a bookmark changes no export


@pytest.mark.asyncio
async def test_a_silent_watch_is_restarted_after_the_inactivity_timeout(
    api: FakeApiServer, start_source: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    timings = FAST.__class__(**{**FAST.__dict__, "inactivity_timeout_s": 0.5})
    source = start_source(api, timings)
    await source.until("web", lambda: "shop/web" in source.services())
    await watching(source, api)
    watches, lists_before = len(api.watch_requests("endpointslices")), lists(api, "endpointslices")
    api.stall_watches()  # the open streams deliver nothing from now on
    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.2", True)]))
    await source.until(
        "the change, via a new watch",
        lambda: source.ready_addresses("shop/web") == {"10.1.0.2"},
    )
    assert len(api.watch_requests("endpointslices")) > watches
    assert lists(api, "endpointslices") == lists_before  # resumed from its resourceVersion


@pytest.mark.asyncio
async def test_streams_ended_by_the_server_resume_without_a_relist(
    api: FakeApiServer, start_source: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    timings = FAST.__class__(**{**FAST.__dict__, "watch_timeout_s": 1.0})
    source = start_source(api, timings)
    await source.until("web", lambda: "shop/web" in source.services())
    await source.until(
        "three watches of services", lambda: len(api.watch_requests("services")) >= 3
    )
    assert all(r.query["timeoutSeconds"] == "1" for r in api.watch_requests("services"))
    assert lists(api, "services") == 1
    api.remove("ServiceExport", "shop", "web")
    await source.until("web gone", lambda: "shop/web" not in source.services())


@pytest.mark.asyncio
async def test_api_server_down_and_back(api: FakeApiServer, start_source: Start) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    source = start_source(api)
    await source.until("web", lambda: "shop/web" in source.services())
    await watching(source, api)
    delivered = len(source.exports)

    await api.stop()
    await source.until("the outage reported", lambda: source.problems)
    assert all("cannot reach the API server" in p.reason for p in source.problems)
    assert len(source.problems) == 1  # once, not once per kind or per retry
    failed = len(api.requests)
    api.put(endpoint_slice("shop", "web-abcde", "web", [("10.1.0.7", True)]))  # missed, kept
    assert len(source.exports) == delivered  # the last known state is kept
    assert "shop/web" in source.services()

    await api.start()
    await source.until(
        "the missed change", lambda: source.ready_addresses("shop/web") == {"10.1.0.7"}
    )
    assert len(api.requests) > failed
    assert lists(api, "endpointslices") == 1  # the history was still there: no relist
    await source.until("the outage cleared", lambda: not source.source.problems)


@pytest.mark.asyncio
async def test_an_error_event_relists_after_a_backoff(
    api: FakeApiServer, start_source: Start
) -> None:
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    source = start_source(api)
    await source.until("web", lambda: "shop/web" in source.services())
    await watching(source, api)
    status = {"kind": "Status", "apiVersion": "v1", "code": 500, "reason": "InternalError"}
    api.inject("services", {"type": "ERROR", "object": {**status, "message": "etcd down"}})
    await source.until("a relist", lambda: lists(api, "services") == 2)
    assert any("500 InternalError: etcd down" in p.reason for p in source.problems)


@pytest.mark.asyncio
async def test_readiness_waits_for_the_first_list_of_every_kind(
    api: FakeApiServer, start_source: Start
) -> None:
    """serviceexports is denied: nothing is delivered (the agent stays unready) until RBAC
    grants it; the denial is reported once with the server's message."""
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    everything_but = [
        Rule(
            frozenset({"", "discovery.k8s.io"}),
            frozenset("*"),
            frozenset("*"),
            frozenset(),
            None,
            "t",
        )
    ]
    api.rbac = Rbac(tuple(everything_but), present=True)
    source = start_source(api)
    await source.until("the denial", lambda: source.problems)
    assert len(source.problems) == 1
    reason = source.problems[0].reason
    assert "cannot list serviceexports.multicluster.x-k8s.io: HTTP 403 Forbidden" in reason
    assert 'User "system:serviceaccount:meshd:meshd" cannot list resource' in reason
    await source.until("a few retries", lambda: lists(api, "serviceexports") >= 3)
    assert source.exports == []
    assert source.source.state.stores["Service"].listed

    api.rbac = Rbac.allow_all()
    await source.until("web", lambda: "shop/web" in source.services())
    assert len(source.exports) == 1


@pytest.mark.asyncio
async def test_a_missing_crd_is_reported(api: FakeApiServer, start_source: Start) -> None:
    del api.store.resources["serviceexports"]
    source = start_source(api)
    await source.until("the problem", lambda: source.problems)
    assert "HTTP 404 NotFound" in source.problems[0].reason
    assert "CRD installed" in source.problems[0].reason
    assert source.exports == []


@pytest.mark.asyncio
async def test_a_wrong_token_is_reported(
    api: FakeApiServer, start_source: Start, tmp_path: Path
) -> None:
    assert api.tls_files is not None
    kubeconfig = write_kubeconfig(tmp_path / "wrong", api.url, "wrong-token", api.tls_files.ca)
    source = start_source(api, access=KubeAccess(kubeconfig=kubeconfig))
    await source.until("the problem", lambda: source.problems)
    assert "HTTP 401 Unauthorized" in source.problems[0].reason
    assert source.exports == []


@pytest.mark.asyncio
async def test_in_cluster_config(api: FakeApiServer, start_source: Start, tmp_path: Path) -> None:
    """A pod's service account: token and CA files, and the service host and port."""
    assert api.tls_files is not None
    token = tmp_path / "token"
    token.write_text(api.token)
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    access = KubeAccess(token_file=str(token), ca_file=str(api.tls_files.ca), environ=environ)
    seed(api, exported_service("shop", "web", [("10.1.0.1", True)]))
    source = start_source(api, access=access)
    await source.until("web", lambda: "shop/web" in source.services())


@pytest.mark.asyncio
async def test_an_unusable_kubeconfig_stops_the_source(tmp_path: Path) -> None:
    missing = KubernetesSource(KubeAccess(kubeconfig=tmp_path / "nope"), lambda _: None)
    with pytest.raises(KubernetesConfigError, match="cannot use the kubeconfig"):
        await missing.run()
    no_pod = KubernetesSource(KubeAccess(environ={}), lambda _: None)
    with pytest.raises(KubernetesConfigError, match="in-cluster config"):
        await no_pod.run()


def test_the_source_follows_the_kinds_translate_reads() -> None:
    state = WatchState(())
    assert state.synced  # no kind: trivially synced; the source always has four
    from mesh.kube.source import RESOURCES
    from mesh.sources.translate import API_VERSIONS

    assert {r.kind: r.api_version for r in RESOURCES} == dict(API_VERSIONS)
