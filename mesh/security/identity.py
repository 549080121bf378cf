"""Names that bind a certificate to a clusterset and a cluster (pure).

Every certificate meshd issues or accepts names its holder with a SPIFFE-style URI SAN
(the SPIFFE ID format: ``spiffe://<trust domain>/<path>``), with the clusterset as the
trust domain:

- the clusterset CA: ``spiffe://<clusterset>``;
- a cluster's TLS certificate (mutual TLS between agents):
  ``spiffe://<clusterset>/cluster/<cluster-id>``, plus the DNS name
  ``<clusterset>.meshd.internal`` (``ring_server_name``), which every agent of the
  clusterset carries and which a dialling agent demands (``grpc.ssl_target_name_override``);
- a cluster's state-signing certificate (Ed25519, see ``mesh.security.signing``):
  ``spiffe://<clusterset>/cluster/<cluster-id>/signer``.

The roles never overlap: a TLS certificate is refused as a signer (wrong path, wrong key
type) and a signing certificate is refused for TLS (no ring server name, wrong path).

A clusterset name is a DNS name of RFC 1123 labels (``prod``, ``shop.example``); a
cluster id is one label, as ``--cluster-id`` requires.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh.model import is_dns_label

SCHEME = "spiffe://"
RING_DOMAIN = "meshd.internal"


class Role(enum.Enum):
    CA = "ca"
    TLS = "tls"
    SIGNER = "signer"


@dataclass(frozen=True, slots=True)
class Identity:
    clusterset: str
    cluster_id: str  # empty for the CA
    role: Role

    @property
    def uri(self) -> str:
        if self.role is Role.CA:
            return f"{SCHEME}{self.clusterset}"
        base = f"{SCHEME}{self.clusterset}/cluster/{self.cluster_id}"
        return base + "/signer" if self.role is Role.SIGNER else base


def is_clusterset_name(value: str) -> bool:
    """True for a DNS name of RFC 1123 labels, at most 200 characters."""
    return 0 < len(value) <= 200 and all(is_dns_label(label) for label in value.split("."))


def ring_server_name(clusterset: str) -> str:
    """The DNS SAN every agent certificate of ``clusterset`` carries, and dialers demand."""
    return f"{clusterset}.{RING_DOMAIN}"


def ca_identity(clusterset: str) -> Identity:
    return Identity(clusterset, "", Role.CA)


def tls_identity(clusterset: str, cluster_id: str) -> Identity:
    return Identity(clusterset, cluster_id, Role.TLS)


def signer_identity(clusterset: str, cluster_id: str) -> Identity:
    return Identity(clusterset, cluster_id, Role.SIGNER)


def parse_uri(uri: str) -> Identity | None:
    """The identity a URI SAN names, or None when it is not a meshd identity."""
    if not uri.startswith(SCHEME):
        return None
    clusterset, _, path = uri[len(SCHEME) :].partition("/")
    if not is_clusterset_name(clusterset):
        return None
    if not path:
        return Identity(clusterset, "", Role.CA) if "/" not in uri[len(SCHEME) :] else None
    parts = path.split("/")
    if len(parts) not in (2, 3) or parts[0] != "cluster" or not is_dns_label(parts[1]):
        return None
    if len(parts) == 2:
        return Identity(clusterset, parts[1], Role.TLS)
    return Identity(clusterset, parts[1], Role.SIGNER) if parts[2] == "signer" else None


def find_identity(uris: list[str], role: Role) -> Identity | None:
    """The one identity of ``role`` among a certificate's URI SANs (None if zero or several)."""
    found = [i for i in map(parse_uri, uris) if i is not None and i.role is role]
    return found[0] if len(found) == 1 else None
