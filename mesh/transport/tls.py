"""Mutual TLS for the gRPC ring (the adapter between certificate files and grpc).

What it owns: the agent's ``--tls-cert``, ``--tls-key`` and ``--tls-ca`` files, the gRPC
server and channel credentials built from them, and the check that a peer belongs to this
clusterset.

Rules:

- Both sides authenticate: the server requires a client certificate
  (``require_client_authentication=True``) and each side accepts only certificates that
  chain to a CA of ``--tls-ca``. An agent of another clusterset (another CA) fails the
  handshake, and the dialling side counts it (``refused["handshake"]``).
- Peers are dialled by IP:port, and pod IPs change, so certificates do not carry them.
  Instead every agent certificate of clusterset ``C`` carries the DNS SAN
  ``C.meshd.internal`` (``mesh.security.identity.ring_server_name``) and the dialler sets
  ``grpc.ssl_target_name_override`` to it: the server must hold a certificate of *this*
  clusterset even when several clustersets share one CA. ``meshd certs issue --hosts``
  adds IP and DNS SANs for other clients, but the ring does not need them.
- The servicer checks the other direction: the client certificate's URI SAN
  (``spiffe://C/cluster/<id>``, read from ``context.auth_context()``) must name this
  clusterset (``check_peer``); refusals are counted by reason.
- Reload without restart: the server's credentials are dynamic (gRPC asks
  ``_fetch_server_config`` at each new handshake), and channels are rebuilt when the files
  change (``channel_security`` returns a new generation). Files are compared by
  (mtime, size, inode) at most every ``check_interval_s``. A set of files that does not
  hold together (a key that does not match its certificate, as seen half-way through
  replacing them, or a certificate not issued by the CA bundle) is refused, logged once and
  counted, and the previous credentials stay in use until a good set appears.
  Established connections keep the session they were made with, so the server closes
  every connection after ``max_connection_age_s`` (60 s) and clients redial: old
  certificates stop working within that time. Callers on connections made before a
  change of clusterset are refused by ``check_peer`` at once.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from mesh.security import identity as ident
from mesh.security.pki import CertsError, tls_identity_of

log = logging.getLogger("meshd.tls")

# Failures of the dialling side that mean the handshake refused the peer (or it us).
_HANDSHAKE = re.compile(r"handshake|verification check|certificate", re.IGNORECASE)
Stamp = tuple[tuple[int, int, int], ...]


class TlsError(ValueError):
    """Certificate files that cannot be used; one line for the operator."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path

    def stamp(self) -> Stamp | None:
        try:
            stats = [p.stat() for p in (self.cert, self.key, self.ca)]
        except OSError:
            return None
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    cert: bytes
    key: bytes
    ca: bytes
    identity: ident.Identity
    stamp: Stamp | None


def load(files: TlsFiles) -> TlsMaterial:
    """Read and check the three files; raises TlsError naming the problem."""
    stamp = files.stamp()
    data = []
    for flag, path in (
        ("--tls-cert", files.cert),
        ("--tls-key", files.key),
        ("--tls-ca", files.ca),
    ):
        try:
            data.append(path.read_bytes())
        except OSError as exc:
            raise TlsError(f"{flag} {path}: {exc.strerror}") from None
    try:
        found = tls_identity_of(data[0], data[1], data[2], datetime.datetime.now(datetime.UTC))
    except CertsError as exc:
        raise TlsError(f"--tls-cert {files.cert}: {exc}") from None
    return TlsMaterial(data[0], data[1], data[2], found, stamp)


@dataclass(slots=True)
class TlsStats:
    reloads: int = 0
    reload_failures: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class RingTls:
    """The ring's TLS credentials, kept in step with the files on disk."""

    def __init__(
        self,
        files: TlsFiles,
        cluster_id: str | None = None,
        check_interval_s: float = 0.5,
        max_connection_age_s: float = 60.0,
    ) -> None:
        self.files = files
        self.material = load(files)
        if cluster_id is not None and self.material.identity.cluster_id != cluster_id:
            raise TlsError(
                f"--tls-cert {files.cert}: issued to cluster "
                f"{self.material.identity.cluster_id}, not {cluster_id}"
            )
        self.cluster_id = cluster_id
        self.check_interval_s = check_interval_s
        self.max_connection_age_s = max_connection_age_s
        self.stats = TlsStats()
        self.generation = 0
        self._lock = threading.Lock()  # gRPC calls the server fetcher from its own threads
        self._checked = time.monotonic()
        self._failed_stamp: Stamp | None = None
        self._server_generation = 0
        self._channel: tuple[int, grpc.ChannelCredentials] | None = None

    @property
    def clusterset(self) -> str:
        return self.material.identity.clusterset

    # --- reloading ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Reload if the files changed and hold together; True when new material is in use."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.check_interval_s:
                return False
            self._checked = now
            stamp = self.files.stamp()
            if stamp is None or stamp in (self.material.stamp, self._failed_stamp):
                return False
            try:
                material = load(self.files)
                if self.cluster_id is not None and material.identity.cluster_id != self.cluster_id:
                    raise TlsError(f"issued to cluster {material.identity.cluster_id}")
            except TlsError as exc:
                self._failed_stamp = stamp
                self.stats.reload_failures += 1
                log.warning("new TLS files not used (keeping the previous ones): %s", exc)
                return False
            self.material = material
            self.generation += 1
            self.stats.reloads += 1
            log.info("TLS files reloaded (%s)", material.identity.uri)
            return True

    # --- server ------------------------------------------------------------------------------

    def server_options(self) -> list[tuple[str, int]]:
        """Close connections after ``max_connection_age_s``: a handshake made with replaced
        (or since revoked) certificates does not outlive the reload by long."""
        age_ms = int(self.max_connection_age_s * 1000)
        return [("grpc.max_connection_age_ms", age_ms), ("grpc.max_connection_age_grace_ms", 5000)]

    def server_credentials(self) -> grpc.ServerCredentials:
        self._server_generation = self.generation
        return grpc.dynamic_ssl_server_credentials(
            self._server_config(self.material),
            self._fetch_server_config,
            require_client_authentication=True,
        )

    @staticmethod
    def _server_config(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert)], root_certificates=material.ca
        )

    def _fetch_server_config(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at each handshake: a new configuration, or None to keep the old."""
        try:
            self.refresh()
            if self._server_generation == self.generation:
                return None
            self._server_generation = self.generation
            return self._server_config(self.material)
        except Exception:  # never raise into gRPC's handshake
            log.exception("TLS reload failed")
            return None

    def check_peer(self, context: grpc.aio.ServicerContext[object, object]) -> str | None:
        """Why a caller is refused (counted), or None when it is an agent of this clusterset."""
        return self.admit(context)[0]

    def admit(self, context: grpc.aio.ServicerContext[object, object]) -> tuple[str | None, str]:
        """(why the caller is refused, counted, or None; the caller's cluster id or "")."""
        uris = [v.decode(errors="replace") for v in context.auth_context().get("peer_uri", [])]
        peer = ident.find_identity(uris, ident.Role.TLS)
        if peer is None:
            self.stats.refuse("no_identity")
            return "the client certificate has no spiffe://<clusterset>/cluster/<id> URI SAN", ""
        if peer.clusterset != self.clusterset:
            self.stats.refuse("clusterset")
            return f"the client is in clusterset {peer.clusterset}, not {self.clusterset}", ""
        return None, peer.cluster_id

    # --- client ------------------------------------------------------------------------------

    def channel_security(self) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]], int]:
        """Credentials and options for a new channel, and their generation: a channel made
        with an older generation must be replaced."""
        self.refresh()
        material, generation = self.material, self.generation
        if self._channel is None or self._channel[0] != generation:
            creds = grpc.ssl_channel_credentials(material.ca, material.key, material.cert)
            self._channel = (generation, creds)
        options = [("grpc.ssl_target_name_override", ident.ring_server_name(self.clusterset))]
        return self._channel[1], options, generation

    def observe_failure(self, details: str | None) -> None:
        """Count a failed call that the TLS handshake refused."""
        if details and _HANDSHAKE.search(details):
            self.stats.refuse("handshake")
