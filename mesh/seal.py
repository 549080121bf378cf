"""Origin signatures on the ring: sign this cluster's state, open and keep everyone else's.

Rules (issue 4, "Security"):

- this agent signs only its own cluster's state, once per version (the envelope is cached
  by stamp, so a state sent a thousand times is signed once);
- a state from another cluster is accepted only inside an envelope that verifies against
  the clusterset's CA (``mesh.signing``); anything else is dropped and counted by reason;
- the envelope of every state the catalog takes is kept and forwarded as received, byte for
  byte, so the origin's signature verifies at every hop and no relay can alter a state.

The catalog decides which copy is newer; ``keep`` is called only for copies it took, so the
envelope held always matches the state held.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.model import ClusterId, ClusterState
from mesh.signing import SignedState, Signer, Verifier


class StateSeal:
    def __init__(self, signer: Signer, verifier: Verifier) -> None:
        self.signer = signer
        self.verifier = verifier
        self._own: tuple[tuple[int, int], SignedState] | None = None
        self._held: dict[ClusterId, tuple[tuple[int, int], SignedState]] = {}

    def envelopes(self, states: Sequence[ClusterState], local: ClusterId) -> list[SignedState]:
        """The envelopes of ``states``: ours signed now (or cached), the others as received."""
        out = []
        for state in states:
            if state.cluster_id == local:
                if self._own is None or self._own[0] != state.stamp:
                    self._own = (state.stamp, self.signer.sign(state))
                out.append(self._own[1])
            else:
                held = self._held.get(state.cluster_id)
                if held is not None and held[0] == state.stamp:
                    out.append(held[1])
        return out

    def open(
        self, envelopes: Sequence[SignedState], now_wall: float
    ) -> list[tuple[ClusterState, SignedState]]:
        """The states whose origin signature verifies; the rest are dropped and counted."""
        opened = []
        for envelope in envelopes:
            state = self.verifier.verify(envelope, now_wall)
            if state is not None:
                opened.append((state, envelope))
        return opened

    def keep(self, envelope: SignedState, state: ClusterState) -> None:
        """Hold the envelope of a state the catalog took, to forward it unchanged."""
        self._held[state.cluster_id] = (state.stamp, envelope)

    def replace(self, signer: Signer, verifier: Verifier) -> None:
        """New keys (renewed or re-issued certificate files): sign and verify with them."""
        dropped = self.verifier.stats.dropped
        self.signer, self.verifier = signer, verifier
        for reason, count in dropped.items():  # counters must not go backwards
            self.verifier.stats.dropped[reason] = self.verifier.stats.dropped.get(reason, 0) + count
        self._own = None

    @property
    def dropped(self) -> dict[str, int]:
        return dict(self.verifier.stats.dropped)
