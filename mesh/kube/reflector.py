"""The list-then-watch loop of one kind, shared by the source and the writers.

Theory of operation
-------------------
``Reflector.follow`` keeps one ``KindStore`` current, forever, with the loop of client-go's
reflector and kopf's ``continuous_watch`` (``kopf/_cogs/clients/watching.py``; the
protocol itself is in ``mesh.sources.watchstate``):

1. *list* the collection in pages (``limit``/``continue``). A continue token that expires
   (HTTP 410) restarts the list, at most three times in a row, and the restarted list's
   own resourceVersion is the one kept; the complete list is made the kind's truth
   (``KindStore.replace``): a relist leaves no lost and no phantom object;
2. *watch* from the list's resourceVersion with ``allowWatchBookmarks=true`` and a
   ``timeoutSeconds`` drawn from [1, 2) x ``watch_timeout_s`` (watches of several replicas
   do not end in step); every event is reduced by ``KindStore.apply``, and BOOKMARKs move
   the resourceVersion forward so that the next watch resumes from a recent one;
3. when the stream ends (the server's timeout, a proxy, a cut connection), watch again
   from the last resourceVersion; when nothing at all (not even a bookmark) arrives for
   ``inactivity_timeout_s``, drop the connection and do the same: a half-open TCP
   connection is silent forever otherwise;
4. ``410 Gone`` (an ERROR event with a Status of code 410, or an HTTP 410) means the
   resourceVersion was compacted away: list again, at once when the watch had resumed
   from an older list, after a backoff when the list was fresh (listing again at once
   could loop). Any other ERROR event relists too, after a backoff;
5. when the API server cannot be reached or answers with an error (connection refused,
   TLS, 401, 403, 404 for a missing CRD, 5xx), retry after ``backoff_delay`` (exponential
   from ``backoff_initial_s`` to ``backoff_max_s``, with jitter); a watch that ends within
   a second without a single event counts as a failure too, so a server that closes every
   stream at once is not hammered. A round that lasted a minute resets the backoff.
   Meanwhile the store keeps the last known objects.

What the caller does with it comes through three callbacks: ``on_change`` after a list and
after every event that changed an object, ``on_failure(store, reason)`` with one line for
each failed round (``describe``), ``on_recovery(store)`` once the API answers again (a
watch opened, or a round ended well).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from mesh.kube.calls import KubeCalls, KubeUnreachableError, read_json
from mesh.sources.watchstate import (
    JsonLines,
    KindStore,
    Outcome,
    backoff_delay,
    failure_text,
    list_page,
)

__all__ = ["Reflector", "WatchError", "WatchTimings", "describe", "follow_kind"]


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


class WatchError(Exception):
    """A list or watch that failed in a way worth a retry after a backoff."""


class _SilentStreamError(Exception):
    """The watch stream stayed silent for longer than the inactivity timeout."""


# What ends a round as a failure: no answer, an error answer, or a body that is not JSON.
_FAILURES = (
    WatchError,
    KubeUnreachableError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    ValueError,
)
# A round that lasted this long was healthy, whatever ended it: the backoff starts afresh.
_HEALTHY_ROUND_S = 60.0
# A continue token may expire once in a while; every time in a row means something is off.
_LIST_RESTARTS = 3


@dataclass
class Reflector:
    """Follows kinds through ``calls`` (see the module docstring)."""

    calls: KubeCalls
    timings: WatchTimings
    on_change: Callable[[], None]
    on_failure: Callable[[KindStore, str], None]
    on_recovery: Callable[[KindStore], None]
    rand: Callable[[], float]
    log: logging.Logger
    # Called before every full list (a kind whose served version must be discovered first:
    # ``mesh.kube.source.discover_version``); what it raises fails the round like a list.
    prepare: Callable[[KindStore], Awaitable[None]] | None = None

    async def follow(self, store: KindStore) -> None:
        """List, then watch, forever; cancel to stop."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            fresh = store.resource_version is None
            try:
                if fresh:
                    if self.prepare is not None:
                        await self.prepare(store)
                    await self._list(store)
                    self.on_change()
                healthy = await self._watch(store, fresh)
            except _FAILURES as exc:
                self.on_failure(store, describe(exc))
                healthy = False
            else:
                self.on_recovery(store)
            if healthy or loop.time() - started >= _HEALTHY_ROUND_S:
                failures = 0
                continue
            failures += 1
            t = self.timings
            await asyncio.sleep(
                backoff_delay(failures, t.backoff_initial_s, t.backoff_max_s, self.rand())
            )

    async def _list(self, store: KindStore) -> None:
        """One complete, consistent list (in pages) made the truth of ``store``."""
        resource = store.resource
        items: list[Any] = []
        token, version, restarts = "", "", 0
        while True:
            query = [("limit", str(self.timings.page_size))]
            if token:
                query.append(("continue", token))
            status, body = await self.calls.call("GET", resource.path, query=query)
            if status == 410 and token and restarts < _LIST_RESTARTS:
                self.log.info("list of %s: continue token expired; listing again", resource.title)
                items, token, restarts = [], "", restarts + 1
                continue
            if status != 200:
                raise WatchError(failure_text("list", resource, status, body))
            try:
                page, at, next_token = list_page(body, resource)
            except ValueError as exc:
                raise WatchError(str(exc)) from None
            items.extend(page)
            if not token:
                version = at  # the snapshot is the first page's; later pages continue it
            token = next_token
            if not token:
                break
        relist = store.listed
        change = store.replace(items, version)
        self.log.info(
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
        timeout_s = self.timings.watch_timeout_s * (1.0 + self.rand())
        query = [
            ("watch", "1"),
            ("resourceVersion", str(store.resource_version)),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(max(1, int(timeout_s)))),
        ]
        loop = asyncio.get_running_loop()
        started, events = loop.time(), 0
        async with await self.calls.stream(resource.path, query) as response:
            if response.status == 410:
                self._expired(store, "HTTP 410 Gone")
                return not fresh
            if response.status != 200:
                body = await read_json(response)
                raise WatchError(failure_text("watch", resource, response.status, body))
            self.on_recovery(store)
            lines = _events(response, self.timings.inactivity_timeout_s)
            async with contextlib.aclosing(lines):
                try:
                    async for event in lines:
                        events += 1
                        outcome = store.apply(event)
                        if outcome is Outcome.CHANGED:
                            self.on_change()
                        elif outcome is Outcome.EXPIRED:
                            self._expired(store, store.last_error)
                            return events > 1 or not fresh
                        elif outcome is Outcome.FAILED:
                            store.resource_version = None  # relist, after a backoff
                            raise WatchError(f"watch of {resource.title}: {store.last_error}")
                except _SilentStreamError:
                    self.log.info(
                        "watch of %s silent for %.1fs; watching again",
                        resource.title,
                        self.timings.inactivity_timeout_s,
                    )
                    return True
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                    # A stream cut mid-way (a restart, a proxy): watch again; if the server
                    # is gone, connecting fails and that is what gets reported.
                    self.log.info("watch of %s broken (%s); watching again", resource.title, exc)
        return events > 0 or loop.time() - started >= 1.0

    def _expired(self, store: KindStore, why: str) -> None:
        self.log.info("watch of %s expired (%s); listing again", store.resource.title, why)
        store.resource_version = None


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


def describe(exc: BaseException) -> str:
    """One line for a failed round: the API's answer, or why there was none."""
    if isinstance(exc, KubeUnreachableError) and exc.__cause__ is not None:
        exc = exc.__cause__  # say what the transport said, as for a watch that failed
    if isinstance(exc, WatchError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "cannot reach the API server: timed out"
    return f"cannot reach the API server: {exc or type(exc).__name__}"


class _LogOnce:
    """A warning for each failure while it lasts, not once per retry."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.reported = ""

    def failed(self, store: KindStore, reason: str) -> None:
        if reason != self.reported:
            self.log.warning("%s", reason)
            self.reported = reason

    def recovered(self, store: KindStore) -> None:
        self.reported = ""


async def follow_kind(
    calls: KubeCalls,
    store: KindStore,
    timings: WatchTimings,
    on_change: Callable[[], None],
    rand: Callable[[], float],
    log: logging.Logger,
    prepare: Callable[[KindStore], Awaitable[None]] | None = None,
) -> None:
    """Follow ``store``'s resource forever for a writer: failures go to ``log``, once each."""
    once = _LogOnce(log)
    reflector = Reflector(
        calls, timings, on_change, once.failed, once.recovered, rand, log, prepare
    )
    await reflector.follow(store)
