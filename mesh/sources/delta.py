"""What changed between two ``LocalExports``, in pieces small enough to apply between two
turns of an event loop (pure).

The manifests source scans in a worker process (``mesh.sources.offload``) and sends the
agent only what changed since its previous scan: ``delta`` gives the services added or
different and the keys gone, and ``chunks`` cuts the changed services into pieces of
bounded cost (``CHUNK_COST``: a service counts one, plus one per port and per endpoint,
which is about what it costs to unpickle and to compare). The receiving side applies
piece after piece with ``Merge``, letting its loop turn in between, and delivers one new
``LocalExports`` at the end, so the agent never sees half of a scan.

Unchanged services cost nothing on the receiving side: they are never sent, and the new
mapping holds the very same objects as the previous one (``mesh.ring.catalog.diff``
compares by identity first). After a full delta (a new worker, which knows nothing of what
was delivered before), ``Merge`` keeps the held object of every service that is equal to
the one received, for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mesh.model import ExportedService, LocalExports, ServiceKey

__all__ = ["CHUNK_COST", "Delta", "Merge", "chunks", "cost", "delta"]

CHUNK_COST = 1000  # a piece's cost: services + ports + endpoints (about 10 ms to unpickle)


@dataclass(frozen=True, slots=True)
class Delta:
    """``new`` relative to ``old``: the namespaces, the services added or changed, the keys
    removed. ``full``: there was no ``old``; every service is in ``changed``."""

    namespaces: frozenset[str]
    changed: list[ExportedService]
    removed: list[ServiceKey]
    full: bool

    def __bool__(self) -> bool:
        return self.full or bool(self.changed) or bool(self.removed)


def delta(old: LocalExports | None, new: LocalExports) -> Delta:
    """What turns ``old`` into ``new`` (``old`` None: everything, a full delta)."""
    if old is None:
        return Delta(new.namespaces, list(new.services.values()), [], full=True)
    if old is new:  # the scan found nothing changed: the common case, one poll in many
        return Delta(new.namespaces, [], [], full=False)
    held = old.services
    if len(held) == len(new.services):
        # The scanner's translation keeps the key order and the very same key objects from
        # one scan to the next: then a walk side by side finds what changed without hashing
        # a key (hashing every ServiceKey was most of an idle edit's cost in the worker).
        walked: list[ExportedService] = []
        for (key, was), (new_key, now) in zip(held.items(), new.services.items(), strict=True):
            if new_key is not key:
                break
            if was is not now and was != now:
                walked.append(now)
        else:
            return Delta(new.namespaces, walked, [], full=False)
    changed = [
        service
        for key, service in new.services.items()
        if (before := held.get(key)) is not service and before != service
    ]
    removed = [key for key in held if key not in new.services]
    return Delta(new.namespaces, changed, removed, full=False)


def cost(service: ExportedService) -> int:
    return 1 + len(service.ports) + len(service.endpoints)


def chunks(
    services: Iterable[ExportedService], budget: int = CHUNK_COST
) -> Iterator[list[ExportedService]]:
    """``services`` in consecutive pieces of at most ``budget`` cost each (a service that
    costs more than ``budget`` alone is a piece by itself)."""
    piece: list[ExportedService] = []
    spent = 0
    for service in services:
        price = cost(service)
        if piece and spent + price > budget:
            yield piece
            piece, spent = [], 0
        piece.append(service)
        spent += price
    if piece:
        yield piece


class Merge:
    """Builds the exports a delta leads to from the ``held`` ones, piece by piece: ``add``
    each piece of changed services, then take ``result``. ``changed`` says whether the
    result differs from ``held`` at all. Nothing is copied until something changes."""

    def __init__(
        self,
        held: LocalExports | None,
        namespaces: frozenset[str],
        removed: Iterable[ServiceKey],
        full: bool,
    ) -> None:
        self._held: Mapping[ServiceKey, ExportedService] = {} if held is None else held.services
        self._full = full
        self._namespaces = namespaces
        self._services: dict[ServiceKey, ExportedService] | None = {} if full else None
        self.changed = held is None or held.namespaces != namespaces
        for key in removed:
            if key in self._held:
                self._own().pop(key, None)
                self.changed = True

    def _own(self) -> dict[ServiceKey, ExportedService]:
        """The services being built: a copy of the held ones, made at the first change."""
        if self._services is None:
            held = self._held
            # A dict's (or a read-only view's) own copy keeps the hashes: no key is hashed.
            copied = held.copy() if isinstance(held, dict | MappingProxyType) else dict(held)
            self._services = copied
        return self._services

    def add(self, piece: Iterable[ExportedService]) -> None:
        held = self._held
        for service in piece:
            before = held.get(service.key)
            if before is not None and (before is service or before == service):
                if self._services is not None:  # after a full delta: the very object held
                    self._services[service.key] = before
                continue
            self.changed = True
            self._own()[service.key] = service

    def result(self) -> LocalExports:
        services = self._own()
        if len(services) != len(self._held):
            self.changed = True  # after a full delta: some held service is gone
        return LocalExports(self._namespaces, MappingProxyType(services))
