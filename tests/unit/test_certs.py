"""``meshd certs``: the files it writes load, chain to the CA and carry the identities
meshd checks; keys are private; nothing is overwritten by accident; bad input exits 2."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification

from mesh.daemon.cli import main
from mesh.security import identity, signing
from mesh.security import pki as certs

ISSUED = ("tls.key", "tls.crt", "signing.key", "signing.crt", "ca.crt")


def run(*args: str | Path) -> int:
    return main(["certs", *map(str, args)])


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    assert run("init", "--clusterset", "prod", "--out", tmp_path / "ca") == 0
    east = tmp_path / "east"
    assert (
        run(
            "issue",
            "--cluster-id",
            "east",
            "--ca",
            tmp_path / "ca",
            "--out",
            east,
            "--hosts",
            "127.0.0.1,meshd.example.com,::1",
        )
        == 0
    )
    return tmp_path


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_and_issue_write_every_file_with_private_keys_0600(pki: Path) -> None:
    assert sorted(p.name for p in (pki / "ca").iterdir()) == ["ca.crt", "ca.key"]
    assert sorted(p.name for p in (pki / "east").iterdir()) == sorted(ISSUED)
    for path in [pki / "ca/ca.key", pki / "east/tls.key", pki / "east/signing.key"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [pki / "ca/ca.crt", pki / "east/tls.crt", pki / "east/signing.crt"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert (pki / "east/ca.crt").read_bytes() == (pki / "ca/ca.crt").read_bytes()


def test_tls_certificate_chains_and_passes_a_webpki_verifier(pki: Path) -> None:
    ca, leaf = load(pki / "ca/ca.crt"), load(pki / "east/tls.crt")
    leaf.verify_directly_issued_by(ca)
    builder = verification.PolicyBuilder().store(verification.Store([ca]))
    builder = builder.time(datetime.datetime.now(datetime.UTC))
    # As a server, for the name every dialling agent demands, and for the --hosts given.
    for name in ("prod.meshd.internal", "meshd.example.com"):
        builder.build_server_verifier(verification.DNSName(name)).verify(leaf, [])
    ip = verification.IPAddress(ipaddress.ip_address("127.0.0.1"))
    builder.build_server_verifier(ip).verify(leaf, [])
    # As a client, with the cluster's SPIFFE ID.
    client = builder.build_client_verifier().verify(leaf, [])
    assert client.subjects is not None
    assert x509.UniformResourceIdentifier("spiffe://prod/cluster/east") in client.subjects
    found = certs.tls_identity_of(
        (pki / "east/tls.crt").read_bytes(),
        (pki / "east/tls.key").read_bytes(),
        (pki / "ca/ca.crt").read_bytes(),
        datetime.datetime.now(datetime.UTC),
    )
    assert found == identity.tls_identity("prod", "east")


def test_signing_certificate_binds_the_key_to_the_cluster(pki: Path) -> None:
    key = certs.signer_key(
        (pki / "east/signing.crt").read_bytes(), (pki / "east/signing.key").read_bytes()
    )
    assert key.identity == identity.signer_identity("prod", "east")
    trust = signing.Trust.from_pem((pki / "east/ca.crt").read_bytes())
    assert trust.clusterset == "prod"
    now = datetime.datetime.now(datetime.UTC).timestamp()
    trusted = trust.add_certificate(key.certificate_der, now)
    assert (trusted.cluster_id, trusted.key_id) == ("east", key.key_id)
    # The signing certificate is no TLS certificate: a webpki client verifier refuses it.
    ca = load(pki / "ca/ca.crt")
    builder = verification.PolicyBuilder().store(verification.Store([ca]))
    verifier = builder.time(datetime.datetime.now(datetime.UTC)).build_client_verifier()
    with pytest.raises(verification.VerificationError):
        verifier.verify(load(pki / "east/signing.crt"), [])


def test_overwrite_is_refused_without_force(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {name: (pki / "east" / name).read_bytes() for name in ISSUED}
    capsys.readouterr()
    assert run("issue", "--cluster-id", "east", "--ca", pki / "ca", "--out", pki / "east") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "exists; pass --force" in err
    assert before == {name: (pki / "east" / name).read_bytes() for name in ISSUED}
    assert run("init", "--clusterset", "prod", "--out", pki / "ca") == 2
    assert (
        run("issue", "--cluster-id", "east", "--ca", pki / "ca", "--out", pki / "east", "--force")
        == 0
    )
    assert (pki / "east/tls.crt").read_bytes() != before["tls.crt"]
    assert stat.S_IMODE((pki / "east/tls.key").stat().st_mode) == 0o600
    assert not list((pki / "east").glob(".*.tmp"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "--clusterset", "Prod_1", "--out", "{tmp}/x"], "--clusterset"),
        (["issue", "--cluster-id", "East", "--ca", "{tmp}/ca", "--out", "{tmp}/y"], "--cluster-id"),
        (["issue", "--cluster-id", "east", "--ca", "{tmp}/none", "--out", "{tmp}/y"], "--ca"),
        (["issue", "--cluster-id", "east", "--ca", "{tmp}/east", "--out", "{tmp}/y"], "--ca"),
        (
            [
                "issue",
                "--cluster-id",
                "east",
                "--ca",
                "{tmp}/ca",
                "--out",
                "{tmp}/y",
                "--hosts",
                "a b",
            ],
            "--hosts",
        ),
        (
            [
                "issue",
                "--cluster-id",
                "east",
                "--ca",
                "{tmp}/ca",
                "--out",
                "{tmp}/y",
                "--days",
                "0",
            ],
            "--days",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    pki: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    capsys.readouterr()
    assert run(*(a.replace("{tmp}", str(pki)) for a in args)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"meshd: error: {message}")
    assert err.count("\n") == 1
    assert not (pki / "y").exists()


def test_tls_files_that_do_not_belong_together_are_refused(pki: Path, tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert run("init", "--clusterset", "other", "--out", tmp_path / "other") == 0
    cert, key = (pki / "east/tls.crt").read_bytes(), (pki / "east/tls.key").read_bytes()
    ca = (pki / "ca/ca.crt").read_bytes()
    cases = [
        ((cert, (pki / "east/signing.key").read_bytes(), ca), "does not match"),
        ((cert, key, (tmp_path / "other/ca.crt").read_bytes()), "not issued by"),
        ((ca, (pki / "ca/ca.key").read_bytes(), ca), "URI SAN"),
        ((b"junk", key, ca), "cannot parse"),
    ]
    for (c, k, a), message in cases:
        with pytest.raises(certs.CertsError, match=message):
            certs.tls_identity_of(c, k, a, now)
    with pytest.raises(certs.CertsError, match="not valid now"):
        certs.tls_identity_of(cert, key, ca, now + datetime.timedelta(days=400))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("spiffe://prod", identity.ca_identity("prod")),
        ("spiffe://shop.example/cluster/east", identity.tls_identity("shop.example", "east")),
        ("spiffe://prod/cluster/east/signer", identity.signer_identity("prod", "east")),
        ("spiffe://prod/", None),
        ("spiffe://prod/cluster/East", None),
        ("spiffe://prod/cluster/east/admin", None),
        ("spiffe://Prod/cluster/east", None),
        ("https://prod/cluster/east", None),
        ("spiffe://prod/cluster/east/signer/x", None),
    ],
)
def test_identity_uris(uri: str, expected: identity.Identity | None) -> None:
    assert identity.parse_uri(uri) == expected
    if expected is not None:
        assert expected.uri == uri


def test_issued_files_load_as_signer_and_trust(pki: Path) -> None:
    east = pki / "east"
    signer = certs.load_signer(east / "signing.crt", east / "signing.key", "east")
    trust = certs.load_trust(east / "ca.crt")
    sealed = signer.seal(signing.RECORD_DOMAIN, b"a record")
    now = datetime.datetime.now(datetime.UTC).timestamp()
    certificate = signer.key.certificate_der
    signing.verify_sealed(signing.RECORD_DOMAIN, "east", sealed, certificate, trust, now)
    with pytest.raises(certs.CertsError, match="signs for cluster east, not west"):
        certs.load_signer(east / "signing.crt", east / "signing.key", "west")
    with pytest.raises(certs.CertsError, match="not an Ed25519 private key"):
        certs.load_signer(east / "signing.crt", pki / "ca/ca.key", "east")
    with pytest.raises(certs.CertsError, match="No such file"):
        certs.load_trust(east / "missing.crt")
