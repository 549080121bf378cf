"""Pure parsing of Kubernetes manifest files into objects: the first step of the manifests source.

``parse_documents`` turns the text of one file into Kubernetes objects. A YAML (or, for a
``*.json`` origin, JSON) syntax error makes the whole file one problem, with its line. A
``kind: List`` expands into its items. A document that is not an object (a mapping with
``apiVersion``, ``kind`` and ``metadata.name``) is a problem; the file's other documents are
kept. ``mesh.sources.translate`` then reads the objects of every file together.

No IO and no clock: text in, objects and ``SourceProblem``s out. Invalid input never raises.
"""

from __future__ import annotations

import json
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
    "parse_documents",
]


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
