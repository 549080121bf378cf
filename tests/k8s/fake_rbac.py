"""RBAC for the fake API server, read from the project's ``manifests/`` directory.

The fake server must deny what the shipped RBAC does not grant, so that the agent and the
manifests cannot drift apart. ``Rbac.from_manifests(directory)`` reads every YAML document
below ``directory`` and keeps the rules of each ``ClusterRole`` and ``Role`` (a kustomize
overlay that repeats a base role by name counts once). The rules granted are their union:

- a ClusterRole's rules apply in every namespace and at the cluster scope;
- a Role's rules apply in its namespace (``metadata.namespace``, else the ``namespace:`` of
  the kustomization beside it, else any namespace: kustomize sets it at build time).

Bindings are not followed: the roles shipped in ``manifests/`` are the agent's own; the
user named in a 403 is the ``ServiceAccount`` found there. When the
directory holds no role at all, ``Rbac.allow_all()`` is used and ``Rbac.present`` is False
(the tests that check the manifests grant what the agent uses say so).

A rule matches a request when its ``apiGroups``, ``resources`` (``plural`` or
``plural/subresource``) and ``verbs`` contain the request's, or ``*``, and its
``resourceNames`` (if any) contain the object's name (only for verbs on one object).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_USER = "system:serviceaccount:meshd:meshd"


@dataclass(frozen=True)
class Rule:
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str]
    namespace: str | None  # None: every namespace and the cluster scope
    origin: str  # "ClusterRole meshd (manifests/base/rbac.yaml)"

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if not (_has(self.api_groups, group) and _has(self.resources, resource)):
            return False
        if not _has(self.verbs, verb):
            return False
        return not self.resource_names or (bool(name) and name in self.resource_names)


def _has(values: frozenset[str], wanted: str) -> bool:
    return "*" in values or wanted in values


@dataclass(frozen=True)
class Rbac:
    rules: tuple[Rule, ...]
    present: bool  # False: no role found, everything is allowed
    user: str = SERVICE_ACCOUNT_USER

    @classmethod
    def allow_all(cls) -> Rbac:
        rule = Rule(frozenset("*"), frozenset("*"), frozenset("*"), frozenset(), None, "allow-all")
        return cls((rule,), present=False)

    @classmethod
    def from_manifests(cls, directory: Path) -> Rbac:
        rules: list[Rule] = []
        seen: set[tuple[str, str, str]] = set()
        user = SERVICE_ACCOUNT_USER
        for path in sorted(directory.rglob("*.y*ml")) if directory.is_dir() else []:
            default_ns = _kustomize_namespace(path.parent)
            for doc in _documents(path):
                kind = doc.get("kind")
                if kind == "ServiceAccount":
                    meta = doc.get("metadata") or {}
                    account_ns = meta.get("namespace") or default_ns or "default"
                    user = f"system:serviceaccount:{account_ns}:{meta.get('name')}"
                if kind not in ("ClusterRole", "Role"):
                    continue
                meta = doc.get("metadata") or {}
                name = str(meta.get("name", ""))
                namespace = (meta.get("namespace") or default_ns) if kind == "Role" else None
                if (kind, name, namespace or "") in seen:
                    continue
                seen.add((kind, name, namespace or ""))
                origin = f"{kind} {name} ({path})"
                rules.extend(_rules(doc.get("rules") or [], namespace, origin))
        if not seen:
            return cls.allow_all()
        return cls(tuple(rules), present=True, user=user)

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str = "") -> bool:
        return any(r.allows(verb, group, resource, namespace, name) for r in self.rules)

    def forbidden_message(
        self, verb: str, group: str, resource: str, namespace: str, name: str
    ) -> str:
        plural = resource.split("/")[0]
        target = f"{plural}.{group}" if group else plural
        shown = f'{target} "{name}"' if name else target
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        return (
            f'{shown} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" {scope}'
        )


def _rules(raw: Iterable[Any], namespace: str | None, origin: str) -> list[Rule]:
    rules = []
    for item in raw:
        if not isinstance(item, Mapping) or "nonResourceURLs" in item:
            continue
        rules.append(
            Rule(
                frozenset(item.get("apiGroups") or []),
                frozenset(item.get("resources") or []),
                frozenset(item.get("verbs") or []),
                frozenset(item.get("resourceNames") or []),
                namespace,
                origin,
            )
        )
    return rules


def _documents(path: Path) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []


def _kustomize_namespace(folder: Path) -> str | None:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        for doc in _documents(folder / name) if (folder / name).is_file() else []:
            namespace = doc.get("namespace")
            if isinstance(namespace, str) and namespace:
                return namespace
    return None
