"""Origin signatures: each cluster seals its own records and heads, every agent verifies.

A ``Seal`` (on the wire, the ``Sealed`` message of proto/mesh/wire/v1/gossip.proto,
converted in ``mesh.wire``) is the exact bytes of a serialized
``Record`` or ``Head``, the id of the key that signed them and the Ed25519 signature. The
signature covers ``domain || len16(clusterset) || clusterset || len16(cluster id) ||
cluster id || body``: the domain (``RECORD_DOMAIN`` or ``HEAD_DOMAIN``) keeps a record's
signature from passing for a head's or for anything in another protocol, and the
clusterset and cluster id bind the bytes to one origin of one clusterset. Relays forward
sealed bytes untouched (never re-serialized), so a signature made at the origin verifies
at every hop. The signer's certificate travels once per chunk (``OriginChunk``).

How a key is bound to a cluster id: **per-cluster X.509 certificates issued by the
clusterset CA** (design (a) of issue 4), not a signed bundle listing every cluster's key.
A signing certificate holds the cluster's Ed25519 public key, the URI SAN
``spiffe://<clusterset>/cluster/<id>/signer`` and the meshd state-signing extended key
usage (``SIGNER_EKU``), and is issued by a CA of ``--tls-ca``. Why:

- one root of trust: the CA that already gates mutual TLS also vouches for keys, so a
  receiver needs nothing beyond the CA bundle it already has;
- adding a cluster or rotating its key changes nothing on the other clusters: the new
  certificate travels with the records and is verified on first sight. A signed bundle
  would have to be re-signed and redeployed to every agent first, and an agent with a
  stale bundle would drop the new cluster's records;
- expiry comes with X.509, and ordinary tools (cert-manager, step-ca, openssl) can issue
  the certificates.

A certificate is verified once (issuer, signature, validity, role, clusterset) and its key
cached by key id (the first 16 bytes of SHA-256 of the raw public key, hex), so a record
costs one Ed25519 verification, or a share of one when a signed batch of record digests
covers it (``BATCH_DOMAIN``, ``mesh.wire.record_batch``). Revocation is by expiry or by
rotating the CA.

``verify_sealed`` raises ``SignedStateError`` with a ``reason`` from ``REASONS`` for any
bad seal or certificate, and never another exception (the chunk opener counts them).
Pure: bytes in, bytes out; no file IO, no clock (``now`` is wall-clock epoch seconds, passed
in, because certificates expire in wall-clock time).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mesh.security import identity as ident

RECORD_DOMAIN = b"meshd.record.v1\0"  # a per-service Record (mesh/ring/records.py)
HEAD_DOMAIN = b"meshd.head.v1\0"  # an origin's Head
# A Batch: the SHA-256 digests of consecutive records, so one signature covers many
# (mesh/wire/record_codec.py). Its own domain: a batch's signature never passes for a record's.
BATCH_DOMAIN = b"meshd.batch.v1\0"
# A SWIM claim: an Alive, Left or accusation (mesh/security/swim_claims.py).
SWIM_DOMAIN = b"meshd.swim.v1\0"
# meshd's state-signing extended key usage: an OID under 2.25 (ITU-T X.667, from a UUID),
# so no TLS stack accepts a signing certificate for a TLS connection.
SIGNER_EKU = x509.ObjectIdentifier("2.25.101540474574883551379535145418373059269")
KEY_ID_BYTES = 16
MAX_CERTIFICATE_BYTES = 4096
MAX_CACHED_KEYS = 4096
REASONS = (
    "malformed",  # the seal or certificate breaks the format (lengths, key id)
    "clusterset_mismatch",  # certified for another clusterset
    "untrusted_certificate",  # not issued by our CA, expired, or not a signing certificate
    "unknown_key",  # no certificate for this key id binds it to the claimed cluster
    "bad_signature",  # the signature does not cover these bytes with this key
)


class SignedStateError(ValueError):
    """A signed state that must be dropped; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def key_id_of(public: ed25519.Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES].hex()


def signed_message(domain: bytes, clusterset: str, cluster_id: str, body: bytes) -> bytes:
    """The bytes the Ed25519 signature covers."""
    parts = [domain]
    for name in (clusterset, cluster_id):
        encoded = name.encode()
        parts += [struct.pack(">H", len(encoded)), encoded]
    parts.append(body)
    return b"".join(parts)


def uris_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def clusterset_of_ca(ca: x509.Certificate) -> str | None:
    found = ident.find_identity(uris_of(ca), ident.Role.CA)
    return found.clusterset if found is not None else None


def issued_by(leaf: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return True
    return False


# --- the origin's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerKey:
    """A cluster's Ed25519 signing key with its certificate."""

    identity: ident.Identity
    private: ed25519.Ed25519PrivateKey
    certificate_der: bytes
    key_id: str

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> SignerKey:
        """Raises ValueError with a readable reason."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        if key.public_key() != cert.public_key():
            raise ValueError("the key does not match the certificate")
        found = ident.find_identity(uris_of(cert), ident.Role.SIGNER)
        if found is None:
            raise ValueError("the certificate has no spiffe://<clusterset>/cluster/<id>/signer SAN")
        return cls(
            found, key, cert.public_bytes(serialization.Encoding.DER), key_id_of(key.public_key())
        )


@dataclass(frozen=True, slots=True)
class Seal:
    """A body with its origin's signature: the fields of the wire's ``Sealed`` message."""

    body: bytes
    signature: bytes
    key_id: str


class SealLike(Protocol):
    """What ``verify_sealed`` reads: a ``Seal``, or a decoded ``Sealed`` message as is."""

    @property
    def body(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...


class Signer:
    """Seals this cluster's records and heads; the caller keeps and forwards the bytes."""

    def __init__(self, key: SignerKey) -> None:
        self.key = key

    @property
    def cluster_id(self) -> str:
        return self.key.identity.cluster_id

    def seal(self, domain: bytes, body: bytes) -> Seal:
        """A body sealed by this cluster, for ``domain`` (a record, a head, a SWIM claim)."""
        message = signed_message(domain, self.key.identity.clusterset, self.cluster_id, body)
        return Seal(body, self.key.private.sign(message), self.key.key_id)


# --- the receiver's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedKey:
    cluster_id: str
    key_id: str
    public: ed25519.Ed25519PublicKey
    not_before: float
    not_after: float
    certificate_der: bytes  # passed on to peers that lack it (SWIM push-pulls)


class Trust:
    """The clusterset's CAs, and the signing keys they certified (cluster id -> keys)."""

    def __init__(self, clusterset: str, cas: Sequence[x509.Certificate]) -> None:
        self.clusterset = clusterset
        self.cas = tuple(cas)
        self._keys: dict[str, TrustedKey] = {}

    @classmethod
    def from_pem(cls, ca_pem: bytes, clusterset: str | None = None) -> Trust:
        """Trust from a CA bundle; the clusterset is the CAs' ``spiffe://`` name unless given."""
        cas = x509.load_pem_x509_certificates(ca_pem)
        named = {c for c in map(clusterset_of_ca, cas) if c is not None}
        if clusterset is None:
            if len(named) != 1:
                raise ValueError(f"the CA bundle names {len(named)} clustersets; name one")
            clusterset = named.pop()
        return cls(clusterset, cas)

    def certificate(self, key_id: str, now: float) -> bytes | None:
        """The certificate of a key this trust holds, as it was verified, if valid now."""
        key = self._keys.get(key_id)
        if key is None or not key.not_before <= now <= key.not_after:
            return None
        return key.certificate_der

    def keys(self, cluster_id: str) -> Mapping[str, TrustedKey]:
        return {k: v for k, v in self._keys.items() if v.cluster_id == cluster_id}

    def add_certificate(self, der: bytes, now: float) -> TrustedKey:
        """Verify a signing certificate against the CAs and remember its key."""
        if len(der) > MAX_CERTIFICATE_BYTES:
            raise SignedStateError("malformed", "certificate too large")
        try:
            cert = x509.load_der_x509_certificate(der)
            public = cert.public_key()
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except Exception as exc:  # a peer's bytes: x509 raises more than ValueError
            raise SignedStateError(
                "untrusted_certificate", f"unusable certificate: {exc}"
            ) from None
        found = ident.find_identity(uris_of(cert), ident.Role.SIGNER)
        if not isinstance(public, ed25519.Ed25519PublicKey) or found is None:
            raise SignedStateError("untrusted_certificate", "not a meshd signing certificate")
        if SIGNER_EKU not in usage or constraints.ca:
            raise SignedStateError("untrusted_certificate", "not a meshd signing certificate")
        if found.clusterset != self.clusterset:
            raise SignedStateError(
                "clusterset_mismatch", f"certificate of clusterset {found.clusterset}"
            )
        if not issued_by(cert, self.cas):
            raise SignedStateError("untrusted_certificate", "not issued by a clusterset CA")
        key = TrustedKey(
            found.cluster_id,
            key_id_of(public),
            public,
            cert.not_valid_before_utc.timestamp(),
            cert.not_valid_after_utc.timestamp(),
            der,
        )
        if not key.not_before <= now <= key.not_after:
            raise SignedStateError("untrusted_certificate", "certificate not valid now")
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.pop(next(iter(self._keys)))
        self._keys[key.key_id] = key
        return key

    def key_of(self, cluster_id: str, key_id: str, certificate: bytes, now: float) -> TrustedKey:
        """The trusted key ``key_id`` of ``cluster_id``, learning it from ``certificate``
        (which may be empty) the first time, or again when the one it holds has expired (a
        renewed certificate for the same key)."""
        key = self._keys.get(key_id)
        expired = key is not None and not key.not_before <= now <= key.not_after
        if expired:
            del self._keys[key_id]
            key = None
        if expired and not certificate:
            raise SignedStateError("untrusted_certificate", f"key {key_id} has expired")
        if key is None and certificate:
            key = self.add_certificate(certificate, now)
            if key.key_id != key_id:
                raise SignedStateError("malformed", "the certificate is not for the key id")
        if key is None:
            raise SignedStateError("unknown_key", f"no certificate for key {key_id}")
        if key.cluster_id != cluster_id:
            raise SignedStateError(
                "unknown_key",
                f"key {key.key_id} is cluster {key.cluster_id}'s, not {cluster_id}'s",
            )
        return key


def verify_sealed(
    domain: bytes,
    cluster_id: str,
    sealed: SealLike,
    certificate: bytes,
    trust: Trust,
    now: float,
) -> None:
    """Raise ``SignedStateError`` unless ``sealed`` is signed by ``cluster_id``'s key."""
    if len(sealed.key_id) != 2 * KEY_ID_BYTES or len(sealed.signature) != 64:
        raise SignedStateError("malformed", "bad key id or signature length")
    key = trust.key_of(cluster_id, sealed.key_id, certificate, now)
    message = signed_message(domain, trust.clusterset, cluster_id, sealed.body)
    try:
        key.public.verify(sealed.signature, message)
    except InvalidSignature:
        raise SignedStateError("bad_signature", f"cluster {cluster_id}") from None
