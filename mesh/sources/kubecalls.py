"""Plain API calls for meshd's writers: JSON in, ``(status, JSON)`` out, every write counted.

The adapter for kubernetes_asyncio on the write side (the read side is
``mesh.sources.kubernetes``). ``KubeCalls`` sends one request through a kubernetes_asyncio
``ApiClient`` (which owns authentication: tokens, client certificates, exec plugins) and
reads the answer as raw JSON, whatever its status: the callers decide what a 403, a 409 or
a 422 means, so no exception stands for an HTTP answer. Only a request that gets no answer
at all (refused, timed out, cut) raises ``KubeUnreachableError``.

``WriteStats`` counts every write by (verb, resource, outcome), the outcomes being ``ok``,
``conflict`` (409), ``forbidden`` (403), ``invalid`` (422), ``not_found`` (404), ``error``
(any other answer) and ``unreachable``; ``mesh.metrics`` exports them as
``meshd_kube_writes_total``.

``follow_kind`` keeps one ``KindStore`` current for a writer (list in pages, then watch
from the list's resourceVersion with bookmarks, relist on 410 Gone, back off on errors):
the same protocol as the read side's reflector, for a resource the source does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

from mesh.sources.kubernetes import KubeAccess, KubernetesConfigError, WatchTimings
from mesh.sources.watchstate import (
    JsonLines,
    KindStore,
    Outcome,
    backoff_delay,
    failure_text,
    list_page,
)

__all__ = [
    "KubeCalls",
    "KubeUnreachableError",
    "WriteStats",
    "api_client",
    "follow_kind",
    "load_configuration",
    "outcome_of",
]

log = logging.getLogger("meshd.kubewriter")
MERGE_PATCH = "application/merge-patch+json"


class KubeUnreachableError(Exception):
    """The request got no HTTP answer (connection refused or cut, TLS, timeout)."""


def outcome_of(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    return {409: "conflict", 403: "forbidden", 422: "invalid", 404: "not_found"}.get(
        status, "error"
    )


@dataclass
class WriteStats:
    """Writes by (verb, resource, outcome); read by the metrics collector at scrape time."""

    writes: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def count(self, verb: str, resource: str, outcome: str) -> None:
        key = (verb, resource, outcome)
        self.writes[key] = self.writes.get(key, 0) + 1

    def total(self, outcome: str | None = None, resource: str | None = None) -> int:
        return sum(
            n
            for (_, r, o), n in self.writes.items()
            if outcome in (None, o) and resource in (None, r)
        )


async def load_configuration(access: KubeAccess) -> Configuration:
    """The client configuration: the kubeconfig given, else the in-cluster service account."""
    configuration = Configuration()
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


@contextlib.asynccontextmanager
async def api_client(access: KubeAccess, user_agent: str) -> AsyncIterator[ApiClient]:
    """A client for ``access``; raises KubernetesConfigError when it cannot be configured."""
    async with ApiClient(await load_configuration(access)) as api:
        api.user_agent = user_agent
        yield api


class KubeCalls:
    """One request at a time through ``api``; writes are counted in ``stats``."""

    def __init__(self, api: ApiClient, request_timeout_s: float, stats: WriteStats) -> None:
        self.api = api
        self.request_timeout_s = request_timeout_s
        self.stats = stats

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; its status and its JSON body (a dict with ``message`` if not)."""
        limit = self.request_timeout_s if timeout_s is None else timeout_s
        try:
            response = await self._send(method, path, body, query, content_type, limit)
            async with response:
                return response.status, await read_json(response)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeUnreachableError(str(exc) or type(exc).__name__) from exc

    async def write(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """A write, counted by outcome; ``(0, message)`` when the API could not be reached."""
        try:
            status, answer = await self.call(
                method, path, body, content_type=content_type, timeout_s=timeout_s
            )
        except KubeUnreachableError as exc:
            self.stats.count(verb, resource, "unreachable")
            return 0, {"message": f"cannot reach the API server: {exc}"}
        self.stats.count(verb, resource, outcome_of(status))
        return status, answer

    async def stream(self, path: str, query: list[tuple[str, str]]) -> aiohttp.ClientResponse:
        limit = self.request_timeout_s
        timeout = aiohttp.ClientTimeout(connect=limit, sock_connect=limit)
        return await self._send("GET", path, None, query, "application/json", timeout)

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        query: list[tuple[str, str]] | None,
        content_type: str,
        limit: float | aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        response: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=limit,
        )
        return response


async def read_json(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}


# ---------------------------------------------------------------------- one kind, followed


class _RetryError(Exception):
    pass


async def follow_kind(
    calls: KubeCalls,
    store: KindStore,
    timings: WatchTimings,
    on_change: Callable[[], None],
    rand: Callable[[], float],
) -> None:
    """List, then watch ``store``'s resource forever; ``on_change`` after every change."""
    failures, reported = 0, ""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            if store.resource_version is None:
                await _list(calls, store, timings.page_size)
                on_change()
            healthy = await _watch(calls, store, timings, on_change, rand)
            reported = ""
        except (_RetryError, KubeUnreachableError, aiohttp.ClientError, OSError, ValueError) as e:
            if str(e) != reported:
                log.warning("%s", e)
                reported = str(e)
            healthy = False
        if healthy or loop.time() - started >= 60.0:
            failures = 0
            continue
        failures += 1
        delay = backoff_delay(failures, timings.backoff_initial_s, timings.backoff_max_s, rand())
        await asyncio.sleep(delay)


async def _list(calls: KubeCalls, store: KindStore, page_size: int) -> None:
    resource, token, version = store.resource, "", ""
    items: list[Any] = []
    while True:
        query = [("limit", str(page_size))] + ([("continue", token)] if token else [])
        status, body = await calls.call("GET", resource.path, query=query)
        if status == 410 and token:
            items, token = [], ""  # the continue token expired: start the list again
            continue
        if status != 200:
            raise _RetryError(failure_text("list", resource, status, body))
        page, at, token = list_page(body, resource)
        items.extend(page)
        version = version or at
        if not token:
            break
    store.replace(items, version)


async def _watch(
    calls: KubeCalls,
    store: KindStore,
    timings: WatchTimings,
    on_change: Callable[[], None],
    rand: Callable[[], float],
) -> bool:
    resource = store.resource
    query = [
        ("watch", "1"),
        ("resourceVersion", str(store.resource_version)),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(max(1, int(timings.watch_timeout_s * (1.0 + rand()))))),
    ]
    loop = asyncio.get_running_loop()
    started, events = loop.time(), 0
    try:
        response = await calls.stream(resource.path, query)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeUnreachableError(f"cannot watch {resource.title}: {exc}") from exc
    async with response:
        if response.status == 410:
            store.resource_version = None  # list again, after a backoff: no hot loop
            return False
        if response.status != 200:
            body = await read_json(response)
            raise _RetryError(failure_text("watch", resource, response.status, body))
        lines = JsonLines()
        with contextlib.suppress(TimeoutError, aiohttp.ClientPayloadError):
            while True:
                async with asyncio.timeout(timings.inactivity_timeout_s):
                    chunk = await response.content.readany()
                if not chunk:
                    break
                for event in lines.feed(chunk):
                    events += 1
                    outcome = store.apply(event)
                    if outcome is Outcome.CHANGED:
                        on_change()
                    elif outcome is Outcome.EXPIRED:
                        store.resource_version = None
                        return events > 1
                    elif outcome is Outcome.FAILED:
                        store.resource_version = None
                        raise _RetryError(f"watch of {resource.title}: {store.last_error}")
    return events > 0 or loop.time() - started >= 1.0
