"""Origin-signed cluster states: what verifies, what is dropped and why, never a crash."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh import certs, signing
from mesh.model import ClusterState, Endpoint, ExportedService, ServiceKey, ServicePort, ServiceType
from mesh.signing import SignedStateError, Signer, SignerKey, Trust, Verifier, verify
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
    ca, ca_key = certs.create_ca(name, T0)
    signers = {}
    for cluster in clusters:
        cert, key = certs.issue_signer(ca, ca_key, cluster, T0, days=30)
        signers[cluster] = Signer(SignerKey.from_pem(certs.pem_cert(cert), certs.pem_key(key)))
    return Clusterset(name, certs.pem_cert(ca), signers)


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west"))


@pytest.fixture(scope="module")
def other() -> Clusterset:
    return make_clusterset("other", ("east",))


def state(cluster: str = "east", version: int = 3) -> ClusterState:
    web = ExportedService(
        ServiceKey("shop", "web"),
        ServiceType.CLUSTER_SET_IP,
        (ServicePort("http", "TCP", 80),),
        (Endpoint(("10.1.0.10",), True, None, "z1"),),
    )
    return ClusterState(cluster, 7, version, "us", "", frozenset({"shop"}), {web.key: web})


def reason(envelope: pb.SignedClusterState, trust: Trust, now: float = NOW) -> str:
    with pytest.raises(SignedStateError) as caught:
        verify(envelope, trust, now)
    return caught.value.reason


def copy(envelope: pb.SignedClusterState, **changes: object) -> pb.SignedClusterState:
    out = pb.SignedClusterState()
    out.CopyFrom(envelope)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def test_round_trip_through_a_relay_keeps_the_exact_bytes(prod: Clusterset) -> None:
    original = state()
    envelope = prod.signers["east"].sign(original)
    # A relay holds and forwards the envelope inside its own message, never re-encoding it.
    relayed = pb.PushPullRequest.FromString(
        pb.PushPullRequest(signed_states=[envelope]).SerializeToString()
    ).signed_states[0]
    assert relayed.state == envelope.state
    got = verify(relayed, prod.trust(), NOW)
    assert got.stamp == original.stamp
    assert got.same_content(original)
    assert verify(signing.decode_envelope(envelope.SerializeToString()), prod.trust(), NOW)


def test_fields_unknown_to_this_version_still_verify(prod: Clusterset) -> None:
    # A newer origin may add fields; the signature covers its bytes, not our re-encoding.
    payload = signing.state_to_pb(state()).SerializeToString() + b"\x98\x06\x01"  # field 99
    envelope = prod.signers["east"].sign_bytes(payload)
    assert verify(envelope, prod.trust(), NOW).cluster_id == "east"


def test_a_signer_refuses_another_clusters_state(prod: Clusterset) -> None:
    with pytest.raises(ValueError, match="cannot sign cluster east's state as west"):
        prod.signers["west"].sign(state("east"))


def test_key_of_cluster_x_cannot_sign_for_y(prod: Clusterset) -> None:
    west = prod.signers["west"]
    payload = signing.state_to_pb(state("east")).SerializeToString()
    # west signs east's bytes as if it were east, with its own (valid) certificate.
    forged = pb.SignedClusterState(
        cluster_id="east",
        state=payload,
        key_id=west.key.key_id,
        signature=west.key.private.sign(signing.signed_message("prod", "east", payload)),
        certificate=west.key.certificate_der,
        clusterset="prod",
    )
    assert reason(forged, prod.trust()) == "unknown_key"
    # Relabelling west's honest envelope as east's fails the same way.
    honest = west.sign(state("west"))
    assert reason(copy(honest, cluster_id="east"), prod.trust()) == "unknown_key"
    # And west's envelope carrying east's state under west's name is caught after the signature.
    assert reason(west.sign_bytes(payload), prod.trust()) == "cluster_mismatch"


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
    mallory = Signer(SignerKey.from_pem(cert_pem, certs.pem_key(key)))
    assert reason(mallory.sign(state("east")), prod.trust()) == "untrusted_certificate"


def test_a_tls_certificate_is_not_a_signing_certificate(prod: Clusterset) -> None:
    ca, ca_key = certs.create_ca("prod", T0)
    tls_cert, _ = certs.issue_tls(ca, ca_key, "east", [], T0, 30)
    envelope = prod.signers["east"].sign(state())
    der = tls_cert.public_bytes(serialization.Encoding.DER)
    trust = Trust.from_pem(certs.pem_cert(ca))
    assert reason(copy(envelope, certificate=der), trust) == "untrusted_certificate"
    with pytest.raises(SignedStateError, match="untrusted_certificate"):
        trust.add_certificate(der, NOW)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("state", "flip", "bad_signature"),
        ("signature", "flip", "bad_signature"),
        ("signature", b"short", "malformed"),
        ("key_id", "0" * 32, "malformed"),  # the certificate is for another key id
        ("cluster_id", "East!", "malformed"),
        ("cluster_id", "west", "unknown_key"),
        ("state", b"", "malformed"),
        ("certificate", b"\x30\x03junk", "untrusted_certificate"),
        ("clusterset", "other", "clusterset_mismatch"),
        ("clusterset", "", "clusterset_mismatch"),
    ],
)
def test_tampered_envelopes_are_dropped_by_reason(
    prod: Clusterset, field: str, value: object, expected: str
) -> None:
    envelope = prod.signers["east"].sign(state())
    if value == "flip":
        data = bytearray(getattr(envelope, field))
        data[len(data) // 2] ^= 0x01
        value = bytes(data)
    assert reason(copy(envelope, **{field: value}), prod.trust()) == expected


def test_another_clustersets_signature_is_refused(prod: Clusterset, other: Clusterset) -> None:
    theirs = other.signers["east"].sign(state())
    assert reason(theirs, prod.trust()) == "clusterset_mismatch"
    # Claiming to be from prod does not help: the certificate names the other clusterset.
    assert reason(copy(theirs, clusterset="prod"), prod.trust()) == "clusterset_mismatch"
    # Nor does a prod certificate: the signature covers the clusterset it was made for.
    ours = prod.signers["east"].sign(state())
    trust = prod.trust()
    verify(ours, trust, NOW)
    relabelled = copy(theirs, clusterset="prod", key_id=ours.key_id, certificate=ours.certificate)
    assert reason(relabelled, trust) == "bad_signature"


def test_keys_are_learned_from_certificates_and_expire(prod: Clusterset) -> None:
    trust = prod.trust()
    envelope = prod.signers["east"].sign(state())
    bare = copy(envelope, certificate=b"")
    assert reason(bare, trust) == "unknown_key"
    verify(envelope, trust, NOW)
    assert set(trust.keys("east")) == {envelope.key_id}
    assert trust.keys("west") == {}
    assert verify(bare, trust, NOW).cluster_id == "east"  # known now: no certificate needed
    later = NOW + 31 * 86400
    assert reason(bare, trust, later) == "untrusted_certificate"
    assert reason(envelope, prod.trust(), later) == "untrusted_certificate"


def test_a_correctly_signed_but_invalid_state_is_dropped(prod: Clusterset) -> None:
    bad = signing.state_to_pb(state())
    bad.generation = 0
    assert reason(prod.signers["east"].sign(bad), prod.trust()) == "invalid_state"


def test_verifier_counts_drops_by_reason(prod: Clusterset, other: Clusterset) -> None:
    verifier = Verifier(prod.trust())
    good = prod.signers["east"].sign(state())
    assert verifier.verify(good, NOW) is not None
    assert verifier.verify(other.signers["east"].sign(state()), NOW) is None
    assert verifier.verify(copy(good, signature=bytes(64)), NOW) is None
    assert verifier.verify(copy(good, signature=bytes(64)), NOW) is None
    assert verifier.stats.verified == 1
    assert verifier.stats.dropped == {"clusterset_mismatch": 1, "bad_signature": 2}
    assert verifier.stats.last_error.startswith("bad_signature")


def test_the_signed_message_is_unambiguous() -> None:
    assert signing.signed_message("ab", "c", b"x") != signing.signed_message("a", "bc", b"x")
    assert signing.signed_message("a", "b", b"x").startswith(b"meshd.state.v1\0")


# --- untrusted input: any envelope gives a state or a SignedStateError, nothing else --------

FIELDS = ("cluster_id", "state", "key_id", "signature", "certificate", "clusterset")
_BYTES = st.binary(max_size=600)
_TEXT = st.text(max_size=70)


def outcome(data: bytes, trust: Trust) -> str:
    """The SignedStateError's reason, or "verified"; any other exception fails the test."""
    try:
        verify(signing.decode_envelope(data), trust, NOW)
    except SignedStateError as exc:
        return exc.reason
    return "verified"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_verifier(prod: Clusterset, data: bytes) -> None:
    assert outcome(data, prod.trust()) in (*signing.REASONS, "verified")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), st.one_of(_BYTES, _TEXT), max_size=3))
def test_mutated_envelopes_never_crash_the_verifier(
    prod: Clusterset, changes: dict[str, bytes | str]
) -> None:
    envelope = prod.signers["east"].sign(state())
    mutated = pb.SignedClusterState()
    mutated.CopyFrom(envelope)
    for name, value in changes.items():
        is_bytes = name in ("state", "signature", "certificate")
        if is_bytes:
            setattr(mutated, name, value if isinstance(value, bytes) else value.encode())
        else:
            setattr(mutated, name, value if isinstance(value, str) else value.hex())
    result = outcome(mutated.SerializeToString(), prod.trust())
    assert result in (*signing.REASONS, "verified")
    if result == "verified":  # only an envelope whose signed parts are unchanged
        assert (mutated.cluster_id, mutated.state) == (envelope.cluster_id, envelope.state)
        assert (mutated.signature, mutated.clusterset) == (envelope.signature, "prod")


def test_certificates_are_signed_with_the_ca_key(prod: Clusterset) -> None:
    cert = x509.load_der_x509_certificate(prod.signers["east"].key.certificate_der)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert signing.issued_by(cert, [x509.load_pem_x509_certificate(prod.ca_pem)])
