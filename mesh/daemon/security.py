"""The ring's security from the agent's settings: mutual TLS and origin-signed states.

With ``--tls-cert/--tls-key/--tls-ca`` the ring runs over mutual TLS (``mesh.transport.tls``) and
every cluster state is signed by its origin (``mesh.security.seal``, with the signing key next to
the TLS files or given by ``--signing-cert/--signing-key``); without them, plaintext and
unsigned (``--insecure``). ``reload_seal`` watches the signing files and the CA and swaps
in new keys when they change (a renewal), keeping the old ones when the new files do not
load (a half-written renewal). TLS reloads itself (``RingTls``). ``certificate_expiry``
reads the not-after times of the certificates in use (so a reload moves them), and
``log_certificate_expiry`` logs a week and a day before each lapses
(``mesh.security.cert_expiry``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from mesh.daemon.settings import AgentSettings
from mesh.security.cert_expiry import ExpiryLog
from mesh.security.pki import CertsError, load_signer, load_trust, not_after_times
from mesh.security.seal import StateSeal
from mesh.transport.tls import RingTls, TlsFiles

log = logging.getLogger("meshd.ring")

SEAL_RELOAD_INTERVAL_S = 0.5
# How often the agent looks at how long its certificates have left: the thresholds are a
# week and a day, so a few minutes late is on time.
EXPIRY_CHECK_INTERVAL_S = 600.0
Stamp = tuple[tuple[int, int, int], ...]


def ring_tls(settings: AgentSettings) -> RingTls | None:
    s = settings
    if s.tls_cert is None or s.tls_key is None or s.tls_ca is None:
        return None
    return RingTls(TlsFiles(s.tls_cert, s.tls_key, s.tls_ca), s.cluster_id)


def _seal_files(settings: AgentSettings) -> tuple[Path, Path, Path] | None:
    s = settings
    if s.tls_ca is None or s.signing_cert is None or s.signing_key is None:
        return None
    return s.signing_cert, s.signing_key, s.tls_ca


def state_seal(settings: AgentSettings) -> StateSeal | None:
    """Signed states whenever the ring runs with TLS (a signer needs the certificates)."""
    files = _seal_files(settings)
    if files is None:
        return None
    cert, key, ca = files
    return StateSeal(load_signer(cert, key, settings.cluster_id), load_trust(ca))


async def reload_seal(settings: AgentSettings, seal: StateSeal) -> None:
    """Re-read the signing key and the CA when their files change (no restart needed)."""
    files = _seal_files(settings)
    if files is None:
        return
    stamp = files_stamp(files)
    while True:
        await asyncio.sleep(SEAL_RELOAD_INTERVAL_S)
        current = files_stamp(files)
        if current == stamp:
            continue
        stamp = current
        cert, key, ca = files
        try:
            signer = load_signer(cert, key, settings.cluster_id)
            trust = load_trust(ca)
        except CertsError as exc:
            log.warning("signing files changed but do not load, keeping the old: %s", exc)
            continue
        seal.replace(signer, trust)
        log.info("state-signing key and trust reloaded")


def watchers(
    settings: AgentSettings, tls: RingTls | None, seal: StateSeal
) -> dict[str, Coroutine[Any, Any, None]]:
    """Task name -> what keeps the ring's security current while the agent runs."""
    return {
        "seal-reload": reload_seal(settings, seal),
        "certificate-expiry": log_certificate_expiry(tls, seal),
    }


def certificate_expiry(tls: RingTls | None, seal: StateSeal | None) -> dict[str, float]:
    """Not-after times (Unix seconds) of the certificates in use: ``tls``, ``signing``, ``ca``."""
    return not_after_times(
        None if tls is None else tls.material.cert,
        None if seal is None else seal.signer.key.certificate_der,
        None if tls is None else tls.material.ca,
    )


async def log_certificate_expiry(
    tls: RingTls | None, seal: StateSeal | None, interval_s: float = EXPIRY_CHECK_INTERVAL_S
) -> None:
    """Log a warning a week before a certificate in use expires, an error a day before."""
    notices = ExpiryLog()
    while True:
        for notice in notices.due(certificate_expiry(tls, seal), time.time()):
            level = logging.WARNING if notice.level == "warning" else logging.ERROR
            log.log(level, "%s", notice.message())
        await asyncio.sleep(interval_s)


def files_stamp(files: tuple[Path, ...]) -> Stamp:
    """What changes when a file is rewritten or replaced: (mtime, size, inode) of each."""
    stamps = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            stamps.append((0, 0, 0))
            continue
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)
