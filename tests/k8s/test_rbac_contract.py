"""The agent's API calls and the shipped RBAC (manifests/) cannot drift apart.

``mesh.kube.source.PERMISSIONS`` declares the calls the source makes. One test runs
the source against the fake API server (which answers 403 for anything the roles in
``manifests/`` do not grant) and checks that it makes exactly those calls and is never
denied; another checks that the shipped roles grant every one of them cluster-wide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mesh.kube.source import PERMISSIONS
from tests.k8s.conftest import RunningSource
from tests.k8s.fake_apiserver import REPO, FakeApiServer
from tests.k8s.fake_rbac import Rbac
from tests.k8s.objects import exported_service


def missing_grants(rbac: Rbac) -> list[tuple[str, str, str]]:
    """The (group, resource, verb) the source needs, cluster-wide, that ``rbac`` denies."""
    return [p for p in sorted(PERMISSIONS) if not rbac.allows(p[2], p[0], p[1], namespace="")]


def test_the_shipped_rbac_grants_every_call_of_the_source() -> None:
    rbac = Rbac.from_manifests(REPO / "manifests")
    assert rbac.present, "manifests/ ships no ClusterRole or Role"
    assert missing_grants(rbac) == []
    assert rbac.user == "system:serviceaccount:meshd-system:meshd"


def test_a_role_that_misses_a_call_is_caught(tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: meshd}
rules:
- {apiGroups: [""], resources: [namespaces, services], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list]}
- {apiGroups: [multicluster.x-k8s.io], resources: [serviceexports], verbs: [list, watch]}
"""
    )
    assert missing_grants(Rbac.from_manifests(tmp_path)) == [
        ("discovery.k8s.io", "endpointslices", "watch")
    ]


def test_a_namespaced_role_cannot_grant_cluster_wide_lists(tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: meshd, namespace: meshd-system}
rules:
- {apiGroups: ["", discovery.k8s.io, multicluster.x-k8s.io], resources: ["*"], verbs: ["*"]}
"""
    )
    assert missing_grants(Rbac.from_manifests(tmp_path)) == sorted(PERMISSIONS)


@pytest.mark.asyncio
async def test_the_source_makes_exactly_the_calls_it_declares_and_is_never_denied(
    api: FakeApiServer, start_source: Callable[..., RunningSource]
) -> None:
    assert api.rbac.present  # the fake server enforces the shipped roles
    for obj in exported_service("shop", "web", [("10.1.0.1", True)]):
        api.put(obj)
    source = start_source(api)
    await source.until("web", lambda: "shop/web" in source.services())
    await source.until("four watches", lambda: len(api.watchers) == 4)
    # Discovery of the MCS version (a non-resource URL, readable by every authenticated
    # user: the system:discovery role) comes first; the rest is exactly what is declared.
    assert "/apis/multicluster.x-k8s.io/v1beta1" in {r.path for r in api.requests}
    used = {(r.group, r.resource, r.verb) for r in api.requests if r.resource}
    assert used == set(PERMISSIONS)
    assert [r for r in api.requests if r.status in (401, 403)] == []
    assert source.problems == []
