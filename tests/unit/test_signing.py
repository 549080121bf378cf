"""Origin seals on records and heads: what verifies, what is dropped and why, never a crash."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.security import pki, signing
from mesh.security.signing import (
    HEAD_DOMAIN,
    RECORD_DOMAIN,
    SignedStateError,
    Signer,
    SignerKey,
    Trust,
)
from mesh.wire.v1 import gossip_pb2 as pb

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
NOW = T0.timestamp() + 60.0


@dataclasses.dataclass
class Clusterset:
    name: str
    ca_pem: bytes
    signers: dict[str, Signer]

    def trust(self) -> Trust:
        return Trust.from_pem(self.ca_pem)


def make_clusterset(name: str, clusters: tuple[str, ...]) -> Clusterset:
    ca, ca_key = pki.create_ca(name, T0)
    signers = {}
    for cluster in clusters:
        cert, key = pki.issue_signer(ca, ca_key, cluster, T0, days=30)
        signers[cluster] = Signer(SignerKey.from_pem(pki.pem_cert(cert), pki.pem_key(key)))
    return Clusterset(name, pki.pem_cert(ca), signers)


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west"))


@pytest.fixture(scope="module")
def other() -> Clusterset:
    return make_clusterset("other", ("east",))


BODY = b"\n\x04east\x18\x07 \x03"  # any bytes: the seal does not read them


def seal(signer: Signer, body: bytes = BODY, domain: bytes = RECORD_DOMAIN) -> pb.Sealed:
    """The signer's seal as the ``Sealed`` message it travels in."""
    made = signer.seal(domain, body)
    return pb.Sealed(body=made.body, signature=made.signature, key_id=made.key_id)


def verify(
    sealed: pb.Sealed,
    trust: Trust,
    cluster: str = "east",
    certificate: bytes = b"",
    now: float = NOW,
    domain: bytes = RECORD_DOMAIN,
) -> None:
    signing.verify_sealed(domain, cluster, sealed, certificate, trust, now)


def reason(
    sealed: pb.Sealed,
    trust: Trust,
    cluster: str = "east",
    certificate: bytes = b"",
    now: float = NOW,
    domain: bytes = RECORD_DOMAIN,
) -> str:
    with pytest.raises(SignedStateError) as caught:
        verify(sealed, trust, cluster, certificate, now, domain)
    return caught.value.reason


def copy(sealed: pb.Sealed, **changes: object) -> pb.Sealed:
    out = pb.Sealed()
    out.CopyFrom(sealed)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def cert(cs: Clusterset, cluster: str = "east") -> bytes:
    return cs.signers[cluster].key.certificate_der


def test_sealed_bytes_verify_after_a_relay(prod: Clusterset) -> None:
    sealed = seal(prod.signers["east"])
    relayed = pb.Sealed.FromString(sealed.SerializeToString())
    verify(relayed, prod.trust(), certificate=cert(prod))
    assert relayed.body == BODY


def test_a_record_seal_is_not_a_head_seal(prod: Clusterset) -> None:
    record = seal(prod.signers["east"])
    assert reason(record, prod.trust(), certificate=cert(prod), domain=HEAD_DOMAIN) == (
        "bad_signature"
    )
    verify(
        seal(prod.signers["east"], domain=HEAD_DOMAIN),
        prod.trust(),
        "east",
        cert(prod),
        NOW,
        HEAD_DOMAIN,
    )


def test_key_of_cluster_x_cannot_seal_for_y(prod: Clusterset) -> None:
    west = prod.signers["west"]
    # west seals as if it were east, with its own (valid) certificate.
    forged = pb.Sealed(
        body=BODY,
        key_id=west.key.key_id,
        signature=west.key.private.sign(
            signing.signed_message(RECORD_DOMAIN, "prod", "east", BODY)
        ),
    )
    assert reason(forged, prod.trust(), "east", cert(prod, "west")) == "unknown_key"
    # west's honest seal, claimed for east, fails the same way.
    assert reason(seal(west), prod.trust(), "east", cert(prod, "west")) == "unknown_key"


def test_a_key_the_ca_never_certified_is_refused(prod: Clusterset) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "east")])
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.load_pem_x509_certificate(prod.ca_pem).subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(T0)
        .not_valid_after(T0 + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([signing.SIGNER_EKU]), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://prod/cluster/east/signer")]
            ),
            critical=False,
        )
        .sign(key, None)
    )
    cert_pem = self_signed.public_bytes(serialization.Encoding.PEM)
    mallory = Signer(SignerKey.from_pem(cert_pem, pki.pem_key(key)))
    der = mallory.key.certificate_der
    assert reason(seal(mallory), prod.trust(), certificate=der) == "untrusted_certificate"


def test_a_tls_certificate_is_not_a_signing_certificate(prod: Clusterset) -> None:
    ca, ca_key = pki.create_ca("prod", T0)
    tls_cert, _ = pki.issue_tls(ca, ca_key, "east", [], T0, 30)
    der = tls_cert.public_bytes(serialization.Encoding.DER)
    trust = Trust.from_pem(pki.pem_cert(ca))
    assert reason(seal(prod.signers["east"]), trust, certificate=der) == "untrusted_certificate"
    with pytest.raises(SignedStateError, match="untrusted_certificate"):
        trust.add_certificate(der, NOW)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("body", "flip", "bad_signature"),
        ("signature", "flip", "bad_signature"),
        ("signature", b"short", "malformed"),
        ("key_id", "0" * 32, "malformed"),  # the certificate is for another key id
        ("key_id", "abc", "malformed"),
    ],
)
def test_tampered_seals_are_dropped_by_reason(
    prod: Clusterset, field: str, value: object, expected: str
) -> None:
    sealed = seal(prod.signers["east"])
    if value == "flip":
        data = bytearray(getattr(sealed, field))
        data[len(data) // 2] ^= 0x01
        value = bytes(data)
    assert reason(copy(sealed, **{field: value}), prod.trust(), certificate=cert(prod)) == expected


def test_a_junk_certificate_or_another_clusters_claim_is_refused(prod: Clusterset) -> None:
    sealed = seal(prod.signers["east"])
    assert reason(sealed, prod.trust(), certificate=b"\x30\x03junk") == "untrusted_certificate"
    assert reason(sealed, prod.trust(), "west", cert(prod)) == "unknown_key"


def test_another_clustersets_signature_is_refused(prod: Clusterset, other: Clusterset) -> None:
    theirs = seal(other.signers["east"])
    assert reason(theirs, prod.trust(), certificate=cert(other)) == "clusterset_mismatch"
    # A prod certificate does not help: the signature covers the clusterset it was made for.
    trust = prod.trust()
    verify(seal(prod.signers["east"]), trust, certificate=cert(prod))
    relabelled = copy(theirs, key_id=prod.signers["east"].key.key_id)
    assert reason(relabelled, trust, certificate=cert(prod)) == "bad_signature"


def test_keys_are_learned_from_certificates_and_expire(prod: Clusterset) -> None:
    trust = prod.trust()
    sealed = seal(prod.signers["east"])
    assert reason(sealed, trust) == "unknown_key"  # no certificate seen yet
    verify(sealed, trust, certificate=cert(prod))
    assert set(trust.keys("east")) == {sealed.key_id}
    assert trust.keys("west") == {}
    verify(sealed, trust)  # known now: no certificate needed
    later = NOW + 31 * 86400
    assert reason(sealed, trust, now=later) == "untrusted_certificate"
    assert reason(sealed, prod.trust(), certificate=cert(prod), now=later) == (
        "untrusted_certificate"
    )


def test_the_signed_message_is_unambiguous() -> None:
    d = RECORD_DOMAIN
    assert signing.signed_message(d, "ab", "c", b"x") != signing.signed_message(d, "a", "bc", b"x")
    assert signing.signed_message(d, "a", "b", b"x").startswith(b"meshd.record.v1\0")
    assert signing.signed_message(HEAD_DOMAIN, "a", "b", b"x") != signing.signed_message(
        d, "a", "b", b"x"
    )


# --- untrusted input: any seal gives a verdict or a SignedStateError, nothing else ---------

FIELDS = ("body", "key_id", "signature")
_BYTES = st.binary(max_size=600)
_TEXT = st.text(max_size=70)


def outcome(sealed: pb.Sealed, trust: Trust, certificate: bytes) -> str:
    """The SignedStateError's reason, or "verified"; any other exception fails the test."""
    try:
        verify(sealed, trust, certificate=certificate)
    except SignedStateError as exc:
        return exc.reason
    return "verified"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(certificate=st.binary(max_size=2000))
def test_arbitrary_certificate_bytes_never_crash_the_verifier(
    prod: Clusterset, certificate: bytes
) -> None:
    sealed = seal(prod.signers["east"])
    assert outcome(sealed, prod.trust(), certificate) in signing.REASONS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), st.one_of(_BYTES, _TEXT), max_size=3))
def test_mutated_seals_never_crash_the_verifier(
    prod: Clusterset, changes: dict[str, bytes | str]
) -> None:
    sealed = seal(prod.signers["east"])
    mutated = copy(sealed)
    for name, value in changes.items():
        if name == "key_id":
            mutated.key_id = value if isinstance(value, str) else value.hex()
        else:
            setattr(mutated, name, value if isinstance(value, bytes) else value.encode())
    result = outcome(mutated, prod.trust(), cert(prod))
    assert result in (*signing.REASONS, "verified")
    if result == "verified":  # only a seal whose signed parts are unchanged
        assert (mutated.body, mutated.signature) == (sealed.body, sealed.signature)


def test_certificates_are_signed_with_the_ca_key(prod: Clusterset) -> None:
    cert = x509.load_der_x509_certificate(prod.signers["east"].key.certificate_der)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert signing.issued_by(cert, [x509.load_pem_x509_certificate(prod.ca_pem)])
