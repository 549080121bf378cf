"""Mutual TLS between real ``meshd run`` processes, with certificates from ``meshd certs``.

east and west hold certificates of clusterset ``prod``; south holds one of clusterset
``other`` (another CA) and tries to join them. The tests check that east and west exchange
states and answer each other's services by DNS, that south is refused by the handshake and
counted, and that replacing east's certificate files (re-issued by the other CA) moves east
to the other clusterset without a restart. In-process tests cover what processes cannot
show cheaply: a caller whose certificate chains to our CA but names another clusterset is
refused by the servicer, and a half-replaced set of files is not used.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.model import ClusterState
from mesh.ring.catalog import Catalog
from mesh.ring.peers import PeerTable
from mesh.security import pki
from mesh.transport.gossip import Ring
from mesh.transport.tls import RingTls, TlsFiles
from mesh.wire.v1 import gossip_pb2 as pb
from mesh.wire.v1 import gossip_pb2_grpc as pb_grpc
from tests.integration.harness import MESHD, REPO, AgentProcess, wait_until

pytestmark = pytest.mark.integration
DB = "db.shop.svc.clusterset.local"
EAST, WEST, SOUTH = "10.1.1.5", "10.2.1.5", "10.3.1.5"
CLUSTERSETS = {"east": "prod", "west": "prod", "south": "other"}


def meshd_certs(*args: str | Path) -> None:
    done = subprocess.run([*MESHD, "certs", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def tls_flags(directory: Path) -> tuple[str, ...]:
    return (
        *("--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")),
        *("--tls-ca", str(directory / "ca.crt"), "--sync-timeout", "1"),
    )


def metric(agent: AgentProcess, name: str, labels: str) -> float:
    status, body = agent.admin("/metrics")
    if status != 200:
        return -1.0
    found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else -1.0


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[tuple[dict[str, AgentProcess], Path]]:
    for clusterset in ("prod", "other"):
        meshd_certs("init", "--clusterset", clusterset, "--out", tmp_path / f"{clusterset}-ca")
    procs = {}
    for cluster, clusterset in CLUSTERSETS.items():
        ca = tmp_path / f"{clusterset}-ca"
        meshd_certs("issue", "--cluster-id", cluster, "--ca", ca, "--out", tmp_path / cluster)
        shutil.copytree(REPO / "examples" / cluster, tmp_path / cluster / "manifests")
        procs[cluster] = AgentProcess(cluster, "us", tmp_path / cluster / "manifests", tmp_path)
    try:
        yield procs, tmp_path
    finally:
        for proc in procs.values():
            proc.stop()


def test_mtls_ring_refuses_another_clusterset_and_reloads_certificates(
    ring: tuple[dict[str, AgentProcess], Path],
) -> None:
    agents, tmp = ring
    east, west, south = agents["east"], agents["west"], agents["south"]
    for agent in agents.values():
        others = [a.grpc for a in agents.values() if a is not agent]
        agent.start(others, *tls_flags(tmp / agent.cluster), insecure=False)
    for agent in agents.values():
        agent.wait_ready()

    # east and west exchange over mutual TLS and answer each other's services.
    for agent in (east, west):
        wait_until(
            f"{agent.cluster} answers east+west", lambda a=agent: a.addresses(DB) == {EAST, WEST}
        )
    # south's CA is not theirs: every handshake with it fails, on both sides, and is counted.
    for agent in (east, west, south):
        wait_until(
            f"{agent.cluster} counts a refused handshake",
            lambda a=agent: metric(a, "meshd_tls_refused_total", 'reason="handshake"') >= 1,
        )
    assert south.addresses(DB) == {SOUTH}
    assert east.addresses(DB) == {EAST, WEST}

    # Re-issue east's files from the other clusterset's CA, in place: east moves over.
    meshd_certs(
        "issue", "--cluster-id", "east", "--ca", tmp / "other-ca", "--out", tmp / "east", "--force"
    )
    wait_until("east answers east+south", lambda: east.addresses(DB) == {EAST, SOUTH})
    wait_until("south answers east", lambda: EAST in south.addresses(DB))
    wait_until("west drops east", lambda: west.addresses(DB) == {WEST})
    assert metric(east, "meshd_tls_reloads_total", 'outcome="ok"') >= 1
    assert east.proc is not None
    assert east.proc.poll() is None, east.logs()


def _foreign_client_cert(ca_dir: Path, clusterset: str) -> tuple[bytes, bytes]:
    """A certificate from our CA that names another clusterset (a shared-CA mistake)."""
    ca, ca_key = pki.load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mallory")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{clusterset}/cluster/mallory")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return pki.pem_cert(cert), pki.pem_key(key)


@pytest.mark.asyncio
async def test_servicer_refuses_a_certificate_of_another_clusterset(tmp_path: Path) -> None:
    meshd_certs("init", "--clusterset", "prod", "--out", tmp_path / "ca")
    meshd_certs(
        "issue", "--cluster-id", "east", "--ca", tmp_path / "ca", "--out", tmp_path / "east"
    )
    files = TlsFiles(tmp_path / "east/tls.crt", tmp_path / "east/tls.key", tmp_path / "east/ca.crt")
    tls = RingTls(files, "east")
    peers = PeerTable("east", "127.0.0.1:0", [])
    server = Ring(Catalog(ClusterState("east", 1, 0)), peers, lambda change: None, tls=tls)
    port = await server.start("127.0.0.1:0")
    ca_pem = files.ca.read_bytes()
    try:
        # A caller from another clusterset whose certificate our CA signed by mistake.
        cert, key = _foreign_client_cert(tmp_path / "ca", "other")
        creds = grpc.ssl_channel_credentials(ca_pem, key, cert)
        options = [("grpc.ssl_target_name_override", "prod.meshd.internal")]
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.GossipStub(ch).PushPull(pb.PushPullRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "clusterset other" in (refused.value.details() or "")
        assert tls.stats.refused == {"clusterset": 1}
        # The cluster's own certificate from `meshd certs` is accepted, speaking for itself.
        own = files.cert.read_bytes()
        creds = grpc.ssl_channel_credentials(ca_pem, files.key.read_bytes(), own)
        me = pb.Member(cluster_id="east", address="127.0.0.1:1", replica="b")
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
            stub = pb_grpc.GossipStub(ch)
            reply = await stub.PushPull(pb.PushPullRequest(sender=me), timeout=5)
            assert reply.responder.cluster_id == "east"
            # ... but not for another cluster: a valid certificate of east cannot speak as west.
            west = pb.Member(cluster_id="west", address="127.0.0.1:2")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PushPull(pb.PushPullRequest(sender=west), timeout=5)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            ping = pb.SwimDatagram(ping=pb.SwimPing(seq=1, target_id="east/a", source_id="west/a"))
            await stub.Swim(ping, timeout=5)
        assert server.stats.rejected == {"identity": 2}
    finally:
        await server.close()


def test_half_replaced_files_are_not_used_until_they_match(tmp_path: Path) -> None:
    meshd_certs("init", "--clusterset", "prod", "--out", tmp_path / "ca")
    meshd_certs("issue", "--cluster-id", "east", "--ca", tmp_path / "ca", "--out", tmp_path / "a")
    meshd_certs("issue", "--cluster-id", "east", "--ca", tmp_path / "ca", "--out", tmp_path / "b")
    live = tmp_path / "a"
    tls = RingTls(TlsFiles(live / "tls.crt", live / "tls.key", live / "ca.crt"), "east", 0.0)
    first = tls.material
    shutil.copy(tmp_path / "b/tls.key", live / "tls.key")  # the key first, as a copy would
    assert not tls.refresh()
    assert tls.material is first
    assert tls.stats.reload_failures == 1
    assert not tls.refresh()  # the same bad set is not retried (or logged) again
    shutil.copy(tmp_path / "b/tls.crt", live / "tls.crt")
    assert tls.refresh()
    assert tls.material.cert == (tmp_path / "b/tls.crt").read_bytes()
    assert (tls.stats.reloads, tls.generation) == (1, 1)
    _creds, options, generation = tls.channel_security()
    assert generation == 1
    assert options == [("grpc.ssl_target_name_override", "prod.meshd.internal")]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``e/``: east's files from ``meshd certs`` (made once for the module)."""
    tmp_path = tmp_path_factory.mktemp("issued")
    meshd_certs("init", "--clusterset", "prod", "--out", tmp_path / "ca")
    meshd_certs("issue", "--cluster-id", "east", "--ca", tmp_path / "ca", "--out", tmp_path / "e")
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "{d}/tls.crt"], "--tls-key, --tls-ca missing"),
        (["--tls-cert", "{d}/tls.crt", "--tls-key", "{d}/tls.key"], "--tls-ca missing"),
        (
            [
                "--tls-cert",
                "{d}/tls.crt",
                "--tls-key",
                "{d}/tls.key",
                "--tls-ca",
                "{d}/ca.crt",
                "--insecure",
            ],
            "--insecure contradicts",
        ),
        (
            ["--tls-cert", "{d}/tls.crt", "--tls-key", "{d}/signing.key", "--tls-ca", "{d}/ca.crt"],
            "the key does not match",
        ),
        (
            [
                "--tls-cert",
                "{d}/signing.crt",
                "--tls-key",
                "{d}/signing.key",
                "--tls-ca",
                "{d}/ca.crt",
            ],
            "no spiffe",
        ),
        (
            ["--tls-cert", "{d}/missing.crt", "--tls-key", "{d}/tls.key", "--tls-ca", "{d}/ca.crt"],
            "--tls-cert",
        ),
        ([], "pass --insecure, or --tls-cert"),
    ],
)
def test_tls_flags_are_checked_before_starting(
    issued: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    from mesh.daemon.cli import main

    tmp_path = issued
    args = ["run", "--cluster-id", "east", "--manifests", str(tmp_path)]
    assert main([*args, *(f.replace("{d}", str(tmp_path / "e")) for f in flags)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    # A certificate issued to another cluster is refused too.
    assert (
        main(
            [
                "run",
                "--cluster-id",
                "west",
                "--manifests",
                str(tmp_path),
                *tls_flags(tmp_path / "e"),
            ]
        )
        == 2
    )
    assert "issued to cluster east, not west" in capsys.readouterr().err
