"""The clusterset's PKI: a CA, each cluster's TLS and state-signing certificates, and the
loaders that check certificate files (``meshd certs`` is ``mesh.daemon.certs_command``).

What ``meshd certs`` makes (names and roles in ``mesh.security.identity``):

- ``meshd certs init --clusterset NAME --out DIR`` writes ``ca.crt`` and ``ca.key``: a
  self-signed ECDSA P-256 CA (10 years) whose URI SAN is ``spiffe://NAME``. One CA per
  clusterset: agents trust exactly the CA in their ``--tls-ca``, so an agent of another
  clusterset (another CA) fails the TLS handshake.
- ``meshd certs issue --cluster-id ID --ca DIR --out DIR [--hosts h1,h2]`` writes
  ``tls.crt``/``tls.key`` (ECDSA P-256, server and client auth; SANs: the cluster's
  SPIFFE ID, the clusterset's ring name, and every host or IP given), ``signing.crt``/
  ``signing.key`` (the Ed25519 key that signs this cluster's states, bound to the cluster
  id by the CA; see ``mesh.security.signing``), and ``ca.crt`` (a copy, for ``--tls-ca``).

Private keys are written 0600, certificates 0644. Every file is written to a temporary
name and renamed into place, so an agent reloading its certificates never reads half a
file; nothing is overwritten without ``--force``. Bad input raises ``CertsError`` (exit 2).

The loaders at the bottom (``tls_identity_of``, ``peer_identity``) are what ``mesh.transport.tls``
uses to check certificate files before handing them to gRPC, and ``not_after_times`` reads
when the certificates in use expire (``mesh.security.cert_expiry``); this module is the one
place besides ``mesh.security.signing`` that imports ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.model import is_dns_label
from mesh.security import identity as ident
from mesh.security import signing
from mesh.security.signing import SIGNER_EKU, SignerKey

CA_CERT, CA_KEY = "ca.crt", "ca.key"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"
SIGNING_CERT, SIGNING_KEY = "signing.crt", "signing.key"
CA_DAYS = 3650
SKEW = datetime.timedelta(minutes=5)  # back-date certificates for clocks slightly behind

CaKey = ec.EllipticCurvePrivateKey


class CertsError(Exception):
    """Bad input to ``meshd certs`` or unusable certificate files; one line for the operator."""


# --- building certificates (no IO) ----------------------------------------------------------


def _builder(
    subject: str, issuer: x509.Name, public_key: object, now: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _leaf_usage(builder: x509.CertificateBuilder, ca: x509.Certificate) -> x509.CertificateBuilder:
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )


def create_ca(
    clusterset: str, now: datetime.datetime, days: int = CA_DAYS
) -> tuple[x509.Certificate, CaKey]:
    if not ident.is_clusterset_name(clusterset):
        raise CertsError(f"--clusterset: {clusterset!r} must be a DNS name such as prod")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meshd clusterset {clusterset}")])
    cert = (
        _builder(f"meshd clusterset {clusterset}", name, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(ident.ca_identity(clusterset).uri)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        labels = host.lower().rstrip(".").split(".")
        wildcard = labels[0] == "*" and len(labels) > 1
        if not all(is_dns_label(lb) for lb in labels[1 if wildcard else 0 :]):
            raise CertsError(f"--hosts: {host!r} is neither an IP address nor a DNS name")
        names.append(x509.DNSName(".".join(labels)))
    return names


def issue_tls(
    ca: x509.Certificate,
    ca_key: CaKey,
    cluster_id: str,
    hosts: Sequence[str],
    now: datetime.datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    clusterset = clusterset_of_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(ident.tls_identity(clusterset, cluster_id).uri),
        x509.DNSName(ident.ring_server_name(clusterset)),
        *_host_names(hosts),
    ]
    cert = (
        _leaf_usage(_builder(cluster_id, ca.subject, key.public_key(), now, days), ca)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue_signer(
    ca: x509.Certificate, ca_key: CaKey, cluster_id: str, now: datetime.datetime, days: int
) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    clusterset = clusterset_of_ca(ca)
    key = ed25519.Ed25519PrivateKey.generate()
    uri = ident.signer_identity(clusterset, cluster_id).uri
    cert = (
        _leaf_usage(_builder(cluster_id, ca.subject, key.public_key(), now, days), ca)
        .add_extension(x509.ExtendedKeyUsage([SIGNER_EKU]), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def clusterset_of_ca(ca: x509.Certificate) -> str:
    found = signing.clusterset_of_ca(ca)
    if found is None:
        raise CertsError("the CA certificate has no spiffe://<clusterset> URI SAN")
    return found


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: CaKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- checking certificate files (for mesh.transport.tls) ------------------------------------


def tls_identity_of(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, now: datetime.datetime
) -> ident.Identity:
    """Check a TLS key, certificate and CA bundle belong together; the certificate's identity.

    Refuses a key that does not match the certificate (as seen mid-way through replacing
    the files), a certificate not issued by a CA of the bundle, one outside its validity,
    and one without exactly one ``spiffe://<clusterset>/cluster/<id>`` URI SAN.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
        cas = x509.load_pem_x509_certificates(ca_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertsError(f"cannot parse: {exc}") from None
    leaf = chain[0]
    if key.public_key() != leaf.public_key():
        raise CertsError("the key does not match the certificate")
    if not signing.issued_by(leaf, cas):
        raise CertsError("the certificate was not issued by a CA of the CA bundle")
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertsError(f"the certificate is not valid now (until {leaf.not_valid_after_utc})")
    found = ident.find_identity(signing.uris_of(leaf), ident.Role.TLS)
    if found is None:
        raise CertsError("the certificate has no spiffe://<clusterset>/cluster/<id> URI SAN")
    return found


def peer_identity(cert_pem: bytes) -> ident.Identity | None:
    """The TLS identity of a peer's certificate, as gRPC's auth context gives it."""
    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None
    return ident.find_identity(signing.uris_of(leaf), ident.Role.TLS)


def not_after_times(
    tls_pem: bytes | None, signing_der: bytes | None, ca_pem: bytes | None
) -> dict[str, float]:
    """cert name (``tls``, ``signing``, ``ca``) -> not-after time in Unix seconds, of the
    certificates given. For a CA bundle, the earliest: the first CA to lapse is the first to
    break a chain. One that does not parse is left out (the agent checked each when it
    loaded it)."""
    found: dict[str, float] = {}
    for cert, data, read in (
        ("tls", tls_pem, _first_pem),
        ("signing", signing_der, _der),
        ("ca", ca_pem, _earliest_pem),
    ):
        if data is not None:
            try:
                found[cert] = read(data)
            except ValueError:
                continue
    return found


def _first_pem(data: bytes) -> float:
    return x509.load_pem_x509_certificate(data).not_valid_after_utc.timestamp()


def _der(data: bytes) -> float:
    return x509.load_der_x509_certificate(data).not_valid_after_utc.timestamp()


def _earliest_pem(data: bytes) -> float:
    return min(c.not_valid_after_utc.timestamp() for c in x509.load_pem_x509_certificates(data))


def signer_key(cert_pem: bytes, key_pem: bytes) -> SignerKey:
    """This cluster's signing key and certificate, for ``mesh.security.signing.Signer``."""
    try:
        return SignerKey.from_pem(cert_pem, key_pem)
    except ValueError as exc:
        raise CertsError(f"signing key: {exc}") from None


def load_signer(cert: Path, key: Path, cluster_id: str) -> signing.Signer:
    """The signer of ``cluster_id`` from ``signing.crt`` and ``signing.key`` files."""
    try:
        found = signer_key(cert.read_bytes(), key.read_bytes())
    except OSError as exc:
        raise CertsError(f"{exc.filename}: {exc.strerror}") from None
    if found.identity.cluster_id != cluster_id:
        raise CertsError(f"{cert}: signs for cluster {found.identity.cluster_id}, not {cluster_id}")
    return signing.Signer(found)


def load_trust(ca: Path) -> signing.Trust:
    """What verifies other clusters' signed states: the CA bundle of ``--tls-ca``."""
    try:
        return signing.Trust.from_pem(ca.read_bytes())
    except OSError as exc:
        raise CertsError(f"{ca}: {exc.strerror}") from None
    except ValueError as exc:
        raise CertsError(f"{ca}: {exc}") from None


# --- files and the command ---------------------------------------------------------------------


def _write(directory: Path, files: dict[str, tuple[bytes, int]], force: bool) -> list[Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertsError(f"--out {directory}: {exc.strerror}") from None
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing and not force:
        raise CertsError(f"{existing[0]} exists; pass --force to replace it")
    written = []
    for name, (data, mode) in files.items():
        path, tmp = directory / name, directory / f".{name}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)  # whatever the umask was
            os.replace(tmp, path)  # readers see the old file or the new one, never half
        except OSError as exc:
            raise CertsError(f"{path}: {exc.strerror}") from None
        written.append(path)
    return written


def load_ca(directory: Path) -> tuple[x509.Certificate, CaKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except OSError as exc:
        raise CertsError(f"--ca {directory}: {exc.filename}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise CertsError(f"--ca {directory}: not a meshd CA: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CertsError(f"--ca {directory}: {CA_KEY} is not the key of {CA_CERT}")
    clusterset_of_ca(cert)
    return cert, key


def init_ca(clusterset: str, out: Path, force: bool, now: datetime.datetime) -> list[Path]:
    cert, key = create_ca(clusterset, now)
    return _write(out, {CA_CERT: (pem_cert(cert), 0o644), CA_KEY: (pem_key(key), 0o600)}, force)


def issue(
    cluster_id: str,
    ca_dir: Path,
    out: Path,
    hosts: Sequence[str],
    *,
    force: bool,
    days: int,
    now: datetime.datetime,
) -> list[Path]:
    if not is_dns_label(cluster_id):
        raise CertsError(f"--cluster-id: {cluster_id!r} must be an RFC 1123 label")
    if not 1 <= days <= CA_DAYS:
        raise CertsError(f"--days: {days} must be 1-{CA_DAYS}")
    ca, ca_key = load_ca(ca_dir)
    tls_cert, tls_key = issue_tls(ca, ca_key, cluster_id, hosts, now, days)
    signing_cert, signing_key = issue_signer(ca, ca_key, cluster_id, now, days)
    files = {
        TLS_KEY: (pem_key(tls_key), 0o600),
        TLS_CERT: (pem_cert(tls_cert), 0o644),
        SIGNING_KEY: (pem_key(signing_key), 0o600),
        SIGNING_CERT: (pem_cert(signing_cert), 0o644),
        CA_CERT: (pem_cert(ca), 0o644),
    }
    return _write(out, files, force)
