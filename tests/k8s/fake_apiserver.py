"""An in-process Kubernetes API server for tests: the real HTTP protocol, fake storage.

No kube-apiserver can be installed on these machines, so this aiohttp server speaks the
protocol a client sees (Kubernetes API concepts, "Efficient detection of changes"):

- HTTPS with a throw-away CA (``tls=True``, the default) and bearer-token authentication
  (401 without it), and RBAC read from ``manifests/`` (403 with a real ``Status`` for a
  verb or resource the shipped roles do not grant; see ``fake_rbac``);
- discovery: ``/api``, ``/apis``, ``/apis/GROUP``, ``/api/v1``, ``/apis/GROUP/VERSION``,
  ``/version``; a custom resource may be served in several versions (the MCS CRDs: v1beta1
  stored, v1alpha1 served too, ``fake_store.mcs_resources``), each client reading and
  writing it in the version of its path;
- list (``GET`` a collection, across all namespaces or in one) with ``resourceVersion``,
  ``resourceVersionMatch=Exact``, ``limit``/``continue`` pages that are one consistent
  snapshot, ``labelSelector`` (``=``, ``==``, ``!=``, exists, ``!``) and ``fieldSelector``
  (``metadata.name``, ``metadata.namespace``); items of built-in kinds carry no
  ``kind``/``apiVersion``, items of custom resources do, as with the real server;
- watch (``?watch=1``): a chunked stream of JSON lines, ADDED/MODIFIED/DELETED events
  after the ``resourceVersion`` asked for (or synthetic ADDED events for everything when it
  is unset or "0"), BOOKMARK events when ``allowWatchBookmarks`` is set (on demand, every
  ``bookmark_interval_s`` of quiet, and just before ``timeoutSeconds`` ends the stream);
  a compacted ``resourceVersion`` gets an ERROR event with a ``410 Expired`` Status in a
  200 response, as the watch cache answers (``expired_watch_http=True``: an HTTP 410);
- create (POST), get, update (PUT), patch (merge, JSON, apply; strategic without lists)
  and delete, on objects and on the ``status`` subresource, with 409 on a stale
  ``resourceVersion``; storage rules in ``fake_store``.

Test helpers (call them on the server's event loop; ``ThreadedApiServer`` does that for
tests that block): ``put``, ``remove``, ``load_yaml``, ``compact``, ``send_bookmarks``,
``close_watches`` (the server ends every stream, as at ``timeoutSeconds``),
``expire_watches`` (an ERROR 410 in every stream), ``inject`` (any event),
``stall_watches`` (open streams go silent, as a half-open connection does),
``stop``/``start`` (connections refused, then the same port again), ``kubeconfig(path)``;
``requests`` logs every request with its verb and answer, ``watchers`` the open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from tests.k8s.fake_rbac import Rbac
from tests.k8s.fake_store import (
    RESOURCES,
    ApiError,
    Obj,
    ResourceType,
    Store,
    StoredEvent,
    decode_continue,
    encode_continue,
    expired,
    object_path_key,
)
from tests.k8s.fake_tls import TlsFiles, make_tls, write_kubeconfig

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TOKEN = "fake-token-for-meshd"
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)
_BOOKMARK_BODIES: dict[str, Obj] = {  # zero values a typed object serialises with
    "namespaces": {"spec": {}, "status": {}},
    "services": {"spec": {}, "status": {"loadBalancer": {}}},
    "endpointslices": {"addressType": "", "endpoints": None},
    "leases": {"spec": {}},
}


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    verb: str = ""
    resource: str = ""  # plural or plural/subresource
    group: str = ""
    namespace: str = ""
    name: str = ""
    status: int = 0


@dataclass
class Watcher:
    resource: ResourceType
    namespace: str
    selector: Callable[[Obj], bool]
    bookmarks: bool
    request: web.Request
    version: str
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: bool = False


class FakeApiServer:
    def __init__(
        self,
        store: Store | None = None,
        rbac: Rbac | None = None,
        token: str = TOKEN,
        tls: bool = True,
        bookmark_interval_s: float | None = None,
        expired_watch_http: bool = False,
        default_watch_timeout_s: float = 1800.0,
    ) -> None:
        self.store = store or Store(RESOURCES)
        self.rbac = rbac if rbac is not None else Rbac.from_manifests(REPO / "manifests")
        self.token = token
        self.tls = tls
        self.bookmark_interval_s = bookmark_interval_s
        self.expired_watch_http = expired_watch_http
        self.default_watch_timeout_s = default_watch_timeout_s
        self.requests: list[RequestRecord] = []
        self.watchers: list[Watcher] = []
        self.port = 0
        self.tls_files: TlsFiles | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self.store.listeners.append(self._on_event)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again, on the same port once it has one)."""
        ssl_context = None
        if self.tls:
            if self.tls_files is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="fake-apiserver-")
                self.tls_files = make_tls(Path(self._tmp.name))
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.tls_files.cert, self.tls_files.key)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ssl_context)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Go away: open streams are cut, new connections refused, state kept."""
        for watcher in list(self.watchers):
            watcher.done.set()
            transport = watcher.request.transport
            if transport is not None:
                transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def kubeconfig(self, path: Path) -> Path:
        ca = self.tls_files.ca if self.tls_files is not None else None
        return write_kubeconfig(path, self.url, self.token, ca)

    # ------------------------------------------------------------------ test helpers

    def put(self, obj: Mapping[str, Any]) -> Obj:
        return self.store.put(obj)

    def remove(self, kind: str, namespace: str, name: str) -> Obj:
        return self.store.remove(kind, namespace, name)

    def load_yaml(self, text: str) -> list[Obj]:
        return [self.put(doc) for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]

    def compact(self) -> int:
        return self.store.compact()

    def send_bookmarks(self) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(("bookmark", None))

    def close_watches(self) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(("close", None))
            watcher.done.set()

    def expire_watches(self) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(("expire", None))

    def inject(self, plural: str, event: Obj) -> None:
        """Send ``event`` (any JSON object) as the next line of every watch of ``plural``."""
        for watcher in self.watchers:
            if watcher.resource.plural == plural:
                watcher.queue.put_nowait(("event", event))

    def stall_watches(self) -> None:
        for watcher in self.watchers:
            watcher.stalled = True

    def watch_requests(self, plural: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if r.verb == "watch" and plural in (None, r.resource)]

    # ------------------------------------------------------------------ dispatch

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(request.method, request.path, dict(request.query))
        self.requests.append(record)
        try:
            response = await self._dispatch(request, record)
        except ApiError as error:
            response = web.json_response(error.status(), status=error.code)
        if not record.status:
            record.status = response.status
        return response

    async def _dispatch(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        discovery = self._discovery(parts)
        if discovery is not None:
            return web.json_response(discovery)
        res, namespace, name, sub, version = self._parse(parts)
        query = request.query
        watching = query.get("watch") in ("1", "true")
        verb = _verb(request.method, bool(name), watching)
        record.verb, record.group, record.namespace, record.name = verb, res.group, namespace, name
        record.resource = f"{res.plural}/{sub}" if sub else res.plural
        if not self.rbac.allows(verb, res.group, record.resource, namespace, name):
            message = self.rbac.forbidden_message(verb, res.group, record.resource, namespace, name)
            details = {"name": name, "group": res.group, "kind": res.plural}
            raise ApiError(403, "Forbidden", message, {k: v for k, v in details.items() if v})
        if verb == "watch":
            return await self._watch(request, res, namespace, record, version)
        if verb == "list":
            return web.json_response(self._list(res, namespace, query, version))
        body = (
            await _body(request) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
        )

        def answer(obj: Obj, status: int = 200) -> web.Response:
            return web.json_response(res.served_as(obj, version), status=status)

        if verb == "get":
            return answer(self.store.get(res, namespace, name))
        if verb == "create":
            return answer(self.store.create(res, namespace, body), 201)
        if verb == "update":
            return answer(self.store.update(res, namespace, name, body, sub))
        if verb == "patch":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            manager = query.get("fieldManager")
            return answer(self.store.patch(res, namespace, name, content_type, body, sub, manager))
        if verb == "delete":
            return answer(self.store.delete(res, namespace, name, body))
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported by the fake API server")

    def _parse(self, parts: list[str]) -> tuple[ResourceType, str, str, str, str]:
        """(resource, namespace, name, subresource, version) of a resource path, or 404."""
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, rest = parts[1], parts[3:]
        else:
            raise _no_such_path()
        version = parts[1] if group == "" else parts[2]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif rest[:1] == ["namespaces"] and group == "":
            pass  # the namespaces resource itself
        for res in self.store.resources.values():
            if res.group == group and version in res.versions and rest and res.plural == rest[0]:
                break
        else:
            raise _no_such_path()
        if (namespace and not res.namespaced) or len(rest) > 3:
            raise _no_such_path()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in res.subresources:
            raise _no_such_path()
        return res, namespace, name, sub, version

    # ------------------------------------------------------------------ list

    def _list(
        self, res: ResourceType, namespace: str, query: Mapping[str, str], version: str
    ) -> Obj:
        limit = _int(query.get("limit", "0") or "0", "limit")
        token, start = query.get("continue", ""), ""
        rv_text, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
        if token:
            at, start = decode_continue(token)
            if at < self.store.compacted:
                raise expired(CONTINUE_TOO_OLD)
        elif match == "Exact" and rv_text:
            at = _int(rv_text, "resourceVersion")
        else:
            wanted = _int(rv_text, "resourceVersion") if rv_text else 0
            if wanted > self.store.rv:
                message = f"Too large resource version: {wanted}, current: {self.store.rv}"
                cause = {
                    "reason": "ResourceVersionTooLarge",
                    "message": "Too large resource version",
                }
                details = {"causes": [cause], "retryAfterSeconds": 1}
                raise ApiError(504, "Timeout", message, details)
            at = self.store.rv
        selector = _selector(query)
        items = sorted(
            (
                obj
                for obj in self.store.items(res, at if at != self.store.rv else None)
                if (not namespace or obj["metadata"].get("namespace") == namespace)
                and selector(obj)
            ),
            key=object_path_key,
        )
        items = [obj for obj in items if object_path_key(obj) >= start]
        metadata: Obj = {"resourceVersion": str(at)}
        if limit and len(items) > limit:
            rest = items[limit:]
            items = items[:limit]
            metadata["continue"] = encode_continue(at, object_path_key(items[-1]))
            metadata["remainingItemCount"] = len(rest)
        items = [res.served_as(obj, version) for obj in items]
        if not res.custom:
            for obj in items:
                obj.pop("kind", None)
                obj.pop("apiVersion", None)
        return {
            "kind": res.list_kind,
            "apiVersion": res.api_version_of(version),
            "metadata": metadata,
            "items": items,
        }

    # ------------------------------------------------------------------ watch

    async def _watch(
        self,
        request: web.Request,
        res: ResourceType,
        namespace: str,
        record: RequestRecord,
        version: str,
    ) -> web.StreamResponse:
        query = request.query
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout_s = (
            float(_int(query["timeoutSeconds"], "timeoutSeconds"))
            if "timeoutSeconds" in query
            else self.default_watch_timeout_s
        )
        rv_text = query.get("resourceVersion", "")
        selector = _selector(query)
        watcher = Watcher(res, namespace, selector, bookmarks, request, version)
        try:
            if rv_text in ("", "0"):
                initial = [("ADDED", obj) for obj in self.store.items(res) if selector(obj)]
            else:
                since = _int(rv_text, "resourceVersion")
                initial = [
                    v
                    for e in self.store.events_since(res, since)
                    if (v := self._visible(watcher, e))
                ]
        except ApiError as error:
            if error.code != 410 or self.expired_watch_http:
                raise
            response = await _stream(request)
            await response.write(_line({"type": "ERROR", "object": error.status()}))
            await response.write_eof()
            return response
        initial = [(t, o) for t, o in initial if _in_scope(watcher, o)]
        self.watchers.append(watcher)
        try:
            response = await _stream(request)
            record.status = 200
            for event_type, obj in initial:
                served = res.served_as(obj, version)
                await response.write(_line({"type": event_type, "object": served}))
            await self._pump(watcher, response, asyncio.get_running_loop().time() + timeout_s)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.watchers.remove(watcher)
        return response

    async def _pump(self, watcher: Watcher, response: web.StreamResponse, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not watcher.done.is_set() or not watcher.queue.empty():
            transport = watcher.request.transport
            if transport is None or transport.is_closing():
                return
            now = loop.time()
            if now >= deadline:
                if watcher.bookmarks and not watcher.stalled:
                    await response.write(self._bookmark(watcher))
                return
            if watcher.stalled:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.done.wait(), min(0.2, deadline - now))
                continue
            interval = self.bookmark_interval_s
            if interval is not None and watcher.bookmarks and now - quiet_since >= interval:
                await response.write(self._bookmark(watcher))
                quiet_since = now
            try:
                kind, item = await asyncio.wait_for(watcher.queue.get(), min(0.2, deadline - now))
            except TimeoutError:
                continue
            if watcher.stalled:
                continue  # stalled while waiting: a half-open connection delivers nothing
            if kind == "close" or (kind == "bookmark" and not watcher.bookmarks):
                if kind == "close":
                    return
                continue
            if kind == "expire":
                text = f"too old resource version: {self.store.compacted} ({self.store.rv})"
                status = expired(text)
                await response.write(_line({"type": "ERROR", "object": status.status()}))
                return
            line = self._bookmark(watcher) if kind == "bookmark" else _line(item)
            await response.write(line)
            quiet_since = loop.time()

    def _on_event(self, event: StoredEvent) -> None:
        for watcher in self.watchers:
            visible = self._visible(watcher, event)
            if visible is not None and _in_scope(watcher, visible[1]):
                served = watcher.resource.served_as(visible[1], watcher.version)
                watcher.queue.put_nowait(("event", {"type": visible[0], "object": served}))

    @staticmethod
    def _visible(watcher: Watcher, event: StoredEvent) -> tuple[str, Obj] | None:
        """The event as a watcher with a selector sees it (an object leaving it: DELETED)."""
        if event.resource is not watcher.resource:
            return None
        now = event.type != "DELETED" and watcher.selector(event.obj)
        before = event.prev is not None and watcher.selector(event.prev)
        if event.type == "DELETED":
            return ("DELETED", event.obj) if watcher.selector(event.obj) else None
        if now and before:
            return ("MODIFIED", event.obj)
        if now:
            return ("ADDED", event.obj)
        return ("DELETED", event.obj) if before else None

    def _bookmark(self, watcher: Watcher) -> bytes:
        res = watcher.resource
        obj: Obj = {"kind": res.kind, "apiVersion": res.api_version_of(watcher.version)}
        obj["metadata"] = {"resourceVersion": str(self.store.rv)}
        if not res.custom:
            obj["metadata"]["creationTimestamp"] = None
            obj.update(json.loads(json.dumps(_BOOKMARK_BODIES.get(res.plural, {}))))
        return _line({"type": "BOOKMARK", "object": obj})

    # ------------------------------------------------------------------ discovery

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            return {
                "major": "1",
                "minor": "30",
                "gitVersion": "v1.30.0-fake",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            address = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [address],
            }
        groups: dict[str, list[str]] = {}
        for res in self.store.resources.values():
            for version in res.versions if res.group else ():
                if version not in groups.setdefault(res.group, []):
                    groups[res.group].append(version)
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group_doc(g, vs) for g, vs in groups.items()],
            }
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in groups:
                raise _no_such_path()
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                **_group_doc(parts[1], groups[parts[1]]),
            }
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if len(parts) == 3 and parts[0] == "apis":
            found = self._resource_list(parts[1], parts[2])
            if not found["resources"]:
                raise _no_such_path()
            return found
        return None

    def _resource_list(self, group: str, version: str) -> Obj:
        resources: list[Obj] = []
        for res in self.store.resources.values():
            if res.group == group and version in res.versions:
                verbs = [
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ]
                doc = {
                    "name": res.plural,
                    "singularName": res.singular,
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": verbs,
                }
                if res.short_names:
                    doc["shortNames"] = list(res.short_names)
                resources.append(doc)
                for sub in res.subresources:
                    resources.append(
                        {
                            "name": f"{res.plural}/{sub}",
                            "singularName": "",
                            "namespaced": res.namespaced,
                            "kind": res.kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }


class ThreadedApiServer:
    """A ``FakeApiServer`` on its own event loop thread, for tests that block (processes)."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: FakeApiServer

    def __enter__(self) -> ThreadedApiServer:
        self._thread.start()
        self.server = self.run(self._create)
        return self

    async def _create(self) -> FakeApiServer:
        server = FakeApiServer(**self._kwargs)
        await server.start()
        return server

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.run(self.server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def run(self, coroutine: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine(), self._loop).result(timeout_s)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper)


# ---------------------------------------------------------------------- helpers


def _verb(method: str, has_name: bool, watching: bool) -> str:
    if method == "GET":
        if watching:
            return "watch"
        return "get" if has_name else "list"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method == "DELETE" and not has_name:
        return "deletecollection"
    return verbs.get(method, method.lower())


def _no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{what}: Invalid value: {text!r}") from None


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        if request.headers.get("Content-Type", "").startswith("application/apply-patch+yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError):
        raise ApiError(400, "BadRequest", "the body of the request could not be decoded") from None


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _in_scope(watcher: Watcher, obj: Obj) -> bool:
    return not watcher.namespace or obj.get("metadata", {}).get("namespace") == watcher.namespace


def _selector(query: Mapping[str, str]) -> Callable[[Obj], bool]:
    tests: list[Callable[[Obj], bool]] = []
    for term in filter(None, (t.strip() for t in query.get("labelSelector", "").split(","))):
        tests.append(_label_term(term))
    for term in filter(None, (t.strip() for t in query.get("fieldSelector", "").split(","))):
        tests.append(_field_term(term))
    return lambda obj: all(test(obj) for test in tests)


def _label_term(term: str) -> Callable[[Obj], bool]:
    def labels(obj: Obj) -> dict[str, str]:
        return dict(obj.get("metadata", {}).get("labels") or {})

    for op in ("!=", "==", "="):
        if op in term:
            key, value = (s.strip() for s in term.split(op, 1))
            if op == "!=":
                return lambda obj: labels(obj).get(key) != value
            return lambda obj: labels(obj).get(key) == value
    if " in " in term or " notin " in term:
        message = f"fake apiserver: set-based selector {term!r} not implemented"
        raise ApiError(400, "BadRequest", message)
    if term.startswith("!"):
        return lambda obj: term[1:] not in labels(obj)
    return lambda obj: term in labels(obj)


def _field_term(term: str) -> Callable[[Obj], bool]:
    negate = "!=" in term
    key, value = (s.strip() for s in term.replace("!=", "=").replace("==", "=").split("=", 1))
    if key not in ("metadata.name", "metadata.namespace"):
        message = f'"{key}" is not a known field selector: only metadata.name, metadata.namespace'
        raise ApiError(400, "BadRequest", message)
    field_name = key.split(".")[1]
    return lambda obj: (obj.get("metadata", {}).get(field_name) == value) != negate


def _group_doc(group: str, versions: list[str]) -> Obj:
    docs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": docs, "preferredVersion": docs[0]}
