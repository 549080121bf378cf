"""The manifests source: a directory of Kubernetes YAML, watched by polling.

Theory of operation
-------------------
The directory holds the objects the Kubernetes API would hold (see ``mesh.sources.translate``
for the rules). A *scan* lists every ``*.yaml``, ``*.yml`` and ``*.json`` file below it
(``os.walk`` following symbolic links, so a ConfigMap volume's top-level links are read,
while every name starting with ``.`` is skipped: editor swap files, ``.git``, and the
ConfigMap's own ``..data`` and ``..<timestamp>`` directories), parses each file, and
translates all the objects together into one ``LocalExports``.

Each file is cached under its ``(mtime_ns, size, inode)``, as ``stat`` reports them after
following links: an unchanged file is never read again, and when nothing changed at all the
translation is skipped too, so a poll of an idle directory costs one ``stat`` per file.

Bad input loses nothing:

- a problem in one file never affects the objects of another;
- a file that cannot be read (permissions, not UTF-8, vanished while being read) or is not
  YAML at all keeps the objects of its last good version, so a half-saved edit does not
  withdraw a service from the whole clusterset; deleting a file does withdraw its objects;
- when the directory itself vanishes or cannot be listed, ``run`` keeps the last exports
  (it delivers nothing) until the directory is back.

Problems go to ``on_problem`` (by default a warning on the ``meshd.manifests`` logger) once
each: a problem present in the previous scan is not reported again, unless its file changed
since. ``problems`` always holds the problems of the latest scan, for a status page.

``run`` polls every ``poll_interval_s`` and calls ``on_change`` with the first exports and
then whenever they differ from the last ones delivered. Scans run in the event loop: they
are a handful of ``stat`` calls, and the parsing of the files that changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.model import LocalExports
from mesh.sources.translate import (
    ManifestSyntaxError,
    SourceProblem,
    check_documents,
    load_stream,
    parse_documents,
    translate,
)

__all__ = [
    "ManifestDirectoryError",
    "ManifestSource",
    "SourceProblem",
    "parse_documents",
    "translate",
]

log = logging.getLogger("meshd.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 16 * 1024 * 1024

_StatKey = tuple[int, int, int]
_NO_OBJECTS: list[dict[str, Any]] = []  # shared, never mutated: keeps "unchanged" cheap


class ManifestDirectoryError(Exception):
    """The manifest directory does not exist, is not a directory, or cannot be listed."""


class _UnreadableError(Exception):
    """A file could not be read as text; the message says why."""


@dataclass(frozen=True)
class _FileEntry:
    """One file as last scanned. ``key`` is None when it could not be read (retry it)."""

    key: _StatKey | None
    objects: list[dict[str, Any]]
    problems: list[SourceProblem]


def _log_problem(problem: SourceProblem) -> None:
    log.warning("%s", problem)


class ManifestSource:
    """Scans ``directory`` for manifests and reports what it exports."""

    def __init__(
        self,
        directory: Path,
        on_change: Callable[[LocalExports], None],
        on_problem: Callable[[SourceProblem], None] | None = None,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.directory = Path(directory)
        self.poll_interval_s = poll_interval_s
        self.problems: list[SourceProblem] = []
        self._on_change = on_change
        self._on_problem = on_problem if on_problem is not None else _log_problem
        self._files: dict[str, _FileEntry] = {}
        self._reported: set[SourceProblem] = set()
        # The input of the last translation (held, so that identity comparison is sound).
        self._last_input: list[tuple[str, list[dict[str, Any]]]] | None = None
        self._last_result: tuple[LocalExports, list[SourceProblem]] | None = None

    def load(self) -> LocalExports:
        """Scan now; report new problems; return the exports. Raises ManifestDirectoryError."""
        exports, problems = self._scan()
        self._publish(problems)
        return exports

    async def run(self) -> None:
        """Scan forever, delivering exports when they change; cancel to stop.

        An exception raised by ``on_change`` or ``on_problem`` ends ``run`` with it.
        """
        delivered: LocalExports | None = None
        while True:
            try:
                exports = self.load()
            except ManifestDirectoryError as exc:
                # Keep the last exports: a vanished directory withdraws nothing.
                self._publish([SourceProblem(str(self.directory), str(exc))])
            else:
                if delivered is None or exports != delivered:
                    delivered = exports
                    self._on_change(exports)
            await asyncio.sleep(self.poll_interval_s)

    # ------------------------------------------------------------------ scanning

    def _scan(self) -> tuple[LocalExports, list[SourceProblem]]:
        paths, problems = self._list_files()
        files: dict[str, _FileEntry] = {}
        for path in paths:
            old = self._files.get(path)
            entry = self._refresh(path, old)
            if entry.key is not None and (old is None or old.key != entry.key):
                self._forget_reported(path)  # changed: its problems may be reported again
            files[path] = entry
        self._files = files
        for entry in files.values():
            problems.extend(entry.problems)
        exports, translation_problems = self._translate(files)
        return exports, problems + translation_problems

    def _translate(self, files: dict[str, _FileEntry]) -> tuple[LocalExports, list[SourceProblem]]:
        """Translate the objects of every file, unless they are the very same as last time."""
        current = [(path, entry.objects) for path, entry in files.items()]
        last = self._last_input
        if (
            self._last_result is not None
            and last is not None
            and len(last) == len(current)
            and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(last, current, strict=True))
        ):
            return self._last_result
        result = translate((path, obj) for path, objects in current for obj in objects)
        self._last_input, self._last_result = current, result
        return result

    def _list_files(self) -> tuple[list[str], list[SourceProblem]]:
        """The manifest files, sorted, and the problems met while listing them.

        A subdirectory that cannot be listed keeps the files cached from below it.
        """
        top = os.fspath(self.directory)
        if not os.path.isdir(top):
            raise ManifestDirectoryError(
                f"manifest directory {top} does not exist or is not a directory"
            )
        found, errors = _walk(top)
        problems = []
        for error in errors:
            where = os.fspath(error.filename) if error.filename is not None else top
            if where == top:
                raise ManifestDirectoryError(
                    f"cannot list manifest directory {top}: {error.strerror}"
                )
            problems.append(SourceProblem(where, f"cannot list directory: {error.strerror}"))
            found.update(p for p in self._files if p.startswith(where + os.sep))
        return sorted(found), problems

    def _refresh(self, path: str, old: _FileEntry | None) -> _FileEntry:
        """The entry of one file: the cached one when unchanged, else read and parsed."""
        kept = old.objects if old is not None else _NO_OBJECTS
        try:
            info = os.stat(path)
            key = (info.st_mtime_ns, info.st_size, info.st_ino)
            if old is not None and old.key == key:
                return old
            text = _read_text(path, info)
        except _UnreadableError as exc:
            return _FileEntry(None, kept, [SourceProblem(path, str(exc))])
        except OSError as exc:
            return _FileEntry(None, kept, [SourceProblem(path, _os_error_text(exc))])
        try:
            documents = load_stream(text, path)
        except ManifestSyntaxError as exc:
            return _FileEntry(key, kept, [SourceProblem(path, str(exc))])
        objects, problems = check_documents(documents, path)
        return _FileEntry(key, objects, problems)

    # ------------------------------------------------------------------ problems

    def _forget_reported(self, path: str) -> None:
        self._reported = {p for p in self._reported if p.origin != path}

    def _publish(self, problems: list[SourceProblem]) -> None:
        """Make ``problems`` the current ones; report those not reported before."""
        self.problems = problems
        fresh = [p for p in dict.fromkeys(problems) if p not in self._reported]
        self._reported = set(problems)
        for problem in fresh:
            self._on_problem(problem)


def _walk(top: str) -> tuple[set[str], list[OSError]]:
    """Manifest files below ``top`` (following links, skipping dot-names), and errors."""
    errors: list[OSError] = []
    found: set[str] = set()
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top, onerror=errors.append, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError as error:
            errors.append(error)
            dirnames.clear()
            continue
        if (info.st_dev, info.st_ino) in visited:  # a symbolic link loop
            dirnames.clear()
            continue
        visited.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(SUFFIXES):
                found.add(os.path.join(dirpath, name))
    return found, errors


def _read_text(path: str, info: os.stat_result) -> str:
    if not stat.S_ISREG(info.st_mode):
        raise _UnreadableError("not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _UnreadableError(
            f"file too large ({info.st_size} bytes, the limit is {MAX_FILE_BYTES})"
        )
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _UnreadableError(f"not UTF-8 text (invalid byte at offset {exc.start})") from None


def _os_error_text(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"
