"""What a writer knows it wrote, until the watch it reads from shows it: read-your-writes.

A writer reads objects from a watch-fed store and writes back. Between a write and the
watch event that reports it, the store still holds the object as it was; a writer that
planned from it again would repeat the write, with a stale resourceVersion (a 409). The
overlay closes that gap: after a write, ``put(key, answer)`` records the object the API
answered (``None`` for a delete); ``view(key, stored, now)`` then gives the written object
instead of the stored one until the store catches up.

Rules: a watch delivers one object's events in resourceVersion order, so the store shows
exactly the written resourceVersion before anything later; an entry is dropped when the
store shows that resourceVersion (or, for a delete, no object at all). A relist can skip
over it, so an entry also expires after ``ttl_s``; the store is the truth again then, and
a write planned from a stale view gets a 409 and a fresh read, never a lost update.

Pure: ``now`` comes in; the adapter owns the clock.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Overlay", "resource_version"]

K = TypeVar("K", bound=Hashable)


def resource_version(obj: Mapping[str, Any] | None) -> str:
    meta = obj.get("metadata") if obj is not None else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""


@dataclass(frozen=True)
class _Entry:
    obj: Mapping[str, Any] | None  # None: deleted
    until: float


class Overlay(Generic[K]):
    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[K, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, obj: Mapping[str, Any] | None, now: float) -> None:
        """``obj`` is what the API answered to our write (``None``: we deleted it)."""
        self._entries[key] = _Entry(obj, now + self.ttl_s)

    def pending(self) -> list[K]:
        return list(self._entries)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def view(
        self, key: K, stored: Mapping[str, Any] | None, now: float
    ) -> Mapping[str, Any] | None:
        """The object as the writer should see it: its own write until the store has it."""
        entry = self._entries.get(key)
        if entry is None:
            return stored
        caught_up = (
            stored is None
            if entry.obj is None
            else stored is not None and resource_version(stored) == resource_version(entry.obj)
        )
        if caught_up or now >= entry.until:
            del self._entries[key]
            return stored
        return entry.obj
