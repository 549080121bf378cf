"""The identity of a Kubernetes object as the manifests source reads it (pure): the kinds
and API versions it knows, and whether an object's apiVersion, namespace and name are what
the API server would accept (``mesh.sources.translate`` reports a problem otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mesh.model import is_dns_label
from mesh.sources.fields import LABEL_RULE

API_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "Namespace": "v1",
        "Service": "v1",
        "ServiceExport": "multicluster.x-k8s.io/v1beta1",
        "EndpointSlice": "discovery.k8s.io/v1",
    }
)
# Older versions still read: the MCS CRDs serve v1beta1 (stored) and v1alpha1 alike.
ALSO_ACCEPTED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"ServiceExport": ("multicluster.x-k8s.io/v1alpha1",)}
)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# RFC 1123 subdomain: what Kubernetes allows for EndpointSlice names.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def api_group(api_version: Any) -> str:
    """The API group of an apiVersion: '' for the core group ('v1')."""
    text = api_version if isinstance(api_version, str) else ""
    return text.rpartition("/")[0]


def identity_error(kind: str, api_version: Any, namespace: Any, name: Any) -> str | None:
    """Why an object of ``kind`` with these identity fields is one the API server would
    reject; None when it is valid."""
    expected = API_VERSIONS[kind]
    others = ALSO_ACCEPTED.get(kind, ())
    if api_version != expected and api_version not in others:
        allowed = " or ".join((expected, *others))
        return f"apiVersion must be {allowed}, got {api_version!r}"
    if not isinstance(name, str) or not name:
        return "missing metadata.name"
    if kind != "Namespace" and not (isinstance(namespace, str) and is_dns_label(namespace)):
        return f"metadata.namespace must be {LABEL_RULE}, got {namespace!r}"
    if kind == "EndpointSlice":
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            return f"metadata.name must be an RFC 1123 subdomain, got {name!r}"
    elif not is_dns_label(name):
        return f"metadata.name must be {LABEL_RULE}, got {name!r}"
    return None
