"""Pure parsing of Kubernetes manifest files into objects: the first step of the manifests source.

``parse_documents`` turns the text of one file into Kubernetes objects. A YAML (or, for a
``*.json`` origin, JSON) syntax error makes the whole file one problem, with its line. A
``kind: List`` expands into its items. A document that is not an object (a mapping with
``apiVersion``, ``kind`` and ``metadata.name``) is a problem; the file's other documents are
kept. ``mesh.sources.translate`` then reads the objects of every file together.

``load_stream_cached`` is ``load_stream`` for a new version of a file whose previous
version was parsed: it cuts the YAML stream into its documents' texts at the document start
markers and parses only the texts it has not seen (a one-line edit of a 20,000-service
file parses one document, not 60,000). The cut is sound because libyaml reads ``---`` at
the start of a line, followed by a blank or the line's end, as a document boundary wherever
it stands (it ends a block scalar, whose indentation is at least one; in a flow or quoted
scalar it is an error): each piece alone gives exactly the documents it gives in the whole
stream. Whatever could make that doubtful (directives, line breaks other than LF, a byte
order mark) and any piece that fails make the whole text be parsed as ``load_stream`` does,
so results and error messages are the same.

No IO and no clock: text in, objects and ``SourceProblem``s out. Invalid input never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = [
    "ManifestSyntaxError",
    "SourceProblem",
    "check_documents",
    "describe",
    "load_stream",
    "load_stream_cached",
    "parse_documents",
    "split_stream",
]

Documents = list[tuple[int, Any]]  # (first line, data) of each document of a stream
# A document start marker line; or what makes cutting at them doubtful.
_MARKER = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)
_DOUBTFUL = re.compile(r"^%|[\r\x85\u2028\u2029\ufeff]", re.MULTILINE)


@dataclass(frozen=True, order=True)
class SourceProblem:
    """Something wrong in the input: where (a file path) and what, in one line."""

    origin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}"


class ManifestSyntaxError(ValueError):
    """The text is not YAML (or JSON) at all; the message names the line."""


def parse_documents(text: str, origin: str) -> tuple[list[dict[str, Any]], list[SourceProblem]]:
    """The Kubernetes objects in the text of one file, and the problems found on the way."""
    try:
        raw = load_stream(text, origin)
    except ManifestSyntaxError as exc:
        return [], [SourceProblem(origin, str(exc))]
    return check_documents(raw, origin)


def load_stream(text: str, origin: str) -> list[tuple[int, Any]]:
    """Every document of the text as ``(first line, data)``; raises ``ManifestSyntaxError``.

    An origin ending in ``.json`` is read as one JSON value, anything else as a YAML stream.
    """
    if origin.lower().endswith(".json"):
        try:
            return [(1, json.loads(text))]
        except json.JSONDecodeError as exc:
            msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            raise ManifestSyntaxError(msg) from None
    loader = _Loader(text)
    documents: list[tuple[int, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            documents.append((node.start_mark.line + 1, loader.construct_document(node)))
    except yaml.YAMLError as exc:
        raise ManifestSyntaxError(_yaml_error_text(exc)) from None
    finally:
        loader.dispose()
    return documents


def split_stream(text: str) -> list[tuple[int, str]] | None:
    """The YAML stream cut before each document start marker: (the line each piece starts
    on, counted from 0; its text). None when cutting is not sound (see the module doc)."""
    if _DOUBTFUL.search(text):
        return None
    pieces: list[tuple[int, str]] = []
    start, line = 0, 0
    for marker in _MARKER.finditer(text):
        if marker.start() > start:
            pieces.append((line, text[start : marker.start()]))
            line += text.count("\n", start, marker.start())
        start = marker.start()
    pieces.append((line, text[start:]))
    return pieces


def load_stream_cached(
    text: str, origin: str, cache: dict[str, Documents]
) -> tuple[Documents, dict[str, Documents]]:
    """``load_stream``, parsing only the pieces (``split_stream``) not in ``cache``, which
    maps a piece's text to its documents (lines counted within the piece). Returns the
    documents and the cache for the next version of the file. Raises as ``load_stream``."""
    pieces = None if origin.lower().endswith(".json") else split_stream(text)
    if pieces is None:
        return load_stream(text, origin), {}
    documents: Documents = []
    fresh: dict[str, Documents] = {}
    try:
        for start, piece in pieces:
            parsed = fresh.get(piece)
            if parsed is None:
                parsed = cache.get(piece)
            if parsed is None:
                parsed = load_stream(piece, origin)
            fresh[piece] = parsed
            documents.extend((start + line, data) for line, data in parsed)
    except ManifestSyntaxError:
        return load_stream(text, origin), {}  # the whole text's error, as without the cut
    return documents, fresh


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def check_documents(
    documents: Iterable[tuple[int, Any]], origin: str
) -> tuple[list[dict[str, Any]], list[SourceProblem]]:
    """Keep the documents that are Kubernetes objects, expanding ``kind: List``."""
    objects: list[dict[str, Any]] = []
    problems: list[SourceProblem] = []
    for index, (line, data) in enumerate(documents, 1):
        if data is None:
            continue
        where = f"document {index} (line {line})"
        if isinstance(data, dict) and data.get("kind") == "List":
            reason = _expand_list(data, where, objects)
        else:
            reason = _object_error(data)
            if reason is None:
                objects.append(data)
        if reason is not None:
            problems.append(SourceProblem(origin, f"{where}: {reason}"))
    return objects, problems


def _expand_list(data: dict[str, Any], where: str, objects: list[dict[str, Any]]) -> str | None:
    """Append the items of a v1 List; the first problem found, or None."""
    if data.get("apiVersion") != "v1":
        return f"kind List must have apiVersion v1, got {data.get('apiVersion')!r}"
    items = data.get("items")
    if items is None:
        return None
    if not isinstance(items, list):
        return f"items must be a list, got {describe(items)}"
    errors = []
    for position, item in enumerate(items):
        reason = _object_error(item)
        if reason is None and item.get("kind") == "List":
            reason = "a List inside a List is not allowed"
        if reason is None:
            objects.append(item)
        else:
            errors.append(f"items[{position}]: {reason}")
    return "; ".join(errors) or None


def _object_error(data: Any) -> str | None:
    """Why ``data`` is not a Kubernetes object, or None when it is one."""
    if not isinstance(data, dict):
        return f"expected a Kubernetes object (a mapping), got {describe(data)}"
    for field in ("apiVersion", "kind"):
        value = data.get(field)
        if not isinstance(value, str) or not value:
            return f"missing {field}" if value is None else f"{field} must be a string"
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return f"{data['kind']}: missing metadata.name"
    return None


def describe(value: Any) -> str:
    """A short name for the type of a YAML value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{value!r}".lower()
    names = {dict: "a mapping", list: "a list", str: "a string", int: "a number"}
    return names.get(type(value), f"a {type(value).__name__} ({value!r})")
