"""The ring's signing material: this cluster's signer and the clusterset's trust, reloadable.

Rules (issue 4, "Security"): this agent signs only its own cluster's records
(``mesh.wire.record_codec.Publisher``, once per record); every other cluster's records are
accepted only when they verify against the clusterset's CA (``mesh.wire.record_codec.
ChunkOpener``); relays forward the sealed bytes they received. ``StateSeal`` is the one
place both keys live, so that a reload (``mesh.daemon.security.reload_seal``) swaps them for
the publisher and the opener at once: the ring notices the new signer and starts a new
generation of this cluster's records sealed with it.
"""

from __future__ import annotations

from mesh.security.signing import Signer, Trust


class StateSeal:
    def __init__(self, signer: Signer, trust: Trust) -> None:
        self.signer = signer
        self.trust = trust

    def replace(self, signer: Signer, trust: Trust) -> None:
        """New keys (renewed or re-issued certificate files): sign and verify with them."""
        self.signer, self.trust = signer, trust
