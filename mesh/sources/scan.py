"""The scan of a manifests directory: which files changed, their objects, the exports.

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
translation is skipped too (the very same ``LocalExports`` object comes back), so a scan of
an idle directory costs one ``stat`` per file. A file that changed is read whole, but only
its documents whose text changed are parsed again (``load_stream_cached``), and the
translation is kept file by file (``mesh.sources.incremental``): only the objects of the
changed files are looked at, and only the services they touch translated again, so an
edit of one service costs that service, not the directory.

Bad input loses nothing:

- a problem in one file never affects the objects of another;
- a file that cannot be read (permissions, not UTF-8, vanished while being read) or is not
  YAML at all keeps the objects of its last good version, so a half-saved edit does not
  withdraw a service from the whole clusterset; deleting a file does withdraw its objects;
- when the directory itself vanishes or cannot be listed, ``scan`` raises
  ``ManifestDirectoryError`` and keeps its cache.

A scan is blocking work: parsing a large file takes seconds. ``mesh.sources.manifests`` runs
it in a worker process (``mesh.sources.offload``), never in the agent's event loop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.model import LocalExports
from mesh.sources.documents import Documents, load_stream_cached
from mesh.sources.incremental import IncrementalTranslation
from mesh.sources.translate import ManifestSyntaxError, SourceProblem, check_documents

__all__ = ["ManifestDirectoryError", "ManifestScanner", "Scan", "SourceProblem"]

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
    """One file as last scanned. ``key`` is None when it could not be read (retry it).
    ``pieces``: the documents of its last good version, by their text (see
    ``mesh.sources.documents.load_stream_cached``)."""

    key: _StatKey | None
    objects: list[dict[str, Any]]
    problems: list[SourceProblem]
    pieces: dict[str, Documents] = field(default_factory=dict)


@dataclass(frozen=True)
class Scan:
    """One scan: the exports, every current problem, and the files that changed since the
    previous scan (their problems may be reported again)."""

    exports: LocalExports
    problems: list[SourceProblem]
    touched: list[str]


class ManifestScanner:
    """Scans ``directory`` (see the module docstring); blocking, so not in an event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._files: dict[str, _FileEntry] = {}
        # An unchanged file keeps its list of objects, and an unchanged document its object
        # (the parse cache): an edit translates only what its file's objects touch.
        self._translation = IncrementalTranslation()

    def scan(self, on_reading: Callable[[list[str]], None] | None = None) -> Scan:
        """Scan now; ``on_reading`` is told which files changed before they are read and
        parsed (when any did). Raises ``ManifestDirectoryError``."""
        paths, problems = self._list_files()
        stats = {path: _stat(path) for path in paths}
        if on_reading is not None:
            fresh = [p for p, info in stats.items() if self._changed(p, info)]
            if fresh:
                on_reading(fresh)
        files: dict[str, _FileEntry] = {}
        touched = []
        for path in paths:
            old = self._files.get(path)
            entry = self._refresh(path, old, stats[path])
            if entry.key is not None and (old is None or old.key != entry.key):
                touched.append(path)
            files[path] = entry
        self._files = files
        for entry in files.values():
            problems.extend(entry.problems)
        exports, translation_problems = self._translate(files)
        return Scan(exports, problems + translation_problems, touched)

    def _translate(self, files: dict[str, _FileEntry]) -> tuple[LocalExports, list[SourceProblem]]:
        """Translate the objects of every file, redoing only what changed files touch."""
        result = self._translation.update({path: entry.objects for path, entry in files.items()})
        return result.exports, result.problems

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

    def _changed(self, path: str, info: os.stat_result | OSError) -> bool:
        old = self._files.get(path)
        return not isinstance(info, OSError) and (old is None or old.key != _key(info))

    def _refresh(
        self, path: str, old: _FileEntry | None, info: os.stat_result | OSError
    ) -> _FileEntry:
        """The entry of one file: the cached one when unchanged, else read and parsed."""
        kept = old.objects if old is not None else _NO_OBJECTS
        pieces = old.pieces if old is not None else {}
        try:
            if isinstance(info, OSError):
                raise info
            key = _key(info)
            if old is not None and old.key == key:
                return old
            text = _read_text(path, info)
        except _UnreadableError as exc:
            return _FileEntry(None, kept, [SourceProblem(path, str(exc))], pieces)
        except OSError as exc:
            return _FileEntry(None, kept, [SourceProblem(path, _os_error_text(exc))], pieces)
        try:
            documents, pieces = load_stream_cached(text, path, pieces)
        except ManifestSyntaxError as exc:
            return _FileEntry(key, kept, [SourceProblem(path, str(exc))], pieces)
        objects, problems = check_documents(documents, path)
        return _FileEntry(key, objects, problems, pieces)


def _stat(path: str) -> os.stat_result | OSError:
    try:
        return os.stat(path)
    except OSError as exc:
        return exc


def _key(info: os.stat_result) -> _StatKey:
    return (info.st_mtime_ns, info.st_size, info.st_ino)


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
