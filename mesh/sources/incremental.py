"""Translation kept file by file: an edit of one file costs what that file's objects touch.

``mesh.sources.translate.translate_exports`` reads every object of every file on every
call: with the manifests scanner's cache an unchanged service is not translated again, but
each call still identifies, indexes and looks up every object (about 14 ms for 1,001
services, on each edit of a one-service file; ``bench/RESULTS.md``, the busy tail). An
``IncrementalTranslation`` holds the outcome of the previous call and redoes only what the
changed files reach.

Theory of operation. ``update(files)`` takes every file's objects, ``{origin: [body, ...]}``,
with the same contract as the scanner's cache: a file whose list is the very same object as
last time is unchanged, and a body is never mutated once given (so a body that is the very
same object as last time, in the same file, is identified from what was kept). It gives
exactly what ``translate_exports`` gives for the same objects in the same order (a seeded
property test checks this, edit after edit, problems and verdicts included). What it keeps:

- per file: each object as ``_identify`` made it (an ``_Object`` or None), the problems
  that made, and the namespaces it names;
- per identity ``(kind, namespace, name)``: the copies by origin, in file order. The
  winner is the first copy of the origin that sorts first (as the full translation's stable
  sort by origin makes it); every other copy is one "also defined" problem;
- the winning EndpointSlices by the service they name (or their missing-label problem);
- per exported service: its outcome (export, verdict, problems) from ``_export_one``.

A changed file withdraws its objects and adds the new ones; every identity it touched is
judged again; a service is translated again when its Service, its ServiceExport or one of
its winning slices changed winner. The result's services and verdicts are in key order,
as the full translation's; problems are sorted. Nothing here raises on bad input: the
judging is the full translation's own (``_identify``, ``_slice_owner``, ``_export_one``).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from mesh.model import ExportedService, LocalExports, ServiceKey
from mesh.sources.documents import SourceProblem
from mesh.sources.translate import (
    ExportVerdict,
    Translation,
    _export_one,
    _identify,
    _Object,
    _Outcome,
    _slice_owner,
)

__all__ = ["IncrementalTranslation"]

_Identity = tuple[str, str, str]  # (kind, namespace, name)
_Name = tuple[str, str]  # (namespace, name) of a service
# One object of a file as identified: its body, the object (None: not one of ours), the
# problems identifying it made, the namespaces it names.
_Seen = tuple[Any, "_Object | None", tuple[SourceProblem, ...], tuple[str, ...]]


class _File:
    """One file's objects as identified, in file order, and the list they came from."""

    def __init__(self, bodies: Sequence[Any], seen: list[_Seen]) -> None:
        self.bodies = bodies  # held: its identity says "unchanged", its bodies' ids stay
        self.seen = seen


def _identify_one(origin: str, body: Any) -> _Seen:
    problems: list[SourceProblem] = []
    names: set[str] = set()
    obj = _identify(origin, body, names, problems)
    if obj is not None and obj.kind == "Namespace":
        names.add(obj.name)  # a Namespace object makes its namespace (winner or copy alike)
    return body, obj, tuple(problems), tuple(sorted(names))


class IncrementalTranslation:
    """``translate_exports`` of the files given to ``update``, redone only where they
    changed (see the module docstring)."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._namespaces: Counter[str] = Counter()
        self._copies: dict[_Identity, dict[str, list[_Object]]] = {}
        self._winners: dict[_Identity, _Object] = {}
        self._duplicates: dict[_Identity, list[SourceProblem]] = {}
        self._slices: dict[_Name, dict[str, _Object]] = {}  # by slice name
        self._unowned: dict[_Identity, SourceProblem] = {}  # winning slices without owner
        self._outcomes: dict[_Name, _Outcome] = {}
        self._found: dict[_Name, tuple[SourceProblem, ...]] = {}  # services with problems
        self._file_problems: dict[str, list[SourceProblem]] = {}  # identifying, per file
        self._services: dict[ServiceKey, ExportedService] = {}
        self._verdicts: dict[ServiceKey, ExportVerdict] = {}
        self._keys: list[_Name] = []  # exported names (with a ServiceExport), sorted
        self._last: Translation | None = None

    def update(self, files: Mapping[str, Sequence[Any]]) -> Translation:
        """The translation of ``files`` (``{origin: bodies}``); the very same object as
        last time when no file changed."""
        changed = [origin for origin in self._files if origin not in files]
        for origin, bodies in files.items():
            held = self._files.get(origin)
            if held is None or held.bodies is not bodies:
                changed.append(origin)
        if not changed and self._last is not None:
            return self._last
        touched: set[_Identity] = set()
        for origin in changed:
            self._replace(origin, files.get(origin), touched)
        dirty: set[_Name] = set()
        for identity in touched:
            self._judge(identity, dirty)
        reordered = False  # a service or a verdict came or went: rebuild in key order
        for name in dirty:
            before = self._outcomes.get(name)
            self._translate_service(name)
            after = self._outcomes.get(name)
            if before is None or after is None:
                reordered |= before is not after
            else:
                reordered |= (before[0] is None) != (after[0] is None)
        self._last = self._result(dirty, reordered)
        return self._last

    def _replace(self, origin: str, bodies: Sequence[Any] | None, touched: set[_Identity]) -> None:
        """Withdraw ``origin``'s old objects and add ``bodies`` (None: the file is gone)."""
        old = self._files.pop(origin, None)
        self._file_problems.pop(origin, None)
        kept: dict[int, _Seen] = {}
        if old is not None:
            for seen in old.seen:
                kept.setdefault(id(seen[0]), seen)
                self._namespaces.subtract(seen[3])
                if seen[1] is not None:
                    identity = _identity(seen[1])
                    copies = self._copies.get(identity)  # gone: a second copy in this file
                    if copies is not None:
                        copies.pop(origin, None)
                        if not copies:
                            del self._copies[identity]
                    touched.add(identity)
        if bodies is None:
            self._namespaces = +self._namespaces  # drop the names no object names any more
            return
        fresh: list[_Seen] = []
        for body in bodies:
            hit = kept.get(id(body))
            seen = hit if hit is not None and hit[0] is body else _identify_one(origin, body)
            fresh.append(seen)
            self._namespaces.update(seen[3])
            if seen[1] is not None:
                identity = _identity(seen[1])
                self._copies.setdefault(identity, {}).setdefault(origin, []).append(seen[1])
                touched.add(identity)
        self._namespaces = +self._namespaces
        self._files[origin] = _File(bodies, fresh)
        found = [problem for seen in fresh for problem in seen[2]]
        if found:
            self._file_problems[origin] = found

    def _judge(self, identity: _Identity, dirty: set[_Name]) -> None:
        """Pick ``identity``'s winner again; mark the services whose inputs changed."""
        copies = self._copies.get(identity)
        old = self._winners.get(identity)
        new: _Object | None = None
        self._duplicates.pop(identity, None)
        if copies:
            ordered = [obj for origin in sorted(copies) for obj in copies[origin]]
            new = ordered[0]
            if len(ordered) > 1:
                where = f"also defined in {new.origin}; this copy is ignored"
                self._duplicates[identity] = [obj.problem(where) for obj in ordered[1:]]
            self._winners[identity] = new
        else:
            self._winners.pop(identity, None)
        if new is old:
            return
        kind, namespace, name = identity
        if kind in ("Service", "ServiceExport"):
            dirty.add((namespace, name))
            if kind == "ServiceExport":
                self._index_export((namespace, name), new is not None)
        elif kind == "EndpointSlice":
            self._unowned.pop(identity, None)
            for obj in (old, new):
                if obj is None:
                    continue
                problems: list[SourceProblem] = []
                owner = _slice_owner(obj, problems)
                if owner is None:
                    if obj is new:
                        self._unowned[identity] = problems[0]
                    continue
                slices = self._slices.setdefault((namespace, owner), {})
                if obj is old:
                    slices.pop(name, None)
                else:
                    slices[name] = obj
                if not slices:
                    del self._slices[(namespace, owner)]
                dirty.add((namespace, owner))

    def _index_export(self, name: _Name, present: bool) -> None:
        at = bisect.bisect_left(self._keys, name)
        held = at < len(self._keys) and self._keys[at] == name
        if present and not held:
            self._keys.insert(at, name)
        elif not present and held:
            del self._keys[at]

    def _translate_service(self, name: _Name) -> None:
        """``name``'s outcome again, as ``translate._export`` makes it."""
        namespace, short = name
        export = self._winners.get(("ServiceExport", namespace, short))
        if export is None:
            self._outcomes.pop(name, None)
            return
        service = self._winners.get(("Service", namespace, short))
        if service is None:
            problem = SourceProblem(export.origin, f"{export.ref} has no Service")
            message = f"there is no Service {namespace}/{short} in this cluster"
            self._outcomes[name] = (None, ExportVerdict(False, "NoService", message), (problem,))
            return
        slices = list(self._slices.get(name, {}).values())
        self._outcomes[name] = _export_one([service, export, *slices])

    def _result(self, dirty: set[_Name], reordered: bool) -> Translation:
        """The translation now. The dictionaries given out before are never changed: each
        result has its own (a copy costs far less than a pass over every service)."""
        if reordered:
            services: dict[ServiceKey, ExportedService] = {}
            verdicts: dict[ServiceKey, ExportVerdict] = {}
            for name in self._keys:
                exported, verdict, _ = self._outcomes[name]
                verdicts[ServiceKey(*name)] = verdict
                if exported is not None:
                    services[exported.key] = exported
        else:
            services, verdicts = self._services.copy(), self._verdicts.copy()
            for name in dirty:
                if (outcome := self._outcomes.get(name)) is not None:
                    key = ServiceKey(*name)
                    verdicts[key] = outcome[1]
                    if outcome[0] is not None:
                        services[key] = outcome[0]
        self._services, self._verdicts = services, verdicts
        for name in dirty:
            outcome = self._outcomes.get(name)
            if outcome is not None and outcome[2]:
                self._found[name] = outcome[2]
            else:
                self._found.pop(name, None)
        problems = [p for found in self._file_problems.values() for p in found]
        problems += [p for found in self._duplicates.values() for p in found]
        problems += self._unowned.values()
        problems += [p for found in self._found.values() for p in found]
        exports = LocalExports(
            namespaces=frozenset(self._namespaces) | {"default"},
            services=MappingProxyType(services),  # never changed: the next copies it
        )
        return Translation(exports, sorted(problems), verdicts.copy())  # the caller's own


def _identity(obj: _Object) -> _Identity:
    return (obj.kind, obj.namespace, obj.name)
