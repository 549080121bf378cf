"""Plain API calls: JSON in, ``(status, JSON)`` out, every write counted.

The adapter for kubernetes_asyncio. ``load_configuration`` and ``api_client`` make a client
from a ``KubeAccess`` (a kubeconfig, else the in-cluster service account). ``KubeCalls``
sends one request through a kubernetes_asyncio ``ApiClient`` (which owns authentication:
tokens, client certificates, exec plugins) and reads the answer as raw JSON, whatever its
status: the callers decide what a 403, a 409 or a 422 means, so no exception stands for an
HTTP answer. Only a request that gets no answer at all (refused, timed out, cut) raises
``KubeUnreachableError``. ``stream`` opens a response to be read as it arrives (a watch).

``WriteStats`` counts every write by (verb, resource, outcome), the outcomes being ``ok``,
``conflict`` (409), ``forbidden`` (403), ``invalid`` (422), ``not_found`` (404), ``error``
(any other answer) and ``unreachable``; ``mesh.daemon.metrics`` exports them as
``meshd_kube_writes_total``. Reads are not counted.

The list-then-watch loop over these calls, for the source and the writers alike, is
``mesh.kube.reflector``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
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

__all__ = [
    "KubeAccess",
    "KubeCalls",
    "KubeUnreachableError",
    "KubernetesConfigError",
    "WriteStats",
    "api_client",
    "load_configuration",
    "outcome_of",
    "read_json",
]

MERGE_PATCH = "application/merge-patch+json"


class KubernetesConfigError(Exception):
    """The kubeconfig or the in-cluster service account cannot be used."""


@dataclass(frozen=True)
class KubeAccess:
    """Where the API server is and who we are: a kubeconfig, else the in-cluster account."""

    kubeconfig: Path | None = None
    context: str | None = None
    token_file: str = SERVICE_TOKEN_FILENAME
    ca_file: str = SERVICE_CERT_FILENAME
    environ: Mapping[str, str] | None = None  # None: os.environ


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

    def __init__(
        self, api: ApiClient, request_timeout_s: float, stats: WriteStats | None = None
    ) -> None:
        self.api = api
        self.request_timeout_s = request_timeout_s
        self.stats = stats if stats is not None else WriteStats()

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
        """A GET whose body is read as it arrives: a time limit on connecting, none after."""
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
    """The body as JSON; a body that is not JSON as ``{"message": its first 200 bytes}``."""
    raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
