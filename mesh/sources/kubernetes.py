"""The Kubernetes API source: list and watch the MCS objects with kubernetes_asyncio.

Theory of operation
-------------------
The source follows four kinds across all namespaces: ``Namespace`` (v1), ``Service`` (v1),
``EndpointSlice`` (discovery.k8s.io/v1) and ``ServiceExport``
(multicluster.x-k8s.io/v1alpha1). For each, one task runs the loop of client-go's reflector
and kopf's ``continuous_watch`` (see ``mesh.sources.watchstate`` for the protocol):

1. *list* the collection in pages (``limit``/``continue``; a continue token that expires
   restarts the list) and make it the kind's truth (``KindStore.replace``): a relist
   leaves no lost and no phantom object;
2. *watch* from the list's resourceVersion with ``allowWatchBookmarks=true`` and a
   ``timeoutSeconds`` drawn from [1, 2) x ``watch_timeout_s`` (watches of several replicas
   do not end in step); every event is reduced by ``KindStore.apply``, and BOOKMARKs move
   the resourceVersion forward so that the next watch resumes from a recent one;
3. when the stream ends (the server's timeout, a proxy), watch again from the last
   resourceVersion; when nothing at all (not even a bookmark) arrives for
   ``inactivity_timeout_s``, drop the connection and do the same: a half-open TCP
   connection is silent forever otherwise;
4. ``410 Gone`` (an ERROR event with a Status of code 410, or an HTTP 410) means the
   resourceVersion was compacted away: list again at once. Any other ERROR event relists
   too, after a backoff;
5. when the API server cannot be reached or answers with an error (connection refused,
   TLS, 401, 403, 404 for a missing CRD, 5xx), retry after ``backoff_delay`` (exponential
   from ``backoff_initial_s`` to ``backoff_max_s``, with jitter); a watch that ends within
   a second without a single event counts as a failure too, so a server that closes every
   stream at once is not hammered. Meanwhile the last known objects stay, so DNS keeps
   answering from the last known state.

Every change marks the state dirty; one publishing task then translates all objects with
``mesh.sources.translate.translate`` (the same rules as the manifests source) and calls
``on_change`` when the exports differ from the last ones delivered. The first call waits
until every kind has been listed once, so ``/readyz`` means "the first full list of every
kind is in". Problems (unreachable API, denied calls, invalid objects) go to ``on_problem``
once each while they last; objects keep being read around an invalid one.

Configuration: ``KubeAccess(kubeconfig=PATH)`` reads a kubeconfig (its current context or
``context``); ``KubeAccess()`` uses the in-cluster service account (token, CA, and the
``KUBERNETES_SERVICE_HOST``/``PORT`` variables a pod is given). Responses are read as raw
JSON (``_preload_content=False``): the objects stay the plain dicts the API returned, which
is what ``translate`` reads, and no field is lost to a model class.

``PERMISSIONS`` names every API call this source makes; the RBAC manifests must grant them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)

from mesh.model import LocalExports
from mesh.sources.translate import SourceProblem, translate
from mesh.sources.watchstate import (
    JsonLines,
    KindStore,
    Outcome,
    Resource,
    WatchState,
    backoff_delay,
    failure_text,
    list_page,
)

__all__ = [
    "PERMISSIONS",
    "RESOURCES",
    "KubeAccess",
    "KubernetesConfigError",
    "KubernetesSource",
    "WatchTimings",
]

log = logging.getLogger("meshd.kubernetes")

RESOURCES: tuple[Resource, ...] = (
    Resource("Namespace", "v1", "namespaces"),
    Resource("Service", "v1", "services"),
    Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    Resource("ServiceExport", "multicluster.x-k8s.io/v1alpha1", "serviceexports"),
)
# (API group, resource, verb) of every call this source makes, cluster-wide.
PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    (r.group, r.plural, verb) for r in RESOURCES for verb in ("list", "watch")
)


class KubernetesConfigError(Exception):
    """The kubeconfig or the in-cluster service account cannot be used."""


class _RetryError(Exception):
    """A request that failed in a way worth a retry after a backoff."""


class _SilentStreamError(Exception):
    """The watch stream stayed silent for longer than the inactivity timeout."""


@dataclass(frozen=True)
class KubeAccess:
    """Where the API server is and who we are: a kubeconfig, else the in-cluster account."""

    kubeconfig: Path | None = None
    context: str | None = None
    token_file: str = SERVICE_TOKEN_FILENAME
    ca_file: str = SERVICE_CERT_FILENAME
    environ: Mapping[str, str] | None = None  # None: os.environ


@dataclass(frozen=True)
class WatchTimings:
    """Timeouts and retry pacing; every default says why."""

    # client-go's reflector asks for 5-10 minutes; the server ends the stream then.
    watch_timeout_s: float = 300.0
    # kube-apiserver sends a bookmark about every minute to a watch that asked for them:
    # three missed in a row means the connection is dead even if TCP does not know it.
    inactivity_timeout_s: float = 180.0
    # connect and list requests; a list of a few thousand objects takes well under this.
    request_timeout_s: float = 30.0
    # first retry soon (a blip), then back off to 30 s as client-go does.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # items per list page: kubectl's default chunk size.
    page_size: int = 500


class KubernetesSource:
    """Lists and watches the MCS objects and reports what this cluster exports."""

    def __init__(
        self,
        access: KubeAccess,
        on_change: Callable[[LocalExports], None],
        on_problem: Callable[[SourceProblem], None] | None = None,
        timings: WatchTimings | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.access = access
        self.timings = timings or WatchTimings()
        self.state = WatchState(RESOURCES)
        self.origin = "kubernetes"
        self.problems: list[SourceProblem] = []
        self._on_change = on_change
        self._on_problem = on_problem if on_problem is not None else _log_problem
        self._rand = rand
        self._dirty = asyncio.Event()
        self._delivered: LocalExports | None = None
        self._failing: dict[str, str] = {}  # kind -> the reason reported for it
        self._reported: set[SourceProblem] = set()
        self._translation: list[SourceProblem] = []
        self._api: ApiClient | None = None

    async def run(self) -> None:
        """List and watch forever; cancel to stop. Raises KubernetesConfigError."""
        configuration = await self._configure()
        self.origin = str(configuration.host)
        async with ApiClient(configuration) as api:
            api.user_agent = "meshd"
            self._api = api
            try:
                async with asyncio.TaskGroup() as group:
                    for store in self.state.stores.values():
                        group.create_task(
                            self._follow(store), name=f"watch {store.resource.plural}"
                        )
                    group.create_task(self._publish_loop(), name="publish")
            finally:
                self._api = None

    async def _configure(self) -> Configuration:
        configuration = Configuration()
        access = self.access
        try:
            if access.kubeconfig is not None:
                await kube_config.load_kube_config(
                    config_file=str(access.kubeconfig),
                    context=access.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            else:
                InClusterConfigLoader(
                    token_filename=access.token_file,
                    cert_filename=access.ca_file,
                    environ=dict(os.environ if access.environ is None else access.environ),
                ).load_and_set(configuration)
        except Exception as exc:  # the loaders raise anything from yaml to KeyError
            where = f"kubeconfig {access.kubeconfig}" if access.kubeconfig else "in-cluster config"
            raise KubernetesConfigError(f"cannot use the {where}: {exc}") from exc
        return configuration

    # ------------------------------------------------------------------ one kind

    async def _follow(self, store: KindStore) -> None:
        """List, then watch, forever (the reflector loop)."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            fresh = store.resource_version is None
            try:
                if fresh:
                    await self._list(store)
                    self._dirty.set()
                healthy = await self._watch(store, fresh)
            except (_RetryError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._failed(store, _describe(exc))
                healthy = False
            else:
                self._recovered(store)
            if healthy or loop.time() - started >= 60.0:
                failures = 0
                continue
            failures += 1
            t = self.timings
            await asyncio.sleep(
                backoff_delay(failures, t.backoff_initial_s, t.backoff_max_s, self._rand())
            )

    async def _list(self, store: KindStore) -> None:
        """One complete, consistent list (in pages) made the truth of ``store``."""
        resource = store.resource
        items: list[Any] = []
        token = ""
        restarts = 0
        while True:
            query = [("limit", str(self.timings.page_size))]
            if token:
                query.append(("continue", token))
            status, body = await self._get_json(resource.path, query)
            if status == 410 and token and restarts < 3:
                log.info("list of %s: continue token expired; listing again", resource.title)
                items, token, restarts = [], "", restarts + 1
                continue
            if status != 200:
                raise _RetryError(failure_text("list", resource, status, body))
            try:
                page = list_page(body, resource)
            except ValueError as exc:
                raise _RetryError(str(exc)) from None
            items.extend(page[0])
            if not token:
                version = page[1]
            token = page[2]
            if not token:
                break
        relist = store.listed
        change = store.replace(items, version)
        log.info(
            "listed %d %s at resourceVersion %s%s",
            len(store.objects),
            resource.title,
            version,
            f" (+{len(change.added)} ~{len(change.modified)} -{len(change.deleted)})"
            if relist
            else "",
        )

    async def _watch(self, store: KindStore, fresh: bool) -> bool:
        """One watch stream; True when it was healthy (events, or lasted a while).

        A 410 right after a fresh list is not healthy: listing again at once could loop.
        """
        resource = store.resource
        timeout_s = self.timings.watch_timeout_s * (1.0 + self._rand())
        query = [
            ("watch", "1"),
            ("resourceVersion", str(store.resource_version)),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(max(1, int(timeout_s)))),
        ]
        loop = asyncio.get_running_loop()
        started, events = loop.time(), 0
        response = await self._request(resource.path, query, streaming=True)
        async with response:
            if response.status == 410:
                self._expired(store, "HTTP 410 Gone")
                return not fresh
            if response.status != 200:
                body = await _read_json(response)
                raise _RetryError(failure_text("watch", resource, response.status, body))
            self._recovered(store)
            lines = _events(response, self.timings.inactivity_timeout_s)
            async with contextlib.aclosing(lines):
                try:
                    async for event in lines:
                        events += 1
                        outcome = store.apply(event)
                        if outcome is Outcome.CHANGED:
                            self._dirty.set()
                        elif outcome is Outcome.EXPIRED:
                            self._expired(store, store.last_error)
                            return events > 1 or not fresh
                        elif outcome is Outcome.FAILED:
                            store.resource_version = None  # relist, after a backoff
                            raise _RetryError(f"watch of {resource.title}: {store.last_error}")
                except _SilentStreamError:
                    log.info(
                        "watch of %s silent for %.1fs; watching again",
                        resource.title,
                        self.timings.inactivity_timeout_s,
                    )
                    return True
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                    # A stream cut mid-way (a restart, a proxy): watch again; if the server
                    # is gone, connecting fails and that is what gets reported.
                    log.info("watch of %s broken (%s); watching again", resource.title, exc)
        return events > 0 or loop.time() - started >= 1.0

    def _expired(self, store: KindStore, why: str) -> None:
        log.info("watch of %s expired (%s); listing again", store.resource.title, why)
        store.resource_version = None

    # ------------------------------------------------------------------ HTTP

    async def _request(
        self, path: str, query: list[tuple[str, str]], streaming: bool = False
    ) -> aiohttp.ClientResponse:
        assert self._api is not None
        limit = self.timings.request_timeout_s
        timeout = (
            aiohttp.ClientTimeout(connect=limit, sock_connect=limit)
            if streaming
            else aiohttp.ClientTimeout(total=limit)
        )
        response: aiohttp.ClientResponse = await self._api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        return response

    async def _get_json(self, path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
        response = await self._request(path, query)
        async with response:
            return response.status, await _read_json(response)

    # ------------------------------------------------------------------ publishing

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.state.synced:
                self.publish()

    def publish(self) -> None:
        """Translate what is held; deliver the exports if they changed."""
        exports, self._translation = translate(self.state.objects(self.origin))
        self._refresh_problems()
        if self._delivered is None or exports != self._delivered:
            if self._delivered is None:
                counts = ", ".join(
                    f"{len(s.objects)} {s.resource.title}" for s in self.state.stores.values()
                )
                log.info("first full list of every kind: %s", counts)
            self._delivered = exports
            self._on_change(exports)

    def _failed(self, store: KindStore, reason: str) -> None:
        self._failing[store.resource.kind] = reason
        self._refresh_problems()

    def _recovered(self, store: KindStore) -> None:
        if self._failing.pop(store.resource.kind, None) is not None:
            if not self._failing:
                log.info("the API server answers again")
            self._refresh_problems()

    def _refresh_problems(self) -> None:
        """Make the current problems the translation's and the API failures; report new ones.

        A problem is reported once while it lasts, and again if it comes back later.
        """
        failures = dict.fromkeys(self._failing.values())
        current = self._translation + [SourceProblem(self.origin, r) for r in failures]
        fresh = [p for p in dict.fromkeys(current) if p not in self._reported]
        self.problems = current
        self._reported = set(current)
        for problem in fresh:
            self._on_problem(problem)


# ---------------------------------------------------------------------- helpers


def _log_problem(problem: SourceProblem) -> None:
    log.warning("%s", problem)


async def _read_json(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}


async def _events(
    response: aiohttp.ClientResponse, inactivity_s: float
) -> AsyncGenerator[Any, None]:
    """The events of a watch stream; _SilentStreamError after ``inactivity_s`` of quiet."""
    lines = JsonLines()
    while True:
        try:
            async with asyncio.timeout(inactivity_s):
                chunk = await response.content.readany()
        except TimeoutError:
            raise _SilentStreamError from None
        if not chunk:
            break
        for event in lines.feed(chunk):
            yield event
    for event in lines.end():
        yield event


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _RetryError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "cannot reach the API server: timed out"
    return f"cannot reach the API server: {exc or type(exc).__name__}"
