"""Pure reduction of Kubernetes list and watch responses into the objects a source holds.

Theory of operation
-------------------
The Kubernetes API offers a consistent *list* (a snapshot stamped with the collection's
``metadata.resourceVersion``) and a *watch* that streams every change after a given
resourceVersion as ``ADDED``, ``MODIFIED`` and ``DELETED`` events, ``BOOKMARK`` events that
only move the resourceVersion forward, and ``ERROR`` events carrying a ``Status``
("Efficient detection of changes" in the Kubernetes API concepts; KEP-956 for bookmarks).
A client lists, then watches from the list's resourceVersion; when the watch ends it
watches again from the last resourceVersion it saw; when the server answers ``410 Gone``
(reason ``Expired``: that version was compacted away) it lists again. This is what
client-go's reflector and kopf's ``continuous_watch`` do.

``KindStore`` holds the objects of one kind (one resource type, all namespaces), keyed by
``(namespace, name)``, and the resourceVersion to resume from:

- ``replace(items, resource_version)`` takes a complete list. The list *is* the truth:
  objects it lacks are dropped and objects it has are kept, so a relist after missed
  events leaves neither a lost nor a phantom object, whatever happened in between.
- ``apply(event)`` reduces one watch event and says what the caller must do next
  (``Outcome``): go on, relist (``EXPIRED``), or give up on this stream (``FAILED``).
- Objects are normalised on the way in: list items have no ``kind``/``apiVersion``
  (the API server omits them for built-in types), so the store stamps its own;
  ``metadata.managedFields`` is dropped (it is large and meaningless here).

``WatchState`` holds one store per kind; it is *synced* once every kind has been listed
once, and ``objects()`` yields everything as ``(origin, object)`` pairs for
``mesh.sources.translate.translate``.

``JsonLines`` splits a watch response body into events as bytes arrive, ``list_page`` reads
one page of a list response, and ``failure_text`` makes one line of a failed call.
``backoff_delay`` gives the reconnect delay: exponential, capped, with full jitter from a
random number the caller passes in (a core reads no random state).

Pure: no IO, no clock, no random state.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Change",
    "JsonLines",
    "KindStore",
    "Outcome",
    "Resource",
    "WatchState",
    "backoff_delay",
    "failure_text",
    "list_page",
    "status_text",
]

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


@dataclass(frozen=True)
class Resource:
    """One resource type: what its objects are called and where they are listed."""

    kind: str
    api_version: str  # "v1" or "group/version"
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def path(self) -> str:
        """The collection across all namespaces (the client needs list and watch there)."""
        if self.group:
            return f"/apis/{self.api_version}/{self.plural}"
        return f"/api/{self.api_version}/{self.plural}"

    @property
    def title(self) -> str:
        """The resource as RBAC and ``kubectl`` name it: ``services``, ``serviceexports.g``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Outcome(enum.Enum):
    """What one watch event means for the caller."""

    CHANGED = "changed"  # the objects changed: translate again
    UNCHANGED = "unchanged"  # go on (a bookmark, or an event that changed nothing)
    EXPIRED = "expired"  # 410 Gone: the resourceVersion is too old; list again
    FAILED = "failed"  # any other error event, or an event that makes no sense


@dataclass(frozen=True)
class Change:
    """What a relist changed, by key: for logs and tests."""

    added: frozenset[ObjectKey] = frozenset()
    modified: frozenset[ObjectKey] = frozenset()
    deleted: frozenset[ObjectKey] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.deleted)


@dataclass
class KindStore:
    """The objects of one resource type, as last listed and watched."""

    resource: Resource
    objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    resource_version: str | None = None  # where the next watch starts; None: list first
    listed: bool = False
    last_error: str = ""  # the message of the last FAILED or EXPIRED event

    def replace(self, items: Iterable[Any], resource_version: str) -> Change:
        """Make a complete list the truth; return what it changed."""
        fresh: dict[ObjectKey, dict[str, Any]] = {}
        for item in items:
            key = _key(item)
            if key is not None:
                fresh[key] = self._normalise(item)
        old = self.objects
        change = Change(
            added=frozenset(fresh.keys() - old.keys()),
            modified=frozenset(k for k in fresh.keys() & old.keys() if fresh[k] != old[k]),
            deleted=frozenset(old.keys() - fresh.keys()),
        )
        self.objects = fresh
        self.resource_version = resource_version
        self.listed = True
        return change

    def apply(self, event: Any) -> Outcome:
        """Reduce one watch event (the decoded JSON line)."""
        if not isinstance(event, Mapping):
            return self._failed(f"watch event is not an object: {event!r:.200}")
        kind, body = event.get("type"), event.get("object")
        if kind == "ERROR":
            code = body.get("code") if isinstance(body, Mapping) else None
            self.last_error = status_text(body)
            return Outcome.EXPIRED if code == 410 else Outcome.FAILED
        if not isinstance(body, Mapping):
            return self._failed(f"{kind} event without an object")
        metadata = body.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        if kind == "BOOKMARK":
            if isinstance(version, str) and version:
                self.resource_version = version
            return Outcome.UNCHANGED
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return self._failed(f"unknown watch event type {kind!r}")
        key = _key(body)
        if key is None:
            return self._failed(f"{kind} event for an object without metadata.name")
        if isinstance(version, str) and version:
            self.resource_version = version
        if kind == "DELETED":
            return Outcome.CHANGED if self.objects.pop(key, None) is not None else Outcome.UNCHANGED
        obj = self._normalise(body)
        if self.objects.get(key) == obj:
            return Outcome.UNCHANGED
        self.objects[key] = obj
        return Outcome.CHANGED

    def _failed(self, reason: str) -> Outcome:
        self.last_error = reason
        return Outcome.FAILED

    def _normalise(self, item: Mapping[str, Any]) -> dict[str, Any]:
        obj = dict(item)
        obj["apiVersion"] = self.resource.api_version
        obj["kind"] = self.resource.kind
        metadata = obj.get("metadata")
        if isinstance(metadata, Mapping) and "managedFields" in metadata:
            obj["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
        return obj


class WatchState:
    """One ``KindStore`` per resource type; synced once each has been listed."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.stores = {r.kind: KindStore(r) for r in resources}

    @property
    def synced(self) -> bool:
        return all(store.listed for store in self.stores.values())

    def objects(self, origin: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Every object held, as ``(origin, object)`` in a stable order."""
        for kind in sorted(self.stores):
            store = self.stores[kind]
            for key in sorted(store.objects):
                yield origin, store.objects[key]


def _key(item: Any) -> ObjectKey | None:
    if not isinstance(item, Mapping):
        return None
    metadata = item.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return (namespace if isinstance(namespace, str) else "", name)


def status_text(status: Any) -> str:
    """One line from a ``Status`` object: ``410 Expired: too old resource version``."""
    if not isinstance(status, Mapping):
        return f"not a Status object: {status!r:.200}"
    parts = [str(status.get(k)) for k in ("code", "reason") if status.get(k) not in (None, "")]
    message = status.get("message")
    head = " ".join(parts) or "error"
    return f"{head}: {message}" if message else head


class JsonLines:
    """Splits a watch response body into its JSON values, one per line, as bytes arrive.

    Chunks may cut a line anywhere; ``end`` gives the last line if the body did not end
    with a newline. A line that is not JSON raises ValueError naming it.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[Any]:
        self._pending += chunk
        if b"\n" not in chunk:
            return []
        *lines, rest = bytes(self._pending).split(b"\n")
        self._pending = bytearray(rest)
        return [_json_line(line) for line in lines if line.strip()]

    def end(self) -> list[Any]:
        rest, self._pending = bytes(self._pending), bytearray()
        return [_json_line(rest)] if rest.strip() else []


def _json_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise ValueError(f"malformed watch event: {line[:200]!r}") from None


def list_page(body: Any, resource: Resource) -> tuple[list[Any], str, str]:
    """(items, resourceVersion, continue token) of one list page; ValueError if it is none."""
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"list of {resource.title}: not a list: {body!r:.200}")
    items = body.get("items")
    items = [] if items is None else items  # an empty list may come as null
    version, token = metadata.get("resourceVersion"), metadata.get("continue") or ""
    if not isinstance(items, list) or not isinstance(version, str) or not version:
        raise ValueError(f"list of {resource.title}: no items or no resourceVersion")
    return items, version, str(token)


_HINTS = {
    401: "the API server does not accept this agent's credentials",
    403: "RBAC does not grant it (see manifests/)",
    404: "is the resource's CRD installed?",
}


def failure_text(verb: str, resource: Resource, status: int, body: Any) -> str:
    """One line for a failed call: ``cannot list services: HTTP 403 Forbidden: ... (hint)``."""
    message = body.get("message") if isinstance(body, Mapping) else None
    reason = body.get("reason") if isinstance(body, Mapping) else None
    text = f"cannot {verb} {resource.title}: HTTP {status}"
    if reason:
        text += f" {reason}"
    if message:
        text += f": {message}"
    hint = _HINTS.get(status)
    return f"{text} ({hint})" if hint else text


def backoff_delay(attempt: int, initial_s: float, max_s: float, rand: float) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...), with jitter from ``rand`` in [0, 1).

    The ceiling doubles from ``initial_s`` up to ``max_s``; the delay is drawn from its upper
    half, so it never drops below half the ceiling ("equal jitter") yet peers that failed
    together spread out instead of reconnecting in step.
    """
    ceiling = min(max_s, initial_s * 2.0 ** max(0, min(attempt - 1, 32)))
    return ceiling / 2 + ceiling / 2 * min(max(rand, 0.0), 1.0)
